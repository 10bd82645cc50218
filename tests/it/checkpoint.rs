//! Exactness under failure, end to end, with the real binary and real
//! brokers: SIGKILL crashes, a rebalance between two engines, a broker
//! outage, and missing, corrupt and incompatible checkpoints. In every case
//! the result must equal `replay` of the same events exactly.
//!
//! The broker is Apache Kafka (`scripts/kafka`), written to by producers
//! that batch normally, so resuming from a checkpoint's offset starts
//! fetches inside record batches.

use crate::support::*;

use funnelstream::synth::{Rng, Synth, SynthConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A file of events, `events.ndjson` in a [`Scratch`] directory of its own
/// (kept if the test fails), where the parts a test cuts it into
/// (`with_extension`) go too. Dereferences to the file's path.
struct EventFile {
    path: PathBuf,
    _dir: Scratch,
}

impl std::ops::Deref for EventFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for EventFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Writes `n` synthetic events (with duplicates and invalid events) to a
/// temporary file.
fn event_file(name: &str, n: usize, step_ms: f64, seed: u64) -> EventFile {
    event_file_keys(name, n, step_ms, seed, 24)
}

fn event_file_keys(name: &str, n: usize, step_ms: f64, seed: u64, keys: u64) -> EventFile {
    let mut g = Synth::new(SynthConfig {
        seed,
        keys,
        step_ms,
        duplicate_ratio: 0.02,
        invalid_ratio: 0.01,
        // Well in the past, so no event is rejected as future by one run
        // and accepted by another.
        start_ms: 1_790_000_000_000,
        ..SynthConfig::default()
    });
    let dir = Scratch::new(name);
    let path = dir.join("events.ndjson");
    let mut text = String::new();
    for _ in 0..n {
        text.push_str(&g.next_line());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    EventFile { path, _dir: dir }
}

fn start_producer(broker: &str, topic: &str, file: &Path, rate: u32) -> Child {
    Command::new(BIN)
        .args(["produce", "--brokers", broker, "--topic", topic, "--from"])
        .arg(file)
        .args(["--rate", &rate.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn produce_all(broker: &str, topic: &str, file: &Path) {
    let status = start_producer(broker, topic, file, 0).wait().unwrap();
    assert!(status.success(), "produce failed");
}

/// Waits until the engines together processed `n` messages and are ready;
/// returns their scrapes.
fn wait_processed(engines: &[&Engine], n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let texts: Vec<String> = engines.iter().map(|e| e.scrape()).collect();
        let done: f64 = texts.iter().map(|t| processed(t)).sum();
        let ready = engines
            .iter()
            .all(|e| try_http_get(e.port, "/readyz", &[]).is_ok_and(|r| r.status == 200));
        if done as usize == n && ready {
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "processed {done} of {n} (ready: {ready}); logs:\n{}",
            engines
                .iter()
                .map(|e| e.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A broker with a one-partition `events` topic holding `n` synthetic
/// events (see [`event_file`]) and a `checkpoints` topic; the events' file
/// and their count.
fn one_partition_of_events(
    name: &str,
    n: usize,
    step_ms: f64,
    seed: u64,
) -> (Broker, EventFile, usize) {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("checkpoints", 1);
    let file = event_file(name, n, step_ms, seed);
    produce_all(&broker.addr(), "events", &file);
    let n = lines(&file);
    (broker, file, n)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

/// Splits an event file in two at line `at`.
fn split(path: &Path, at: usize) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(path).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let (a, b) = (path.with_extension("a"), path.with_extension("b"));
    std::fs::write(&a, all[..at].join("\n") + "\n").unwrap();
    std::fs::write(&b, all[at..].join("\n") + "\n").unwrap();
    (a, b)
}

/// A killed member stays in the group until its session times out; 6 s
/// keeps restarts quick.
fn checkpoint_args<'a>(topic: &'a str, interval: &'a str) -> Vec<&'a str> {
    vec![
        "--kafka-property",
        "session.timeout.ms=6000",
        "--kafka-property",
        "heartbeat.interval.ms=500",
        "--clock",
        "event",
        "--checkpoint-topic",
        topic,
        "--checkpoint-interval",
        interval,
    ]
}

fn wait_log(e: &Engine, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !e.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no `{what}` in log:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checkpoint writes in flight when the engine was killed: partitions
/// whose last checkpoint line in the (debug) log is "checkpoint encoded,
/// writing" with no "checkpoint written" after it.
fn killed_mid_checkpoint(log: &str) -> bool {
    let mut writing = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        let key = (f["topic"].to_string(), f["partition"].to_string());
        match f["message"].as_str() {
            Some("checkpoint encoded, writing") => {
                writing.insert(key, true);
            }
            Some("checkpoint written") => {
                writing.insert(key, false);
            }
            _ => {}
        }
    }
    writing.values().any(|w| *w)
}

/// At least 8 SIGKILLs at random moments while a rate-limited producer
/// writes normally batched events: some during the group join (before any
/// partition is assigned), some while a checkpoint is being written to
/// Kafka (found in the debug log), the rest mid-stream. A last run then
/// equals `replay` exactly.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn sigkills_during_join_checkpoints_and_streaming_then_restart_equals_replay() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("checkpoints", 1);
    // 3,000 keys: checkpoints of several hundred KB take a while to write.
    let file = event_file_keys("crash8", 24_000, 1500.0, 37, 3000);
    let n = lines(&file);
    // Events arrive over ~60 s while engines are started and killed.
    let mut producer = start_producer(&broker.addr(), "events", &file, 400);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    let mut args = checkpoint_args("checkpoints", "200ms");
    args.extend(["--log-level", "debug"]);
    let mut kills: Vec<(&str, u64, f64)> = Vec::new();
    let count = |kills: &[(&str, u64, f64)], k: &str| kills.iter().filter(|x| x.0 == k).count();
    let mut produced = false;
    while kills.len() < 8
        || count(&kills, "join") < 2
        || count(&kills, "checkpoint") < 2
        || !produced
    {
        assert!(
            kills.len() < 40,
            "seed {seed}: not enough kills of each kind: {kills:?}"
        );
        let mut e = Engine::start(&broker.addr(), "events", "crash8", &args);
        let ms = match kills.len() % 3 {
            // During the join: the dead member holds the group until its
            // session (6 s) expires.
            0 => {
                wait_log(&e, "\"consuming\"", Duration::from_secs(60));
                rng.below(300)
            }
            // During a checkpoint write: the broker is frozen (SIGSTOP) at
            // a random moment, so the next checkpoint's write cannot
            // finish; once the log shows one in flight, the engine is
            // killed and the broker resumes.
            1 => {
                wait_log(&e, "partitions assigned", Duration::from_secs(60));
                let ms = rng.below(1000);
                std::thread::sleep(Duration::from_millis(ms));
                broker.pause(1);
                let deadline = Instant::now() + Duration::from_secs(5);
                while !killed_mid_checkpoint(&e.log()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                e.sigkill();
                broker.resume(1);
                ms
            }
            _ => {
                wait_log(&e, "partitions assigned", Duration::from_secs(60));
                100 + rng.below(2000)
            }
        };
        let before = if e.child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(ms));
            let before = processed(&e.scrape());
            e.sigkill();
            before
        } else {
            -1.0
        };
        let log = e.log();
        let kind = if !log.contains("partitions assigned") && !log.contains("state restored") {
            "join"
        } else if killed_mid_checkpoint(&log) {
            "checkpoint"
        } else {
            "stream"
        };
        kills.push((kind, ms, before));
        produced |= producer.try_wait().unwrap().is_some();
    }
    assert!(producer.wait().unwrap().success());
    eprintln!(
        "seed {seed}: kills (kind, ms after the trigger, processed by that run; -1: \
         killed during a checkpoint, not scraped): {kills:?}"
    );
    assert!(
        kills.iter().filter(|k| k.2 > 0.0).count() >= 2,
        "several kills after the run made progress: {kills:?}"
    );
    let e = Engine::start(&broker.addr(), "events", "crash8", &args);
    let text = wait_processed(&[&e], n, Duration::from_secs(180)).remove(0);
    assert_same_series(&replay(&file), &text);
    assert_eq!(
        metric(&text, "funnel_checkpoint_restores_total"),
        1.0,
        "the last run restored its state:\n{}",
        e.log()
    );
    assert_eq!(metric(&text, "funnel_checkpoint_rebuilds_total"), 0.0);
}

/// The expositions of several engines of one group together equal one
/// replay: every campaign series is published by exactly one of them with
/// the replay's value, every other series sums to it.
fn assert_engines_sum_to(texts: &[String], want: &str) {
    let want = series(want);
    let got: Vec<BTreeMap<String, String>> = texts.iter().map(|t| series(t)).collect();
    for m in &got {
        for k in m.keys() {
            assert!(want.contains_key(k), "{k} is not in the replay");
        }
    }
    for (k, v) in &want {
        let values: Vec<&String> = got.iter().filter_map(|m| m.get(k)).collect();
        if k.contains("campaign=") {
            assert!(
                values.len() == 1 && values[0] == v,
                "{k}: want {v} from one engine, got {values:?}"
            );
        } else {
            let sum: f64 = values.iter().map(|x| x.parse::<f64>().unwrap()).sum();
            assert_eq!(sum, v.parse::<f64>().unwrap(), "{k}");
        }
    }
}

/// Three engines in one group while a producer writes: A starts, B and C
/// join, B is SIGKILLed, C leaves (SIGTERM), B comes back. The two left
/// together equal the replay exactly.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn three_engines_joining_leaving_and_crashing_sum_exactly() {
    let broker = Broker::start();
    broker.create_topic("events", 6);
    broker.create_topic("checkpoints", 2);
    // A short span of event time: sums are comparable whatever each
    // engine's clock (see the rebalance test).
    let file = event_file("three", 18_000, 10.0, 47);
    let n = lines(&file);
    let mut producer = start_producer(&broker.addr(), "events", &file, 1000);
    let args = checkpoint_args("checkpoints", "300ms");
    let start = || Engine::start(&broker.addr(), "events", "three", &args);
    let a = start();
    wait_log(&a, "partitions assigned", Duration::from_secs(60));
    let mut b = start();
    wait_log(&b, "partitions assigned", Duration::from_secs(60));
    let mut c = start();
    wait_log(&c, "partitions assigned", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    b.sigkill();
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = c.sigterm();
    assert!(status.success(), "{}", c.log());
    let b = start();
    wait_log(&b, "partitions assigned", Duration::from_secs(60));
    assert!(producer.wait().unwrap().success());
    let texts = wait_processed(&[&a, &b], n, Duration::from_secs(120));
    assert_engines_sum_to(&texts, &replay(&file));
    assert!(
        texts
            .iter()
            .all(|t| series(t).keys().any(|k| k.contains("campaign="))),
        "both engines own partitions"
    );
}

/// The checkpoint topic really compacts (segments rolled every 500 ms, a
/// minimal dirty ratio): while checkpoints are written every 100 ms, the
/// records left fall well below the offsets written, and a restore from
/// what compaction kept, after a SIGKILL, is exact.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn compacted_checkpoint_topic_restores_exactly() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic_with(
        "checkpoints",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "500"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "0"),
        ],
    );
    let file = event_file("compact", 12_000, 500.0, 41);
    let n = lines(&file);
    let mut producer = start_producer(&broker.addr(), "events", &file, 800);
    let args = checkpoint_args("checkpoints", "100ms");
    let mut e = Engine::start(&broker.addr(), "events", "compact", &args);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (records, high) = loop {
        let records = checkpoint_records(&broker.addr(), "checkpoints").len() as i64;
        let (_, high) = broker.watermarks("checkpoints", 0);
        // Each checkpoint is two records (a chunk and its manifest) under
        // four keys (two slots): compaction leaves a handful per segment.
        if high >= 40 && records * 4 < high {
            break (records, high);
        }
        assert!(
            Instant::now() < deadline,
            "no compaction: {records} records of {high} offsets"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("compaction ran: {records} records left of {high} offsets written");
    assert!(producer.wait().unwrap().success());
    wait_processed(&[&e], n, Duration::from_secs(120));
    // Let the last checkpoints land, then crash and restore.
    std::thread::sleep(Duration::from_millis(500));
    e.sigkill();
    let e = Engine::start(&broker.addr(), "events", "compact", &args);
    let text = wait_processed(&[&e], n, Duration::from_secs(120)).remove(0);
    assert_same_series(&replay(&file), &text);
    assert_eq!(metric(&text, "funnel_checkpoint_restores_total"), 1.0);
    assert_eq!(metric(&text, "funnel_checkpoint_rebuilds_total"), 0.0);
    let (records_after, high_after) = (
        checkpoint_records(&broker.addr(), "checkpoints").len(),
        broker.watermarks("checkpoints", 0).1,
    );
    eprintln!("after the restore: {records_after} records of {high_after} offsets");
}

/// Source retention deletes the segments a checkpoint points into while
/// the engine is down: the documented rebuild happens (from the earliest
/// retained offset, `funnel_checkpoint_rebuilds_total{reason="missing"}`),
/// and what follows is counted exactly.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn source_retention_past_the_checkpoint_rebuilds_and_counts_it() {
    let broker = Broker::start();
    let short = [("segment.ms", "500"), ("retention.ms", "3000")];
    broker.create_topic("events", 1);
    broker.create_topic("checkpoints", 1);
    let file = event_file("retention", 3000, 10.0, 43);
    let n = lines(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let part = |a: usize, b: usize, name: &str| {
        let p = file.with_extension(name);
        std::fs::write(&p, all[a..b].join("\n") + "\n").unwrap();
        p
    };
    let (first, second, third) = (
        part(0, n / 3, "1"),
        part(n / 3, 2 * n / 3, "2"),
        part(2 * n / 3, n, "3"),
    );
    let args = checkpoint_args("checkpoints", "300ms");
    produce_all(&broker.addr(), "events", &first);
    let mut e = Engine::start(&broker.addr(), "events", "retention", &args);
    wait_processed(&[&e], n / 3, Duration::from_secs(90));
    assert!(e.sigterm().0.success());
    // While the engine is away: more events, then retention deletes every
    // segment, the checkpoint's offset included.
    produce_all(&broker.addr(), "events", &second);
    let (_, high) = broker.watermarks("events", 0);
    broker.alter_topic("events", &short);
    let deadline = Instant::now() + Duration::from_secs(90);
    while broker.watermarks("events", 0).0 < high {
        assert!(
            Instant::now() < deadline,
            "retention did not delete the log: {:?}",
            broker.watermarks("events", 0)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    broker.alter_topic("events", &[]);
    let e = Engine::start(&broker.addr(), "events", "retention", &args);
    wait_log(&e, "partitions assigned", Duration::from_secs(60));
    produce_all(&broker.addr(), "events", &third);
    let rest = n - 2 * n / 3;
    let text = wait_processed(&[&e], rest, Duration::from_secs(90)).remove(0);
    assert_same_series(&replay(&third), &text);
    assert_eq!(
        metric(
            &text,
            "funnel_checkpoint_rebuilds_total{reason=\"missing\"}"
        ),
        1.0
    );
    assert!(
        e.log().contains("no longer holds offset")
            && e.log()
                .contains("rebuilding from the earliest retained offset"),
        "{}",
        e.log()
    );
}

/// Two engines in one group: B joins midway and takes partitions (with
/// their state) from A; the two expositions together equal one replay.
/// Then B stops and A takes everything back: A alone equals the replay.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn rebalance_between_two_engines_sums_exactly() {
    rebalance_between_two_engines(&checkpoint_args("checkpoints", "500ms"));
}

/// The same with the next-generation consumer group protocol (KIP-848):
/// the broker assigns partitions, incrementally; no client session or
/// heartbeat settings.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn rebalance_between_two_engines_sums_exactly_with_the_consumer_protocol() {
    let broker = rebalance_between_two_engines(&[
        "--kafka-property",
        "group.protocol=consumer",
        "--clock",
        "event",
        "--checkpoint-topic",
        "checkpoints",
        "--checkpoint-interval",
        "500ms",
    ]);
    // The broker saw it so.
    assert!(
        broker
            .log(1)
            .contains("joins the consumer group using the consumer protocol"),
        "the group did not use the consumer protocol"
    );
}

/// Runs the two-engine rebalance scenario with `args`; the broker it used.
fn rebalance_between_two_engines(args: &[&str]) -> Broker {
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.create_topic("checkpoints", 2);
    // 16k events over ~160 s of event time: every window of every engine
    // holds all its events whatever its clock, so sums are comparable.
    let file = event_file("rebalance", 16_000, 10.0, 11);
    let n = lines(&file);
    let (first, second) = split(&file, n / 2);
    let args = args.to_vec();
    produce_all(&broker.addr(), "events", &first);
    let a = Engine::start(&broker.addr(), "events", "rebalance", &args);
    wait_processed(&[&a], n / 2, Duration::from_secs(90));
    let mut b = Engine::start(&broker.addr(), "events", "rebalance", &args);
    wait_log(&b, "partitions assigned", Duration::from_secs(60));
    produce_all(&broker.addr(), "events", &second);
    let texts = wait_processed(&[&a, &b], n, Duration::from_secs(120));
    let want = series(&replay(&file));
    let (sa, sb) = (series(&texts[0]), series(&texts[1]));
    let campaign_series =
        |m: &BTreeMap<String, String>| m.keys().filter(|k| k.contains("campaign=")).count();
    assert!(
        campaign_series(&sa) > 0 && campaign_series(&sb) > 0,
        "both engines own partitions"
    );
    assert!(
        b.log().contains("state restored from checkpoint"),
        "B took over A's state:\n{}",
        b.log()
    );
    for k in sa.keys().chain(sb.keys()) {
        assert!(want.contains_key(k), "{k} is not in the replay");
    }
    for (k, v) in &want {
        if k.contains("campaign=") {
            // A key lives in one partition, so in exactly one engine.
            match (sa.get(k), sb.get(k)) {
                (Some(x), None) | (None, Some(x)) => assert_eq!(x, v, "{k}"),
                other => panic!("{k}: {other:?}"),
            }
        } else {
            let sum: f64 = [&sa, &sb]
                .iter()
                .filter_map(|m| m.get(k))
                .map(|x| x.parse::<f64>().unwrap())
                .sum();
            assert_eq!(sum, v.parse::<f64>().unwrap(), "{k}");
        }
    }
    // What a dashboard does: sum numerators and denominators across
    // instances, then divide.
    let total = |m: &[&BTreeMap<String, String>], name: &str, window: &str| -> f64 {
        m.iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| {
                k.starts_with(&format!("{name}{{")) && k.contains(&format!("window=\"{window}\""))
            })
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .sum()
    };
    for w in ["5m", "1h", "90d"] {
        for (num, den) in [
            ("funnel_clicks", "funnel_impressions"),
            ("funnel_ad_spend", "funnel_customers_new"),
            ("funnel_deals_won", "funnel_opportunities"),
        ] {
            let got = total(&[&sa, &sb], num, w) / total(&[&sa, &sb], den, w);
            let exp = total(&[&want], num, w) / total(&[&want], den, w);
            // Equal up to the order f64 sums the exact decimals in.
            assert!(
                (got - exp).abs() <= 1e-12 * exp.abs() || (got.is_nan() && exp.is_nan()),
                "{num}/{den} {w}: {got} vs {exp}"
            );
        }
    }

    // B leaves; A takes its partitions and their state back.
    let (status, _) = b.sigterm();
    assert!(status.success());
    wait_processed(&[&a], n, Duration::from_secs(90));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = a.scrape();
        if series(&text) == want {
            assert!(metric(&text, "funnel_checkpoint_restores_total") >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "A alone differs from replay");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_same_series(&replay(&file), &a.scrape());
    broker
}

/// The broker goes away mid-stream and comes back with its data; a slow
/// broker before that. The engine keeps running, is not ready while the
/// broker is away, and ends exactly at the replay.
#[test]
fn broker_outage_and_slow_broker_lose_nothing() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("events", 2, 1).unwrap();
    cluster.create_topic("checkpoints", 1, 1).unwrap();
    let addr = cluster.bootstrap_servers();
    let file = event_file("outage", 6000, 500.0, 13);
    let n = lines(&file);
    let (first, second) = split(&file, n / 2);
    produce_file(&addr, "events", &first);
    let mut args = checkpoint_args("checkpoints", "300ms");
    // Heartbeats queue behind 400 ms round trips on the one connection.
    args.extend([
        "--kafka-property",
        "reconnect.backoff.max.ms=1000",
        "--kafka-property",
        "session.timeout.ms=15000",
    ]);
    let mut e = Engine::start(&addr, "events", "outage", &args);
    wait_processed(&[&e], n / 2, Duration::from_secs(120));

    // Slow: 400 ms per request for a while.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(400))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();

    // Gone: not ready, still alive and healthy.
    cluster.broker_down(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !try_http_get(e.port, "/readyz", &[]).is_ok_and(|r| r.status == 503) {
        assert!(
            Instant::now() < deadline,
            "still ready with the broker down:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let producer = start_producer(&addr, "events", &second, 0);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        e.child.try_wait().unwrap().is_none(),
        "the engine exited:\n{}",
        e.log()
    );
    assert_eq!(e.get("/healthz").0, 200);
    assert_eq!(e.get("/readyz").0, 503);

    // Back, with its data.
    cluster.broker_up(1).unwrap();
    let mut producer = producer;
    assert!(
        producer.wait().unwrap().success(),
        "produce during the outage failed"
    );
    let texts = wait_processed(&[&e], n, Duration::from_secs(120));
    assert_same_series(&replay(&file), &texts[0]);
    let (status, _) = e.sigterm();
    assert!(status.success());
}

/// Every record of the checkpoint topic's partition 0: (offset, key, value).
fn checkpoint_records(broker: &str, topic: &str) -> Vec<(i64, String, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", "checkpoint-inspector")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no end of the checkpoint topic");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            _ => {}
        }
    }
}

/// The checkpoints of `group` for partition 0 of `events` in the topic
/// `checkpoints`, oldest first: each manifest with its state (the chunks'
/// payloads joined).
fn checkpoints(
    broker: &str,
    group: &str,
) -> Vec<(funnelstream::source::checkpoint::Manifest, Vec<u8>)> {
    let records = checkpoint_records(broker, "checkpoints");
    let prefix = format!("funnelstream/{group}/events/0/");
    records
        .iter()
        .filter(|(_, k, _)| k.starts_with(&prefix) && k.ends_with("/m"))
        .map(|(_, _, manifest)| {
            let m: funnelstream::source::checkpoint::Manifest =
                serde_json::from_slice(manifest).unwrap();
            let state = m
                .chunks
                .iter()
                .flat_map(|o| {
                    let (_, _, v) = records.iter().find(|(ro, _, _)| ro == o).unwrap();
                    v[funnelstream::source::checkpoint::CHUNK_HEADER..].to_vec()
                })
                .collect();
            (m, state)
        })
        .collect()
}

/// Writes records to partition 0 of `topic`; returns their offsets.
fn write_records(broker: &str, topic: &str, records: &[(String, Vec<u8>)]) -> Vec<i64> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    records
        .iter()
        .map(|(k, v)| {
            let r = FutureRecord::to(topic).partition(0).key(k).payload(v);
            block_on(p.send(r, Duration::from_secs(10))).unwrap().offset
        })
        .collect()
}

/// Writes a checkpoint by hand: one chunk holding `state`, and a manifest.
fn forge_checkpoint(broker: &str, group: &str, next_offset: i64, state: &[u8]) {
    use funnelstream::source::checkpoint::{chunk_record, Manifest, MANIFEST_FORMAT};
    let generation = 77;
    let chunk = write_records(
        broker,
        "checkpoints",
        &[(
            format!("forged/{group}/0"),
            chunk_record(generation, 0, state),
        )],
    );
    let m = Manifest {
        format: MANIFEST_FORMAT,
        group: group.into(),
        topic: "events".into(),
        partition: 0,
        next_offset,
        generation,
        slot: 0,
        chunks: chunk,
        bytes: state.len() as u64,
        written_at_ms: 1,
    };
    write_records(
        broker,
        "checkpoints",
        &[(format!("forged/{group}/m"), serde_json::to_vec(&m).unwrap())],
    );
}

/// Waits for the engine to exit; its exit code.
fn exit_code(e: &mut Engine, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = e.child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "still running:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Missing, corrupt and incompatible checkpoints are reported and handled
/// by `--checkpoint-policy`: `refuse` exits 1 naming the problem, `rebuild`
/// recounts from the earliest offset (and says so on /metrics); a corrupt
/// newer checkpoint is skipped for an older good one.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn missing_corrupt_and_incompatible_checkpoints_follow_the_policy() {
    let (broker, file, n) = one_partition_of_events("policy", 3000, 2000.0, 17);
    let want = replay(&file);
    let args = checkpoint_args("checkpoints", "1s");
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let start = |group: &str, extra: &[&str]| {
        let v = with(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        Engine::start(&broker.addr(), "events", group, &refs)
    };

    // A good checkpoint, written at shutdown.
    let mut e = start("good", &[]);
    wait_processed(&[&e], n, Duration::from_secs(60));
    assert!(e.sigterm().0.success());
    assert!(
        e.log()
            .contains("stopping: applying in-flight events, checkpointing and committing offsets"),
        "{}",
        e.log()
    );
    let (m, state) = checkpoints(&broker.addr(), "good")
        .pop()
        .expect("a checkpoint of group `good`");
    assert_eq!(m.next_offset, n as i64);
    let mut corrupt = state.clone();
    corrupt[200] ^= 0x10;

    // Corrupt, and newer: skipped for the good one.
    forge_checkpoint(&broker.addr(), "good", n as i64, &corrupt);
    let e = start("good", &[]);
    let text = wait_processed(&[&e], n, Duration::from_secs(60)).remove(0);
    assert_same_series(&want, &text);
    assert_eq!(metric(&text, "funnel_checkpoint_restores_total"), 1.0);
    assert_eq!(metric(&text, "funnel_checkpoint_rebuilds_total"), 0.0);
    assert!(e.log().contains("checksum mismatch"), "{}", e.log());
    drop(e);

    // Corrupt and the only one: refuse, or rebuild from the earliest offset.
    forge_checkpoint(&broker.addr(), "corrupt", n as i64, &corrupt);
    let mut e = start("corrupt", &["--checkpoint-policy", "refuse"]);
    assert_eq!(exit_code(&mut e, Duration::from_secs(60)), 1);
    let log = e.log();
    assert!(
        log.contains("checkpoint of events/0 is corrupt") && log.contains("checksum mismatch"),
        "{log}"
    );
    let e = start("corrupt", &[]);
    let text = wait_processed(&[&e], n, Duration::from_secs(60)).remove(0);
    assert_same_series(&want, &text);
    assert_eq!(
        metric(
            &text,
            "funnel_checkpoint_rebuilds_total{reason=\"corrupt\"}"
        ),
        1.0
    );
    drop(e);

    // Incompatible: the good state, but the engine has other windows.
    forge_checkpoint(&broker.addr(), "windows", n as i64, &state);
    let mut e = start(
        "windows",
        &["--windows", "5m,1h", "--checkpoint-policy", "refuse"],
    );
    assert_eq!(exit_code(&mut e, Duration::from_secs(60)), 1);
    assert!(
        e.log().contains(
            "incompatible checkpoint: it was written with windows 5m,1h,1d,7d,30d,90d but the engine is configured with 5m,1h"
        ),
        "{}",
        e.log()
    );
    let e = start("windows", &["--windows", "5m,1h"]);
    let text = wait_processed(&[&e], n, Duration::from_secs(60)).remove(0);
    assert_same_series(&replay_with(&file, &["--windows", "5m,1h"]), &text);
    assert_eq!(
        metric(
            &text,
            "funnel_checkpoint_rebuilds_total{reason=\"incompatible\"}"
        ),
        1.0
    );
    drop(e);
    // The same forged checkpoint with the windows it was written with.
    let e = start("windows", &[]);
    let text = wait_processed(&[&e], n, Duration::from_secs(60)).remove(0);
    assert_same_series(&want, &text);
    assert_eq!(metric(&text, "funnel_checkpoint_restores_total"), 1.0);
    drop(e);

    // Missing: the group committed offsets without checkpoints.
    let mut e = Engine::start(&broker.addr(), "events", "missing", &["--clock", "event"]);
    wait_processed(&[&e], n, Duration::from_secs(60));
    assert!(e.sigterm().0.success());
    let mut e = start("missing", &["--checkpoint-policy", "refuse"]);
    assert_eq!(exit_code(&mut e, Duration::from_secs(60)), 1);
    assert!(
        e.log().contains("checkpoint of events/0 is missing"),
        "{}",
        e.log()
    );
    let e = start("missing", &[]);
    let text = wait_processed(&[&e], n, Duration::from_secs(60)).remove(0);
    assert_same_series(&want, &text);
    assert_eq!(
        metric(
            &text,
            "funnel_checkpoint_rebuilds_total{reason=\"missing\"}"
        ),
        1.0
    );
}

/// A broker so slow that the group session times out: librdkafka declares
/// the partitions lost; the engine stops publishing them, rejoins, takes
/// them back (reloading their checkpoints, or keeping state still at its
/// last checkpoint) and ends exactly at the replay.
#[test]
fn lost_partitions_after_a_session_timeout_are_taken_back_exactly() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("events", 2, 1).unwrap();
    cluster.create_topic("checkpoints", 1, 1).unwrap();
    let addr = cluster.bootstrap_servers();
    let file = event_file("lost", 4000, 500.0, 19);
    let n = lines(&file);
    let (first, second) = split(&file, n / 2);
    produce_file(&addr, "events", &first);
    let args = checkpoint_args("checkpoints", "300ms");
    let e = Engine::start(&addr, "events", "lost", &args);
    wait_processed(&[&e], n / 2, Duration::from_secs(120));
    cluster
        .broker_round_trip_time(1, Duration::from_secs(8))
        .unwrap();
    wait_log(&e, "partitions lost", Duration::from_secs(60));
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    produce_file(&addr, "events", &second);
    let texts = wait_processed(&[&e], n, Duration::from_secs(120));
    assert_same_series(&replay(&file), &texts[0]);
    let log = e.log();
    let after = &log[log.find("partitions lost").unwrap()..];
    assert!(
        after.contains("state restored from checkpoint") || after.contains("state kept"),
        "{log}"
    );
}

/// A real broker process is killed (SIGKILL) mid-stream and restarted on
/// its log directory: the engine keeps running, is not ready while the
/// broker is away, and ends exactly at the replay.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn broker_process_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    broker.create_topic("events", 2);
    broker.create_topic("checkpoints", 1);
    let file = event_file("restart", 4000, 500.0, 23);
    let n = lines(&file);
    let (first, second) = split(&file, n / 2);
    produce_all(&broker.addr(), "events", &first);
    let e = Engine::start(
        &broker.addr(),
        "events",
        "restart",
        &checkpoint_args("checkpoints", "300ms"),
    );
    wait_processed(&[&e], n / 2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    broker.kill(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !try_http_get(e.port, "/readyz", &[]).is_ok_and(|r| r.status == 503) {
        assert!(
            Instant::now() < deadline,
            "still ready with the broker gone:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(e.get("/healthz").0 == 200, "the engine keeps serving");
    broker.restart(1);
    produce_all(&broker.addr(), "events", &second);
    let texts = wait_processed(&[&e], n, Duration::from_secs(120));
    assert_same_series(&replay(&file), &texts[0]);
}

/// With creation turned off, a checkpoint topic that does not exist stops
/// the engine at its first assignment with exit 1 and a message saying
/// what to create.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn missing_checkpoint_topic_is_a_clear_error_when_creation_is_off() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    let mut args = checkpoint_args("no-such-checkpoints", "1s");
    args.extend(["--checkpoint-topic-create", "false"]);
    let mut e = Engine::start(&broker.addr(), "events", "no-topic", &args);
    assert_eq!(exit_code(&mut e, Duration::from_secs(90)), 1);
    assert!(
        e.log()
            .contains("checkpoint topic `no-such-checkpoints` does not exist"),
        "{}",
        e.log()
    );
    let (partitions, _) = broker.describe_topic("events");
    assert_eq!(partitions, 1);
    assert!(
        !broker.topic_exists("no-such-checkpoints"),
        "the engine created the topic with creation off"
    );
}

/// A missing checkpoint topic is created, as Kafka Streams creates its
/// changelog topics: compacted, sized for 512 KiB chunks, with as many
/// partitions as the largest source topic; checkpoints written to it are
/// restored exactly.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn missing_checkpoint_topic_is_created_compacted() {
    let broker = Broker::start();
    broker.create_topic("events", 3);
    // Three partitions, consumed in another interleaving than the file's:
    // a short span of event time keeps that from mattering (see the
    // rebalance test).
    let file = event_file("create", 3000, 10.0, 31);
    let n = lines(&file);
    produce_all(&broker.addr(), "events", &file);
    let args = checkpoint_args("made-checkpoints", "300ms");
    let mut e = Engine::start(&broker.addr(), "events", "create", &args);
    wait_processed(&[&e], n, Duration::from_secs(90));
    assert!(e.log().contains("checkpoint topic created"), "{}", e.log());
    assert!(e.sigterm().0.success());
    let (partitions, config) = broker.describe_topic("made-checkpoints");
    assert_eq!(partitions, 3);
    for (k, v) in [
        ("cleanup.policy", "compact"),
        ("max.message.bytes", "2097152"),
        ("segment.bytes", "67108864"),
        ("segment.ms", "86400000"),
    ] {
        assert_eq!(
            config.get(k).map(String::as_str),
            Some(v),
            "{k}: {config:?}"
        );
    }
    // A second run restores every partition from it.
    let e = Engine::start(&broker.addr(), "events", "create", &args);
    let text = wait_processed(&[&e], n, Duration::from_secs(90)).remove(0);
    assert_same_series(&replay(&file), &text);
    assert_eq!(metric(&text, "funnel_checkpoint_restores_total"), 3.0);
    assert!(!e.log().contains("checkpoint topic created"), "{}", e.log());
}

/// Broker failover: in a three-node cluster (replication factor 3,
/// min.insync.replicas 2) the leader of a consumed partition is SIGKILLed
/// mid-stream and restarted; an idempotent producer keeps writing. No
/// event is lost or counted twice.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn leader_failover_in_a_three_node_cluster_is_exact() {
    let mut kafka = Broker::cluster(3);
    kafka.create_topic("events", 2);
    kafka.create_topic_with("checkpoints", 1, &[("cleanup.policy", "compact")]);
    let (_, config) = kafka.describe_topic("events");
    assert_eq!(config["min.insync.replicas"], "2");
    let file = event_file("failover", 16_000, 200.0, 29);
    let n = lines(&file);
    let producer = Command::new(BIN)
        .args([
            "produce",
            "--brokers",
            &kafka.addr(),
            "--topic",
            "events",
            "--from",
        ])
        .arg(file.as_os_str())
        .args(["--rate", "1000"])
        .args(["--kafka-property", "enable.idempotence=true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let args = checkpoint_args("checkpoints", "300ms");
    let e = Engine::start(&kafka.addr(), "events", "failover", &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed(&e.scrape()) < (n / 4) as f64 {
        assert!(Instant::now() < deadline, "no progress:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = kafka.leader("events", 0);
    kafka.kill(leader);
    let t = Instant::now();
    // Another node takes the partition over while the producer goes on.
    while kafka.leader("events", 0) == leader {
        assert!(t.elapsed() < Duration::from_secs(30), "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("new leader of events/0 after {:?}", t.elapsed());
    // The engine goes on with the node still down (the killed node may
    // also have been the group coordinator: finding the new one takes a
    // few seconds more).
    let at_kill = processed(&e.scrape());
    let t = Instant::now();
    while processed(&e.scrape()) <= at_kill {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no progress with the leader down:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("progress again {:?} after the new leader", t.elapsed());
    kafka.restart(leader);
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = wait_processed(&[&e], n, Duration::from_secs(120)).remove(0);
    assert_same_series(&replay(&file), &text);
    let (low, high) = kafka.watermarks("events", 0);
    let (low1, high1) = kafka.watermarks("events", 1);
    assert_eq!(
        (high - low) + (high1 - low1),
        n as i64,
        "the log holds each event once"
    );
}

/// A rebuild starts from the earliest offset while the group's commit lies
/// ahead: no checkpoint taken during the rebuild may claim offsets its
/// state does not cover (each one's counters must add up to exactly its
/// next offset), or a crash after it would lose the events in between.
/// Checkpoints every 100 ms, so that several land mid-rebuild. Whether the
/// bug of `eb03de0` (the group's old commit raising the applied offset)
/// shows depends on a race: the engine's first checkpoint, at offset 0,
/// commits 0 and hides it when it comes before the engine reads the
/// group's commit. Reverted, it showed in about one round in three here
/// (4 of 13), so the test runs four rounds: it failed in 4 runs of 4.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn checkpoints_during_a_rebuild_claim_only_what_they_cover() {
    let (broker, _, n) = one_partition_of_events("rebuild", 60_000, 150.0, 23);
    let engine = funnelstream::engine::Engine::new(funnelstream::config::EngineConfig {
        clock: funnelstream::config::ClockMode::Event,
        ..Default::default()
    });
    for round in 0..4 {
        let group = format!("ahead-{round}");
        // The group commits every offset, without checkpoints.
        let mut e = Engine::start(&broker.addr(), "events", &group, &["--clock", "event"]);
        wait_processed(&[&e], n, Duration::from_secs(120));
        assert!(e.sigterm().0.success());
        // With checkpoints there are none to restore: rebuilt from 0.
        let args = checkpoint_args("checkpoints", "100ms");
        let mut e = Engine::start(&broker.addr(), "events", &group, &args);
        let text = wait_processed(&[&e], n, Duration::from_secs(120)).remove(0);
        assert_eq!(
            metric(
                &text,
                "funnel_checkpoint_rebuilds_total{reason=\"missing\"}"
            ),
            1.0
        );
        assert!(e.sigterm().0.success());
        let written = checkpoints(&broker.addr(), &group);
        let offsets: Vec<i64> = written.iter().map(|(m, _)| m.next_offset).collect();
        for (m, state) in &written {
            let (part, meta) = funnelstream::checkpoint::decode(state, &engine, false).unwrap();
            assert_eq!(meta.next_offset, m.next_offset);
            let s = &part.stats;
            let covered =
                s.ingested.iter().sum::<u64>() + s.rejected.iter().sum::<u64>() + s.duplicates;
            assert_eq!(
                covered as i64, m.next_offset,
                "round {round}: a checkpoint claims the offsets below {} but its state \
                 counts {covered} messages (checkpoints at {offsets:?})",
                m.next_offset,
            );
        }
        assert_eq!(offsets.last(), Some(&(n as i64)), "round {round}");
        eprintln!("round {round}: checkpoints at {offsets:?}");
    }
}
