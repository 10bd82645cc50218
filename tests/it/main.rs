//! funnelstream's integration tests: one test binary (as ripgrep does), one
//! module per feature, one `support` module with everything they share (the
//! Kafka broker, the HTTP client, spawning the binary, Prometheus and tmux).
//!
//! `cargo test` runs the tests that need nothing installed; the others are
//! `#[ignore = "needs …: run scripts/test"]`, and `scripts/test` installs
//! what they need and runs everything (`cargo test -- --include-ignored`).
//! One feature: `cargo test --test it golden::`; one test: its name.
//!
//! A test's temporary files (inputs, configs, the engine's logs) go into a
//! `support::Scratch` directory under `$TMPDIR` (else `/tmp`): deleted when
//! the test passes, kept when it fails, with the failure report naming it
//! ("test failed: its files are kept in …").

mod support;

mod board;
mod checkpoint;
mod cli;
mod contract;
mod demo_ranges;
mod deploy_prometheus;
mod golden;
mod helm;
mod live;
mod model;
mod progress;
mod realistic;
mod rebalance_overlap;
mod reference;
mod security;
mod series_budget;
mod shutdown;
mod soak;
mod tail;
