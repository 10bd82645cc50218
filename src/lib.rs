//! funnelstream: exact rolling-window marketing and sales KPIs, from Kafka
//! to Prometheus.
//!
//! # Layout
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//!   source (Kafka)      bytes of one message
//!     -> decode         validate against EVENTS.md, dedup by id   (decode, decode::dedup)
//!     -> aggregate      per-partition windows, totals, deals      (aggregate)
//!     -> kpi            formulas of METRICS.md over exact sums    (kpi)
//!     -> export         Prometheus exposition, HTTP               (export)
//! ```
//!
//! The crate has three layers; each uses only the layers above it in this
//! list (`src/architecture.rs` tests it, see ARCHITECTURE.md):
//!
//! - **The core**, pure: `util` (varints, the state codec, id
//!   hashing), [`config`] (typed engine settings), [`decode`], [`aggregate`],
//!   [`kpi`], [`engine`] (decode -> dedup -> aggregate for one partition
//!   around a shared engine clock) and [`checkpoint`] (one partition's state
//!   as versioned, checksummed bytes). No I/O, no clock reads (the time is
//!   passed in), no async runtime.
//! - **The shell**, one owner per outside system: [`source`] is the only
//!   module that talks to Kafka (consumer, producers, admin, the demo's mock
//!   broker), [`export`] the only one that serves HTTP. [`live`] is the state
//!   they share, `clock` the one reader of the system clock, [`synth`] the
//!   synthetic event generator (benchmarks, `produce`, `demo --firehose`),
//!   `company` the demo's simulated company, `progress` the terminal
//!   progress bars of `replay` and `produce --from`.
//! - **The commands** (private): `cmd` has one file per subcommand of
//!   CLI.md, each returning `Result<(), Error>`, except the two larger
//!   ones, which have a module of their own (`demo`, `tail`); `cli` parses
//!   the command line and resolves the settings (`settings`: one typed
//!   struct, layered flag > env > file > default); `serve` runs the live
//!   engine for `run` and `demo`; `logging` installs the one log
//!   subscriber; `error` is the one error type, which knows its exit code;
//!   `main.rs` is the one place that exits.
//!
//! The modules the benchmarks, the integration tests and the fuzzer drive
//! directly are public, and in them only what those name (and the types
//! their signatures need); everything else is `pub(crate)` or private, so
//! the compiler reports dead code. The most used items are re-exported
//! here.

#[cfg(test)]
mod architecture;

// The core.
pub mod aggregate;
pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod engine;
pub mod kpi;
mod util;

// The shell.
mod clock;
mod company;
pub mod export;
pub mod live;
mod progress;
pub mod source;
pub mod synth;

// The commands.
mod cli;
mod cmd;
mod demo;
mod error;
mod logging;
mod serve;
mod settings;
mod tail;

pub use cli::{parse_args, Cli};
pub use clock::wall_clock_ms;
pub use cmd::dispatch;
pub use config::{ClockMode, EngineConfig};
pub use engine::{Engine, Health, Outcome, Partition};
pub use error::Error;
pub use live::LiveState;
pub use synth::{Synth, SynthConfig};

/// The version of this build (`funnel_build_info`, `--version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
