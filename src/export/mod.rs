//! Stage 5 of the flow: **export**. The only stage that knows Prometheus.
//! [`prometheus`] renders the exposition text from the aggregators' state
//! and the engine's health counters.

pub mod api;
pub mod board;
pub mod http;
pub mod prometheus;
pub mod security;
