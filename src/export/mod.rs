//! Stage 5 of the flow: **export**. The only stage that knows Prometheus.
//! [`prometheus`] renders the exposition text from the aggregators' state
//! and the engine's health counters.

pub(crate) mod api;
pub(crate) mod board;
mod exposition;
pub mod http;
pub(crate) mod ownership;
pub mod prometheus;
pub mod security;
pub mod server;
