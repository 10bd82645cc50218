//! Stage 3 of the flow: **aggregate**. One [`Aggregator`] per partition turns
//! validated, deduplicated events into per-(channel, campaign) state: exact
//! rolling windows, all-time totals, current-state gauges and open deals.
//!
//! Invariants: no I/O, no clock (engine time is passed in), nothing about
//! Kafka or Prometheus; every structure is bounded (rings by the bucket
//! count, keys by the label cardinality limits, deals by
//! `max_tracked_deals`). Per-event cost is O(number of windows).

mod aggregator;
mod apply;
pub mod calendar;
mod codec;
mod key;
pub mod labels;
pub(crate) mod pending;
mod prefetch;
pub mod ring;
mod sums;
pub mod v2;

pub use aggregator::{AggStats, Aggregator};
pub use key::{KeyState, Totals};
pub(crate) use prefetch::{KeyHint, KeyHints};
pub use sums::{field, KpiParams, PrevSums, WindowSums};
pub(crate) use sums::{DEALS_N, LEADS_N, SUBS_N, TRAFFIC_N};

#[cfg(test)]
use crate::config::{EngineConfig, WindowSpec};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod budget_tests;
