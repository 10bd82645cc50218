//! Helpers shared by the benchmarks that need a broker: a local tansu
//! process on a free port, and topic creation.
#![allow(dead_code)]

use funnelstream::engine::wall_clock_ms;
use funnelstream::produce::{producer, send};
use funnelstream::synth::{Synth, SynthConfig};
use rdkafka::producer::Producer;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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

pub struct Tansu(Child);
impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `~/.cargo/bin/tansu` where `cargo install` put it, else from `PATH`.
pub fn tansu_bin() -> String {
    let bin = std::env::var("HOME")
        .map(|h| format!("{h}/.cargo/bin/tansu"))
        .unwrap_or_default();
    if std::path::Path::new(&bin).exists() {
        bin
    } else {
        "tansu".into()
    }
}

pub fn tansu(port: u16) -> Tansu {
    let url = format!("tcp://127.0.0.1:{port}");
    let bin = tansu_bin();
    let child = Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu must be installed (see README)");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Tansu(child)
}

pub fn create_topic(port: u16, name: &str, partitions: u32) {
    let bin = tansu_bin();
    let ok = Command::new(bin)
        .args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--partitions", &partitions.to_string(), name])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
