//! The per-key log against brute force at bucket edges: entries that the
//! flush adds to the rings must land in their own buckets, window by window.

use super::*;
use crate::config::{parse_windows, ClockMode};
use crate::engine::Engine;

const T0: i64 = 1_790_000_000_000; // a multiple of 5 s

/// Leads and clicks of one key, one pair per 5-second bucket of the 5m
/// window (each at the bucket's first millisecond, so consecutive entries
/// sit exactly one bucket width apart), enough to fill the log twice.
#[test]
fn flushed_entries_stay_in_their_buckets() {
    let cfg = EngineConfig {
        windows: parse_windows("5m,1h").unwrap(),
        clock: ClockMode::Event,
        ..EngineConfig::default()
    };
    let specs = cfg.windows.clone();
    let mut part = Engine::new(cfg).partition();
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
            let mut sums = vec![WindowSums::default(); specs.len()];
            key.sums_into(&specs, now, &mut sums);
            for (w, s) in specs.iter().zip(&sums) {
                let want = (0..n)
                    .filter(|i| {
                        bucket_of(T0 + i * 5_000, w.width_ms) >= oldest_bucket(now, w.width_ms)
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
