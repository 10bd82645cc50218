//! Resident memory per active key (printed, not asserted): 100,000
//! (channel, campaign) keys with 6 windows, fed a synthetic stream spread
//! over 90 days of event time, measured as the growth of this process's
//! resident set (VmRSS) and as the aggregator's own accounting.

mod support;

use funnelstream::decode::dedup::Dedup;
use funnelstream::engine::Engine;
use funnelstream::synth::{Synth, SynthConfig};
use support::engine_config;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn scenario(keys: u64, events_per_key: u64, span_days: f64) {
    let mut cfg = engine_config("5m,1h,1d,7d,30d,90d");
    // MEMORY_BENCH_CALENDAR: calendar windows on (e.g. `mtd,qtd`), in
    // Europe/Berlin.
    if let Ok(w) = std::env::var("MEMORY_BENCH_CALENDAR") {
        cfg.calendar = support::calendar_config(&w, "Europe/Berlin");
    }
    let n = keys * events_per_key;
    let step = span_days * 86_400_000.0 / n as f64;
    let before = rss_kib();
    let engine = Engine::new(cfg);
    let mut p = engine.partition();
    // MEMORY_BENCH_V2: the share of v2 events (sessions, conversions,
    // emails, surveys), to compare memory per key with and without them.
    let v2_ratio = std::env::var("MEMORY_BENCH_V2")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let mut g = Synth::new(SynthConfig {
        keys,
        step_ms: step,
        v2_ratio,
        ..SynthConfig::default()
    });
    let t = std::time::Instant::now();
    for _ in 0..n {
        p.process_at(g.next_line().as_bytes(), i64::MAX / 4);
    }
    let secs = t.elapsed().as_secs_f64();
    let now = g.current_ms();
    // Drops the buckets that have left their windows (as a checkpoint does).
    p.agg.settle(now);
    let after = rss_kib();
    let active = p.agg.keys().len() as u64;
    println!(
        "{active} keys, {events_per_key} events/key over {span_days} days, v2 share {v2_ratio}: RSS +{} MiB = {:.0} bytes/key; engine accounting {:.0} bytes/key, of which dense rings {:.0} (dedup memory {} ids, deals {}); {:.2} M events/s incl. generation",
        (after.saturating_sub(before)) / 1024,
        (after.saturating_sub(before)) as f64 * 1024.0 / active as f64,
        p.agg.memory_bytes() as f64 / active as f64,
        funnelstream::aggregate::ring::dense_bytes_in_use() as f64 / active as f64,
        p.dedup().len(),
        p.agg.tracked_deals(),
        n as f64 / secs / 1e6,
    );
}

/// A partition's dedup memory filled to its default capacity of 1,000,000
/// ids (then 100,000 more, so eviction is running): resident growth per id.
fn dedup_scenario() {
    let ids = 1_000_000u64;
    let before = rss_kib();
    let mut d = Dedup::new(86_400_000, ids as usize);
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..ids + ids / 10 {
        h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        d.check_and_insert(h ^ (h >> 29), i as i64);
    }
    let after = rss_kib();
    println!(
        "dedup memory: {} ids remembered ({} evicted): RSS +{} MiB = {:.1} bytes/id",
        d.len(),
        d.evicted,
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 * 1024.0 / d.len() as f64,
    );
}

fn main() {
    // Each scenario in a fresh process, so that resident memory is not
    // inflated or hidden by the previous one's freed pages.
    match std::env::var("MEMORY_BENCH_SCENARIO").as_deref() {
        Ok("dedup") => return dedup_scenario(),
        Ok(per_key) => return scenario(100_000, per_key.parse().unwrap(), 90.0),
        Err(_) => {}
    }
    let me = std::env::current_exe().unwrap();
    for (which, v2) in [
        ("dedup", "0"),
        ("20", "0"),
        ("100", "0"),
        ("20", "0.25"),
        ("100", "0.25"),
    ] {
        let out = std::process::Command::new(&me)
            .env("MEMORY_BENCH_SCENARIO", which)
            .env("MEMORY_BENCH_V2", v2)
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
