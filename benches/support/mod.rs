//! Helpers shared by the benchmarks that need a broker: the end-to-end
//! tests' Apache Kafka processes (`tests/it/support/broker.rs`), and loading
//! events.
#![allow(dead_code)]

#[path = "../../tests/it/support/broker.rs"]
pub mod broker;
pub use broker::Broker;

use funnelstream::engine::wall_clock_ms;
use funnelstream::produce::{producer, send};
use funnelstream::synth::{Synth, SynthConfig};
use rdkafka::producer::Producer;
use std::time::Duration;

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
