//! funnelstream: exact rolling-window marketing and sales KPIs.
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//!   source (Kafka)      bytes of one message
//!     -> decode         validate against EVENTS.md, dedup by id   (decode, decode::dedup)
//!     -> aggregate      per-partition windows, totals, deals      (aggregate)
//!     -> kpi            formulas of METRICS.md over exact sums    (kpi)
//!     -> export         Prometheus exposition                     (export)
//! ```
//!
//! [`checkpoint`] turns one partition's whole state into versioned,
//! checksummed bytes and back (pure; the source stores them in Kafka).
//! [`engine`] wires decode, dedup and aggregate for one partition around a
//! shared engine clock; it does no I/O. [`replay`] feeds it from a file,
//! [`cli`] parses the command line, [`config`] holds the typed settings.
//! `docs/SEMANTICS.md` pins down every exact rule, `ARCHITECTURE.md` the
//! invariants.

pub mod aggregate;
pub mod checkpoint;
pub mod cli;
pub mod company;
pub mod config;
pub mod decode;
pub mod demo;
pub mod engine;
pub mod export;
pub mod kpi;
pub mod live;
pub mod produce;
pub mod progress;
pub mod replay;
pub mod run;
pub mod source;
pub mod synth;
pub mod tail;
