//! Fuzz target: arbitrary bytes through the decoder and one engine
//! partition. Nothing may panic; a valid event must satisfy the contract's
//! bounds; the partition must reject exactly what the decoder rejects.
//!
//! The decoder's fast path for flat objects must agree exactly with
//! serde_json's general parser (`decode_general`) on every input.
//!
//! The input is decoded as one message, then split at `\n` and fed line by
//! line to a fresh partition, so one input can also exercise sequences
//! (duplicates, deal open then won, late events).

#![no_main]

use funnelstream::config::EngineConfig;
use funnelstream::decode::time::MAX_TS_MS;
use funnelstream::decode::{decode, decode_general, Body, DecodeConfig, MAX_COUNT};
use funnelstream::engine::{Engine, Outcome};
use libfuzzer_sys::fuzz_target;

/// Fixed wall clock: 2027-01-15T08:00:00Z.
const WALL_MS: i64 = 1_800_000_000_000;
/// RFC 3339 strings may reach a day beyond 0000..=9999 through offsets.
const DAY_MS: i64 = 86_400_000;
const MIN_TS: i64 = -62_167_219_200_000 - DAY_MS;
const MAX_TS: i64 = MAX_TS_MS + DAY_MS + 1_000;
const MAX_MICRO: i64 = 1_000_000_000_000 * 1_000_000;

fn check(data: &[u8], cfg: &DecodeConfig) -> Option<funnelstream::decode::RejectReason> {
    let got = decode(data, cfg, WALL_MS);
    assert_eq!(got, decode_general(data, cfg, WALL_MS));
    match got {
        Err(r) => Some(r),
        Ok(ev) => {
            assert!((1..=128).contains(&ev.id.len()));
            assert!((1..=64).contains(&ev.channel.len()));
            assert!((1..=128).contains(&ev.campaign.len()));
            assert!((MIN_TS..=MAX_TS).contains(&ev.ts));
            assert!(ev.ts <= WALL_MS + cfg.max_future_skew_ms);
            let money = |m: i64| assert!((0..=MAX_MICRO).contains(&m));
            match &ev.body {
                Body::Impression { count, cost } | Body::Click { count, cost } => {
                    assert!((1..=MAX_COUNT).contains(count));
                    money(*cost);
                }
                Body::Lead { .. } => {}
                Body::Deal {
                    amount, created_ts, ..
                } => {
                    money(*amount);
                    if let Some(c) = created_ts {
                        assert!(*c <= ev.ts);
                    }
                }
                Body::Spend { amount, .. } => money(*amount),
                Body::Subscription { mrr_delta, .. } => money(*mrr_delta),
                Body::Session {
                    count,
                    pageviews,
                    bounces,
                    engaged,
                } => {
                    assert!((1..=MAX_COUNT).contains(count));
                    assert!(pageviews >= count && *pageviews <= MAX_COUNT);
                    assert!(bounces <= count && engaged <= count);
                }
                Body::Conversion {
                    action,
                    count,
                    value,
                } => {
                    assert!((1..=64).contains(&action.len()));
                    assert!((1..=MAX_COUNT).contains(count));
                    money(*value);
                }
                Body::Email { count, .. } => assert!((1..=MAX_COUNT).contains(count)),
                Body::Survey { kind, score } => {
                    let (lo, hi) = kind.range();
                    assert!((lo..=hi).contains(&u64::from(*score)));
                }
            }
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let config = EngineConfig::default();
    let cfg = config.decode_config();
    let rejected = check(data, &cfg);

    let engine = Engine::new(config);
    let mut partition = engine.partition();
    match partition.process_at(data, WALL_MS) {
        Outcome::Rejected(r) => assert_eq!(Some(r), rejected),
        _ => assert_eq!(None, rejected),
    }
    for line in data.split(|&b| b == b'\n') {
        let by_decoder = check(line, &cfg);
        match partition.process_at(line, WALL_MS) {
            Outcome::Rejected(r) => assert_eq!(Some(r), by_decoder),
            _ => assert_eq!(None, by_decoder),
        }
    }
});
