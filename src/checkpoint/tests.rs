use super::*;
use crate::config::{parse_windows, ClockMode, EngineConfig};
use crate::engine::Health;
use crate::export::prometheus::render;
use crate::synth::{Rng, Synth, SynthConfig};
use crate::util::hash::IdHasher;

const WALL: i64 = 1_900_000_000_000;

fn config() -> EngineConfig {
    EngineConfig {
        clock: ClockMode::Event,
        dedup_capacity: 500,
        ..EngineConfig::default()
    }
}

/// Synthetic lines with duplicates, invalid events and time jumping
/// backwards now and then (late and out-of-order events).
fn lines(n: usize, seed: u64, keys: u64) -> Vec<String> {
    let mut g = Synth::new(SynthConfig {
        seed,
        keys,
        step_ms: 20_000.0,
        duplicate_ratio: 0.05,
        invalid_ratio: 0.03,
        // v2 state (its groups, conversion actions) round-trips too.
        v2_ratio: 0.2,
        ..SynthConfig::default()
    });
    let mut rng = Rng::new(seed ^ 7);
    (0..n)
        .map(|i| {
            if i % 97 == 0 {
                let back = rng.below(40 * 86_400_000) as i64;
                g.set_time_ms(g.current_ms() - back);
            }
            if i % 199 == 0 {
                // A late event: older than the 90d window.
                let t = g.current_ms();
                g.set_time_ms(t - 100 * 86_400_000);
                let line = g.next_line();
                g.set_time_ms(t);
                return line;
            }
            g.next_line()
        })
        .collect()
}

fn exposition(engine: &Engine, p: &Partition) -> String {
    let now = engine.clock.current();
    render(&[&p.agg], &Health::of(&[p]), now, "test")
}

fn meta(next: i64, now: i64) -> CheckpointMeta {
    CheckpointMeta {
        topic: "events".into(),
        partition: 3,
        next_offset: next,
        written_at_ms: 1,
        engine_now_ms: now,
    }
}

fn feed(p: &mut Partition, lines: &[String]) {
    for l in lines {
        p.process_at(l.as_bytes(), WALL);
    }
}

#[test]
fn restored_state_continues_exactly_like_uninterrupted() {
    let all = lines(6000, 1, 60);
    for cut in [0, 1, 700, 2500, 5999] {
        let a = Engine::new(config());
        let mut pa = a.live_partition();
        feed(&mut pa, &all[..cut]);
        let bytes = encode(&mut pa, &meta(cut as i64, a.clock.current()));
        let b = Engine::new(config());
        let (mut pb, m) = decode(&bytes, &b, true).expect("decodes");
        assert_eq!(m, meta(cut as i64, a.clock.current()));
        // Byte-identical re-encoding: nothing was lost or reordered.
        assert_eq!(encode(&mut pb, &m), bytes, "cut {cut}");
        // The secret id-hashing key comes along (a fresh partition draws
        // its own).
        assert_eq!(pb.agg.ids, pa.agg.ids);
        assert_ne!(pa.agg.ids, IdHasher::LEGACY);
        assert_ne!(b.partition().agg.ids, pa.agg.ids);
        feed(&mut pa, &all[cut..]);
        feed(&mut pb, &all[cut..]);
        assert_eq!(exposition(&a, &pa), exposition(&b, &pb), "cut {cut}");
        assert_eq!(pa.stats, pb.stats);
        assert_eq!(pa.agg.stats, pb.agg.stats);
        assert!(cut < 5999 || (pa.agg.stats.late > 0 && pa.dedup().evicted > 0));
        assert_eq!(pa.dedup().evicted, pb.dedup().evicted);
    }
}

#[test]
fn restore_into_an_engine_with_other_label_ids_and_partitions() {
    let all = lines(3000, 2, 30);
    let a = Engine::new(config());
    let mut pa = a.partition();
    feed(&mut pa, &all);
    let bytes = encode(&mut pa, &meta(3000, a.clock.current()));
    // The target engine has already interned other labels in another
    // partition, so ids differ; the restored partition renders the same.
    let b = Engine::new(config());
    let mut other = b.partition();
    other.process_at(
        br#"{"id":"x","type":"lead","ts":1795593600000,"channel":"zzz","campaign":"yyy","stage":"new"}"#,
        WALL,
    );
    let (pb, _) = decode(&bytes, &b, false).unwrap();
    let render_one =
        |e: &Engine, p: &Partition| render(&[&p.agg], &Health::of(&[p]), e.clock.current(), "t");
    // b's clock is the max of both partitions' (the lone lead is older).
    assert_eq!(render_one(&a, &pa), render_one(&b, &pb));
}

#[test]
fn lower_label_limit_folds_restored_keys_without_losing_totals() {
    let all = lines(3000, 3, 30);
    let a = Engine::new(config());
    let mut pa = a.partition();
    feed(&mut pa, &all);
    let bytes = encode(&mut pa, &meta(3000, a.clock.current()));
    let b = Engine::new(EngineConfig {
        max_campaigns: 3,
        ..config()
    });
    let (pb, _) = decode(&bytes, &b, false).unwrap();
    assert!(pb.agg.keys().len() < pa.agg.keys().len());
    let sum = |p: &Partition| {
        let mut t = crate::aggregate::Totals::default();
        for k in p.agg.keys() {
            t.add(&k.totals);
        }
        t
    };
    assert_eq!(sum(&pa), sum(&pb));
    let (specs, now) = (a.config.windows.clone(), a.clock.current());
    let windows = |p: &Partition| {
        let views = p.agg.views(now);
        assert_eq!(views.len(), specs.len());
        let mut out = vec![crate::aggregate::WindowSums::default(); views.len()];
        for k in p.agg.keys() {
            k.sums_into(p.agg.slots(), &views, &mut out);
        }
        for o in &mut out {
            o.finish();
            // Action ids differ between engines: compare by name.
            let names = p.agg.labels().action.names();
            let mut by_name: Vec<_> =
                o.v2.conversions
                    .iter()
                    .map(|(a, v)| (names[*a as usize].to_string(), *v))
                    .collect();
            by_name.sort();
            o.v2.conversions.clear();
            o.v2.conversions
                .extend(by_name.iter().enumerate().map(|(i, (_, v))| (i as u32, *v)));
            let mut by_name: Vec<_> = o
                .prev
                .conversions
                .iter()
                .map(|(a, v)| (names[*a as usize].to_string(), *v))
                .collect();
            by_name.sort();
            o.prev.conversions = by_name
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (i as u32, *v))
                .collect();
        }
        out
    };
    assert_eq!(windows(&pa), windows(&pb));
}

#[test]
fn every_bit_flip_and_truncation_is_refused() {
    let all = lines(300, 4, 5);
    let e = Engine::new(config());
    let mut p = e.partition();
    feed(&mut p, &all);
    let bytes = encode(&mut p, &meta(300, e.clock.current()));
    let mut rng = Rng::new(9);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        let i = rng.below(b.len() as u64) as usize;
        b[i] ^= 1 << rng.below(8);
        let Err(err) = decode(&b, &Engine::new(config()), false) else {
            panic!("a flip at byte {i} was accepted");
        };
        // The checksum covers the version, flags and length too: a flip
        // there is damage, not another format.
        assert!(
            matches!(err, CheckpointError::Corrupt(_)),
            "byte {i}: {err}"
        );
    }
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], &Engine::new(config()), false).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer, &Engine::new(config()), false),
        Err(CheckpointError::Corrupt(_))
    ));
}

/// Bodies mutated behind a recomputed checksum (what a bug or a hostile
/// writer could produce) are decoded or refused, never a panic.
#[test]
fn mutated_bodies_with_valid_checksums_never_panic() {
    let all = lines(400, 5, 8);
    let e = Engine::new(config());
    let mut p = e.live_partition();
    feed(&mut p, &all);
    let bytes = encode(&mut p, &meta(400, e.clock.current()));
    let mut rng = Rng::new(11);
    let mut refused = 0;
    for round in 0..4000 {
        let mut b = bytes.clone();
        for _ in 0..=rng.below(4) {
            let i = HEADER_LEN + rng.below((b.len() - HEADER_LEN) as u64) as usize;
            b[i] = match round % 3 {
                0 => rng.below(256) as u8,
                1 => 0xFF,
                _ => b[i] ^ 0x80,
            };
        }
        if round % 5 == 0 {
            let cut = HEADER_LEN + rng.below((b.len() - HEADER_LEN) as u64) as usize;
            b.truncate(cut);
        }
        reseal(&mut b);
        let engine = Engine::new(config());
        match decode(&b, &engine, true) {
            Ok((mut part, _)) => {
                // Whatever was accepted must be usable.
                feed(&mut part, &all[..20]);
                let _ = exposition(&engine, &part);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 2000, "{refused}");
}

/// Writes `b`'s length and checksum as a writer of its format would.
fn reseal(b: &mut [u8]) {
    let body_len = (b.len() - HEADER_LEN) as u64;
    b[12..20].copy_from_slice(&body_len.to_le_bytes());
    let sum = checksum(b, u16::from_le_bytes([b[8], b[9]]));
    b[20..28].copy_from_slice(&sum.to_le_bytes());
}

/// A version damaged into one this engine reads is refused as corrupt:
/// the body is never read in another format's layout.
#[test]
fn a_damaged_version_is_corrupt_not_another_format() {
    let e = Engine::new(config());
    let mut p = e.partition();
    feed(&mut p, &lines(50, 6, 3));
    let bytes = encode(&mut p, &meta(50, e.clock.current()));
    let v5: &[u8] = include_bytes!("fixtures/v5.bin");
    for (b, from) in [(&bytes[..], FORMAT_VERSION), (v5, 5)] {
        for v in OLDEST_READ_VERSION..=FORMAT_VERSION + 1 {
            if v == from {
                continue;
            }
            let mut d = b.to_vec();
            d[8..10].copy_from_slice(&v.to_le_bytes());
            let err = decode(&d, &Engine::new(config()), false).unwrap_err();
            assert!(
                matches!(err, CheckpointError::Corrupt(_)),
                "format {from} read as {v}: {err}"
            );
        }
    }
    // Unknown flags behind a valid checksum are a newer writer's.
    let mut d = bytes.clone();
    d[10] = 1;
    reseal(&mut d);
    assert_eq!(
        decode(&d, &e, false).unwrap_err().to_string(),
        "incompatible checkpoint: unknown format flags 0x0001"
    );
}

#[test]
fn other_windows_or_version_are_incompatible() {
    let e = Engine::new(config());
    let mut p = e.partition();
    feed(&mut p, &lines(50, 6, 3));
    let bytes = encode(&mut p, &meta(50, e.clock.current()));
    let other = Engine::new(EngineConfig {
        windows: parse_windows("5m,1h").unwrap(),
        ..config()
    });
    let err = decode(&bytes, &other, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "incompatible checkpoint: it was written with windows 5m,1h,1d,7d,30d,90d \
         but the engine is configured with 5m,1h"
    );
    for v in [0u8, FORMAT_VERSION as u8 + 1] {
        let mut other = bytes.clone();
        other[8] = v;
        // As a writer of that version would seal it.
        reseal(&mut other);
        assert_eq!(
            decode(&other, &e, false).unwrap_err().to_string(),
            format!(
                "incompatible checkpoint: format version {v}, this engine reads versions 1 to {FORMAT_VERSION}"
            )
        );
    }
    assert!(matches!(
        decode(b"{\"id\":1}", &e, false),
        Err(CheckpointError::Corrupt(_))
    ));
}

#[test]
fn varints_round_trip_at_the_edges() {
    let mut w = Writer::default();
    let ints = [0, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 40];
    let bigs = [0i128, -1, i128::MAX, i128::MIN, 1 << 100];
    for v in ints {
        w.ivar(v);
    }
    for v in bigs {
        w.i128var(v);
    }
    w.uvar(u64::MAX);
    let mut r = Reader::new(&w.buf);
    for v in ints {
        assert_eq!(r.ivar().unwrap(), v);
    }
    for v in bigs {
        assert_eq!(r.i128var().unwrap(), v);
    }
    assert_eq!(r.uvar().unwrap(), u64::MAX);
    assert_eq!(r.remaining(), 0);
    // 11 continuation bytes overflow a u64.
    assert!(Reader::new(&[0xFF; 11]).uvar().is_err());
    assert!(
        Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
            .uvar()
            .is_err()
    );
}

/// A checkpoint written by the previous release (format 1, made by commit
/// b62c493 from the first 300 lines of `fixtures/v1-events.ndjson` with
/// this file's `config()`) restores, and continuing from it gives exactly
/// what the current engine gives on the whole file: an upgrade needs no
/// rebuild.
///
/// Formats 1 and 2 hold no v2 deal attribution (pipeline created, by
/// origin, influenced), which the engine now derives from the same deal
/// events: those series count the events after the cut only, so they are
/// left out of the comparison ([`without_v2_deal_state`]).
#[test]
fn a_format_1_checkpoint_restores_and_continues_exactly() {
    restores_and_continues(include_bytes!("fixtures/v1.bin"), 1);
}

/// The same for a format-2 checkpoint (made by commit 2326043 with
/// the program in `fixtures/README.md`).
#[test]
fn a_format_2_checkpoint_restores_and_continues_exactly() {
    restores_and_continues(include_bytes!("fixtures/v2.bin"), 2);
}

#[test]
fn a_format_4_checkpoint_restores_and_continues_exactly() {
    restores_and_continues(include_bytes!("fixtures/v4.bin"), 4);
}

#[test]
fn a_format_5_checkpoint_restores_and_continues_exactly() {
    restores_and_continues(include_bytes!("fixtures/v5.bin"), 5);
}

/// The exposition without the series of state formats 1 and 2 did not
/// carry: the v2 deal groups, and the previous windows (formats before 4
/// kept the growth groups' buckets for one window length, so after an
/// upgrade a previous window fills in over one window length).
fn without_v2_deal_state(text: &str) -> String {
    text.lines()
        .filter(|l| {
            !(l.starts_with("funnel_pipeline_created")
                || l.contains("_previous{")
                || l.contains("_growth_ratio{")
                || l.starts_with("funnel_series ")
                || l.contains("_by_origin")
                || l.contains("_influenced")
                || l.starts_with("funnel_marketing_originated_ratio"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn restores_and_continues(v1: &[u8], version: u16) {
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), version);
    let all: Vec<String> = include_str!("fixtures/v1-events.ndjson")
        .lines()
        .map(str::to_string)
        .collect();
    let cut = 300;
    let a = Engine::new(config());
    let mut pa = a.live_partition();
    feed(&mut pa, &all);
    let b = Engine::new(config());
    let (mut pb, m) = decode(v1, &b, true).expect("the old format decodes");
    assert_eq!(m.next_offset, cut as i64);
    // Every id the old memory held is remembered (as accepted at the
    // checkpoint's engine time), so its resends stay duplicates.
    assert!(pb.dedup().len() > 100, "{}", pb.dedup().len());
    // Before format 5 ids were hashed unkeyed: the partition goes on
    // hashing so. From 5 on it keeps its key.
    if version < 5 {
        assert_eq!(pb.agg.ids, IdHasher::LEGACY);
    } else {
        assert_ne!(pb.agg.ids, IdHasher::LEGACY);
    }
    let ids = pb.agg.ids;
    feed(&mut pb, &all[cut..]);
    if version >= 4 {
        // Formats 4 and later carry every series.
        assert_eq!(exposition(&a, &pa), exposition(&b, &pb));
    } else {
        assert_eq!(
            without_v2_deal_state(&exposition(&a, &pa)),
            without_v2_deal_state(&exposition(&b, &pb))
        );
    }
    assert_eq!(pa.stats, pb.stats);
    // Re-encoded, it is a current-format checkpoint.
    let again = encode(&mut pb, &meta(all.len() as i64, b.clock.current()));
    assert_eq!(u16::from_le_bytes([again[8], again[9]]), FORMAT_VERSION);
    let (pc, _) = decode(&again, &Engine::new(config()), true).expect("decodes");
    assert_eq!(pc.agg.ids, ids);
}

fn calendar_config(windows: &str, tz: &str, fiscal: u8) -> EngineConfig {
    EngineConfig {
        calendar: crate::config::CalendarConfig {
            windows: crate::config::parse_calendar_windows(windows).unwrap(),
            timezone: tz.into(),
            tz: crate::config::parse_timezone(tz).unwrap(),
            fiscal_year_start_month: fiscal,
        },
        ..config()
    }
}

/// Calendar windows' state round-trips like the rolling windows', and a
/// checkpoint only restores into an engine with the same calendar
/// settings: another one is incompatible, naming the setting.
#[test]
fn calendar_state_restores_and_other_calendar_settings_are_incompatible() {
    let all = lines(4000, 5, 20);
    let cfg = || calendar_config("mtd,qtd,ytd,last_month,last_quarter", "Europe/Berlin", 4);
    for cut in [0, 1500, 3999] {
        let a = Engine::new(cfg());
        let mut pa = a.live_partition();
        feed(&mut pa, &all[..cut]);
        let bytes = encode(&mut pa, &meta(cut as i64, a.clock.current()));
        let b = Engine::new(cfg());
        let (mut pb, m) = decode(&bytes, &b, true).expect("decodes");
        assert_eq!(encode(&mut pb, &m), bytes, "cut {cut}");
        feed(&mut pa, &all[cut..]);
        feed(&mut pb, &all[cut..]);
        let (ea, eb) = (exposition(&a, &pa), exposition(&b, &pb));
        assert!(ea.contains("window=\"qtd\""));
        assert_eq!(ea, eb, "cut {cut}");
    }
    let a = Engine::new(cfg());
    let mut pa = a.partition();
    feed(&mut pa, &all[..500]);
    let bytes = encode(&mut pa, &meta(500, a.clock.current()));
    for (other, key) in [
        (
            calendar_config("mtd", "Europe/Berlin", 4),
            "calendar_windows",
        ),
        (
            calendar_config("mtd,qtd,ytd,last_month,last_quarter", "UTC", 4),
            "calendar_timezone",
        ),
        (
            calendar_config("mtd,qtd,ytd,last_month,last_quarter", "Europe/Berlin", 1),
            "fiscal_year_start_month",
        ),
        (config(), "calendar_windows"),
    ] {
        let err = decode(&bytes, &Engine::new(other), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "incompatible checkpoint: it was written with {key} = "
            )),
            "{err}"
        );
    }
    // Without calendar windows, the zone and fiscal year are irrelevant.
    let mut p = Engine::new(config()).partition();
    feed(&mut p, &all[..100]);
    let bytes = encode(&mut p, &meta(100, 0));
    assert!(decode(
        &bytes,
        &Engine::new(calendar_config("", "Asia/Tokyo", 7)),
        false
    )
    .is_ok());
}
