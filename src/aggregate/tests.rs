//! The per-key log against brute force at bucket edges: entries that the
//! flush adds to the rings must land in their own buckets, window by window.

use super::*;
use crate::config::{parse_windows, ClockMode};
use crate::engine::Engine;

const T0: i64 = 1_790_000_000_000; // a multiple of 5 s

/// A partition with windows 5m and 1h on the event clock, and its specs.
fn partition_5m_1h() -> (Vec<WindowSpec>, crate::engine::Partition) {
    let cfg = EngineConfig {
        windows: parse_windows("5m,1h").unwrap(),
        clock: ClockMode::Event,
        ..EngineConfig::default()
    };
    (cfg.windows.clone(), Engine::new(cfg).partition())
}

/// Leads and clicks of one key, one pair per 5-second bucket of the 5m
/// window (each at the bucket's first millisecond, so consecutive entries
/// sit exactly one bucket width apart), enough to fill the log twice.
#[test]
fn flushed_entries_stay_in_their_buckets() {
    let (specs, mut part) = partition_5m_1h();
    let n = 40;
    for i in 0..n {
        let ts = T0 + i * 5_000;
        for (j, body) in [
            r#""type":"lead","lead_id":"L-1","stage":"new""#,
            r#""type":"click","count":1,"cost":0"#,
        ]
        .iter()
        .enumerate()
        {
            let line =
                format!(r#"{{"id":"e{i}-{j}","ts":{ts},"channel":"c","campaign":"k",{body}}}"#);
            let got = part.process_at(line.as_bytes(), T0 + n * 5_000);
            assert_eq!(
                got,
                crate::engine::Outcome::Applied { late: false },
                "{line}"
            );
        }
    }
    let key = &part.agg.keys()[0];
    assert!(key.log_len < 2 * n as u8, "the log was flushed");
    // Every instant at which a bucket leaves the 5m window, and the one
    // before it.
    for k in 0..=n {
        let leaves = T0 + (k + 60) * 5_000;
        for now in [leaves - 1, leaves] {
            let sums = part.agg.sums_at(key, now);
            for (w, (_, s)) in specs.iter().zip(&sums) {
                let want = (0..n)
                    .filter(|i| {
                        (T0 + i * 5_000).div_euclid(w.width_ms)
                            >= now.div_euclid(w.width_ms) - (crate::config::BUCKETS_PER_WINDOW - 1)
                    })
                    .count() as i64;
                assert_eq!(s.leads[0], want, "leads in {} at {now}", w.label);
                assert_eq!(
                    s.traffic[field::CLICKS],
                    want,
                    "clicks in {} at {now}",
                    w.label
                );
            }
        }
    }
}

/// A sparse key's traffic (one impression or click event with its cost per
/// span) takes one log entry per event, not one for counts and one for
/// money; a span with both impressions and clicks takes two. The sums are
/// the same either way.
#[test]
fn one_traffic_event_logs_one_entry() {
    let (specs, mut part) = partition_5m_1h();
    let apply = |part: &mut crate::engine::Partition, i: i64, t: &str, ts: i64| {
        let line = format!(
            r#"{{"id":"e{i}","ts":{ts},"channel":"c","campaign":"k","type":"{t}","count":2,"cost":1.5}}"#
        );
        assert_eq!(
            part.process_at(line.as_bytes(), ts),
            crate::engine::Outcome::Applied { late: false }
        );
    };
    for i in 0..6 {
        let t = if i % 2 == 0 { "impression" } else { "click" };
        apply(&mut part, i, t, T0 + i * 10_000);
    }
    // The last event is still pending: five spans logged, one entry each.
    assert_eq!(part.agg.keys()[0].log_len, 5);
    // A span with an impression and a click, then one more span.
    apply(&mut part, 6, "impression", T0 + 60_000);
    apply(&mut part, 7, "click", T0 + 60_001);
    apply(&mut part, 8, "click", T0 + 70_000);
    assert_eq!(part.agg.keys()[0].log_len, 8);
    let sums = part.agg.sums_at(&part.agg.keys()[0], T0 + 70_000);
    assert_eq!(sums.len(), specs.len());
    for (_, s) in &sums {
        assert_eq!(s.traffic[field::IMPRESSIONS], 8);
        assert_eq!(s.traffic[field::CLICKS], 10);
        assert_eq!(s.traffic[field::AD_SPEND], 9 * 1_500_000);
        assert_eq!(s.traffic[field::OTHER_SPEND], 0);
    }
}
