//! Helpers shared by the benchmarks: the engine's settings they measure,
//! and for those that need a broker the integration tests' Apache Kafka
//! processes (`tests/it/support/broker.rs`, included by path) and loading
//! events.
#![allow(dead_code)]

#[path = "../../tests/it/support/broker.rs"]
pub mod broker;
#[allow(unused_imports)]
pub use broker::Broker;

use funnelstream::config::{parse_windows, ClockMode, EngineConfig};
use funnelstream::source::producer::{producer, send};
use funnelstream::synth::{Synth, SynthConfig};
use funnelstream::wall_clock_ms;
use std::time::Duration;

/// The engine measured: event time, `windows` (e.g. `5m,1h,1d`), room for
/// a million campaigns and no series budget.
pub fn engine_config(windows: &str) -> EngineConfig {
    EngineConfig {
        windows: parse_windows(windows).unwrap(),
        clock: ClockMode::Event,
        max_campaigns: 1_000_000,
        // Every key its own: the default series budget (200,000 series)
        // would fold all but 470 of a 100,000-key stream into one key.
        max_series: usize::MAX,
        ..EngineConfig::default()
    }
}

/// Calendar windows `windows` in zone `tz`, fiscal year from January.
pub fn calendar_config(windows: &str, tz: &str) -> funnelstream::config::CalendarConfig {
    funnelstream::config::CalendarConfig {
        windows: funnelstream::config::parse_calendar_windows(windows).unwrap(),
        timezone: tz.into(),
        tz: funnelstream::config::parse_timezone(tz).unwrap(),
        fiscal_year_start_month: 1,
    }
}

/// Writes `n` synthetic events over `keys` keys, stamped with the wall
/// clock (a live stream), to `topic`, and waits for every acknowledgement.
pub fn load_events(brokers: &str, topic: &str, n: u64, keys: u64) {
    let (p, _) = producer(brokers, &[]).unwrap();
    let mut g = Synth::new(SynthConfig {
        keys,
        step_ms: 0.0,
        ..SynthConfig::default()
    });
    for _ in 0..n {
        g.set_time_ms(wall_clock_ms());
        send(&p, topic, g.next_line().as_bytes()).unwrap();
    }
    p.flush(Duration::from_secs(300)).unwrap();
}
