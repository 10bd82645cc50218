//! The work an event does, apart from where its state lives: instructions
//! and simulated L2 data-read misses per event, counted by
//! `valgrind --tool=cachegrind` (deterministic, so unlike wall time not
//! subject to this shared machine's noise). Printed, not asserted.
//!
//! Each stream below runs twice in a child process under cachegrind: once
//! warming a partition with 1M events through `Partition::process_at` and
//! stopping there, once going on to apply 500k more with
//! `process_batch_at` (256 a call). The difference of the two runs' counts,
//! divided by 500k, is the cost of one event of the steady stream. The
//! simulated caches are this machine's core: 48 KB L1d, 2 MB L2 (`--D1`,
//! `--LL`). cachegrind ignores software prefetches and does not model the
//! hardware prefetcher or overlapping misses: its misses are the lines an
//! event needs from beyond L2, not what they cost.
//!
//! Run: `cargo bench --bench instructions` (needs `valgrind`; about 25
//! minutes on two cores); `cargo bench --bench instructions -- live` runs
//! the streams whose name contains `live`.

mod support;

use funnelstream::engine::Engine;
use funnelstream::synth::{Synth, SynthConfig};
use std::path::Path;
use std::process::Command;
use support::engine_config;

const WARM: usize = 1_000_000;
const TIMED: usize = 500_000;
const WALL: i64 = i64::MAX / 4;
const SIX: &str = "5m,1h,1d,7d,30d,90d";

/// A stream: name, keys, event-time step (ms per event), windows, Zipf
/// exponent of key popularity (0: uniform).
type Stream = (&'static str, u64, f64, &'static str, f64);

const STREAMS: &[Stream] = &[
    ("backfill/100", 100, 100.0, SIX, 0.0),
    ("backfill/100/sparse", 100, 100_000.0, SIX, 0.0),
    ("backfill/1000", 1_000, 100.0, SIX, 0.0),
    ("backfill/10000", 10_000, 100.0, SIX, 0.0),
    ("backfill/100000", 100_000, 100.0, SIX, 0.0),
    ("backfill/100000/zipf", 100_000, 100.0, SIX, 1.0),
    // A quarter of the events of the v2 types (`/mixed`: see `child`).
    ("backfill/100000/mixed", 100_000, 100.0, SIX, 0.0),
    // Every calendar window on, in Europe/Berlin (`/calendar`).
    ("backfill/100000/calendar", 100_000, 100.0, SIX, 0.0),
    ("live/100000/calendar", 100_000, 0.001, SIX, 0.0),
    ("backfill/100/5m", 100, 100.0, "5m", 0.0),
    ("backfill/100000/5m", 100_000, 100.0, "5m", 0.0),
    ("backfill/100000/90d", 100_000, 100.0, "90d", 0.0),
    ("live/100", 100, 0.001, SIX, 0.0),
    ("live/100000", 100_000, 0.001, SIX, 0.0),
    ("live/100000/90d", 100_000, 0.001, "90d", 0.0),
];

/// Child: feeds one stream, stopping after the warm-up if `skip`.
fn child(name: &str, skip: bool) {
    let &(_, keys, step_ms, windows, key_skew) =
        STREAMS.iter().find(|s| s.0 == name).expect("known stream");
    let mut g = Synth::new(SynthConfig {
        keys,
        step_ms,
        key_skew,
        v2_ratio: if name.ends_with("/mixed") { 0.25 } else { 0.0 },
        ..SynthConfig::default()
    });
    // Both runs generate every line, so that the generator's work cancels.
    let warm: Vec<String> = (0..WARM).map(|_| g.next_line()).collect();
    let timed: Vec<String> = (0..TIMED).map(|_| g.next_line()).collect();
    let mut cfg = engine_config(windows);
    if name.ends_with("/calendar") {
        cfg.calendar =
            support::calendar_config("mtd,qtd,ytd,last_month,last_quarter", "Europe/Berlin");
    }
    let mut p = Engine::new(cfg).partition();
    for l in &warm {
        p.process_at(l.as_bytes(), WALL);
    }
    if skip {
        return;
    }
    let mut out = Vec::with_capacity(256);
    for b in timed.chunks(256) {
        out.clear();
        p.process_batch_at(b, WALL, &mut out);
    }
    std::hint::black_box(&out);
}

/// The `summary:` counts of a cachegrind output file, by event name.
fn summary(file: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(file).unwrap();
    let names: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let counts = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap());
    names.into_iter().zip(counts).collect()
}

/// Runs the child under cachegrind; its counts.
fn cachegrind(name: &str, skip: bool, dir: &Path) -> Vec<(String, u64)> {
    let out = dir.join(format!(
        "{}.{}.out",
        name.replace('/', "_"),
        if skip { "skip" } else { "full" }
    ));
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=cachegrind",
        "--cache-sim=yes",
        "--D1=49152,12,64",
        "--LL=2097152,16,64",
    ])
    .arg(format!("--cachegrind-out-file={}", out.display()))
    .arg(std::env::current_exe().unwrap())
    .env("INSTRUCTIONS_CHILD", name);
    if skip {
        cmd.env("INSTRUCTIONS_SKIP", "1");
    }
    let status = cmd.output().expect("valgrind must be installed");
    assert!(status.status.success(), "cachegrind failed on {name}");
    summary(&out)
}

/// (instructions, L2 data-read misses) per event of the stream.
fn measure(name: &str, dir: &Path) -> (f64, f64) {
    let (skip, full) = std::thread::scope(|s| {
        let skip = s.spawn(|| cachegrind(name, true, dir));
        let full = s.spawn(|| cachegrind(name, false, dir));
        (skip.join().unwrap(), full.join().unwrap())
    });
    let per_event = |event: &str| {
        let get = |c: &[(String, u64)]| c.iter().find(|(n, _)| n == event).unwrap().1;
        (get(&full) - get(&skip)) as f64 / TIMED as f64
    };
    (per_event("Ir"), per_event("DLmr"))
}

fn main() {
    if let Ok(name) = std::env::var("INSTRUCTIONS_CHILD") {
        child(&name, std::env::var_os("INSTRUCTIONS_SKIP").is_some());
        return;
    }
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not found: install it (Debian package `valgrind`)");
        std::process::exit(1);
    }
    // Cachegrind's output files, deleted on drop: at the end, and when a
    // run panics.
    let dir = tempfile::Builder::new()
        .prefix("funnelstream-instructions-")
        .tempdir()
        .expect("create a temporary directory");
    println!(
        "{:<24} {:>14} {:>16}",
        "stream", "instructions", "L2 read misses"
    );
    for s in STREAMS.iter().filter(|s| s.0.contains(filter.as_str())) {
        let (ir, misses) = measure(s.0, dir.path());
        println!("{:<24} {ir:>14.0} {misses:>16.2}", s.0);
    }
}
