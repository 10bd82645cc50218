//! End-to-end tests of the live path against a real broker process
//! (Apache Kafka, `scripts/kafka`; `scripts/test` fetches it) and the real
//! `funnelstream` binary: produce, run, wait for /readyz, scrape, compare
//! with `replay`; shutdown on SIGTERM; configuration errors; a broker that is
//! down at start.
//!
//! Each test starts its own broker on a free port and stops it on drop.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
#[ignore = "needs Kafka (Java, Maven) and promtool: run scripts/test"]
fn golden_file_through_a_real_broker_equals_replay() {
    let broker = Broker::start();
    broker.create_topic("golden", 1);
    let file = manifest("tests/golden/events.ndjson");
    produce_file(&broker.addr(), "golden", &file);
    let engine = Engine::start(
        &broker.addr(),
        "golden",
        "golden-test",
        &["--clock", "event"],
    );
    engine.wait_ready(Duration::from_secs(60));
    let (status, live) = engine.get("/metrics");
    assert_eq!(status, 200);
    assert_same_series(&replay(&file), &live);
    promtool_check(&live);
    assert!(
        live.contains("funnel_consumer_lag_messages{topic=\"golden\",partition=\"0\"}") || {
            // The lag gauge appears with the first statistics report (1 s).
            std::thread::sleep(Duration::from_millis(2500));
            engine
                .get("/metrics")
                .1
                .contains("funnel_consumer_lag_messages{topic=\"golden\",partition=\"0\"} 0")
        }
    );

    // OpenMetrics when asked, gzip when allowed, and the other endpoints.
    let (status, om) = http_get(
        engine.port,
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE funnel_events_ingested counter"));
    assert!(om.contains("# TYPE funnel_impressions_total unknown"));
    let gz = try_http_get(engine.port, "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_same_series(&live, &text);
    assert_eq!(engine.get("/healthz"), (200, "ok\n".into()));
    let (status, page) = engine.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("Win rate") && page.contains("/metrics"));
}

/// On Kafka, with the producer batching normally: the second engine
/// resumes from the committed offset, inside a record batch.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn sigterm_exits_zero_and_commits_exactly_what_was_applied() {
    let broker = Broker::start();
    broker.create_topic("load", 2);
    let addr = broker.addr();
    // Events keep arriving while the first engine runs, so it is stopped
    // mid-stream whatever the machine's speed.
    let mut producer = Command::new(BIN)
        .args([
            "produce",
            "--brokers",
            &addr,
            "--topic",
            "load",
            "--count",
            "20000",
            // 10 s of production: a loaded machine's group join (seconds)
            // must not let it finish before the engine is stopped.
            "--rate",
            "2000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // A short session: should a member ever leave without LeaveGroup, its
    // successor is not kept waiting the default 45 s.
    let fast_group = [
        "--kafka-property",
        "session.timeout.ms=6000",
        "--kafka-property",
        "heartbeat.interval.ms=1000",
    ];
    let mut first = Engine::start(&addr, "load", "sigterm-test", &fast_group);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if processed(&first.scrape()) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing consumed: {}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, took) = first.sigterm();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        first.log()
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(producer.wait().unwrap().success(), "producer failed");

    let available: i64 = 20_000;
    let low_high = [(0i64, 0i64); 2];

    // The offsets it logged as committed are what Kafka holds for the group.
    let log = first.log();
    let mut logged = vec![-1i64; 2];
    let mut first_messages = 0;
    for line in log.lines().filter(|l| l.contains("\"committed\"")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = v["fields"]["partition"].as_i64().unwrap() as usize;
        logged[p] = v["fields"]["next_offset"].as_i64().unwrap();
        first_messages += v["fields"]["messages"].as_i64().unwrap();
    }
    assert!(
        first_messages > 0 && first_messages < available,
        "stopped mid-stream: {first_messages}"
    );
    let in_kafka = committed(&addr, "sigterm-test", "load", 2);
    for p in 0..2 {
        if logged[p] > 0 {
            assert_eq!(
                in_kafka[p], logged[p],
                "partition {p}: committed vs applied; log:\n{log}"
            );
        }
    }
    // Offsets are contiguous on this broker: what was committed is what
    // was applied.
    let done: i64 = in_kafka
        .iter()
        .zip(&low_high)
        .map(|(&o, (low, _))| if o >= 0 { o - low } else { 0 })
        .sum();
    assert_eq!(
        done, first_messages,
        "committed {in_kafka:?}, logged {logged:?}, watermarks {low_high:?}"
    );

    // A second engine in the same group processes exactly the rest.
    let second = Engine::start(&addr, "load", "sigterm-test", &fast_group);
    second.wait_ready(Duration::from_secs(90));
    let rest = processed(&second.get("/metrics").1);
    assert_eq!(
        first_messages as f64 + rest,
        available as f64,
        "first applied {first_messages} (committed offsets sum {done}), second processed {rest}; second log:\n{}",
        second.log()
    );
}

#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn broker_down_at_start_is_not_ready_then_recovers() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let engine = Engine::start(
        &addr,
        "late-topic",
        "down-test",
        &[
            "--kafka-property",
            "topic.metadata.refresh.interval.ms=1000",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(engine.get("/healthz").0, 200, "log:\n{}", engine.log());
    let (status, body) = engine.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready"), "{body}");

    // The broker comes up with the topic and a file of events.
    let broker = Broker::start_on(port);
    broker.create_topic("late-topic", 1);
    let file = manifest("tests/golden/events.ndjson");
    produce_file(&addr, "late-topic", &file);
    engine.wait_ready(Duration::from_secs(90));
    let live = engine.get("/metrics").1;
    assert_eq!(
        processed(&live),
        golden_messages(),
        "log:\n{}",
        engine.log()
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--windows", "5x"], "windows"),
        (vec!["run", "--clock", "sideways"], "clock"),
        (vec!["run", "--listen", "nowhere"], "listen"),
        (vec!["run", "--kafka-property", "group.id=x"], "group.id"),
        (
            vec!["run", "--kafka-property", "no.such.property=1"],
            "no.such.property",
        ),
        (vec!["run", "--dead-letter-topic", ""], "dead_letter_topic"),
        (
            vec!["run", "--topics", "a,b", "--dead-letter-topic", "b"],
            "dead_letter_topic",
        ),
        (
            vec!["run", "--topics", "a", "--checkpoint-topic", "a"],
            "checkpoint_topic",
        ),
        (
            vec!["run", "--checkpoint-topic", "c", "--dead-letter-topic", "c"],
            "checkpoint_topic",
        ),
        (
            vec![
                "run",
                "--checkpoint-topic",
                "c",
                "--checkpoint-topic-create",
                "maybe",
            ],
            "checkpoint_topic_create",
        ),
        (
            vec!["run", "--checkpoint-topic-create", "false"],
            "checkpoint_topic_create",
        ),
        (
            vec![
                "run",
                "--checkpoint-topic",
                "c",
                "--checkpoint-interval",
                "soon",
            ],
            "checkpoint_interval",
        ),
        (
            vec![
                "run",
                "--checkpoint-topic",
                "c",
                "--checkpoint-interval",
                "10ms",
            ],
            "checkpoint_interval",
        ),
        (
            vec![
                "run",
                "--checkpoint-topic",
                "c",
                "--checkpoint-policy",
                "ignore",
            ],
            "checkpoint_policy",
        ),
        (
            vec!["run", "--checkpoint-policy", "refuse"],
            "checkpoint_policy",
        ),
        (
            vec!["check-config", "--max-campaigns", "lots"],
            "max_campaigns",
        ),
    ];
    for (args, key) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(key),
            "{args:?}: message should name `{key}`: {err}"
        );
    }
    // An unknown key in the TOML file.
    let dir = Scratch::new("cfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "brokers = \"127.0.0.1:9092\"\nwindwos = \"5m\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("windwos"), "{err}");
}

#[test]
fn check_config_prints_effective_settings_without_secrets() {
    let dir = Scratch::new("cfg2");
    let cfg = dir.join("ok.toml");
    std::fs::write(
        &cfg,
        "brokers = \"kafka-1:9092,kafka-2:9092\"\ntopics = [\"ads\", \"crm\"]\nwindows = \"1h,7d\"\n\n[kafka]\n\"sasl.username\" = \"funnel\"\n\"sasl.password\" = \"hunter2\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .args(["--group", "from-flag"])
        .env("FUNNELSTREAM_GROUP", "from-env")
        .env("FUNNELSTREAM_CLOCK", "event")
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(
        text.contains("brokers = \"kafka-1:9092,kafka-2:9092\""),
        "{text}"
    );
    assert!(text.contains("topics = [\"ads\", \"crm\"]"), "{text}");
    assert!(
        text.contains("group = \"from-flag\""),
        "flag beats env: {text}"
    );
    assert!(
        text.contains("clock = \"event\""),
        "env beats default: {text}"
    );
    assert!(text.contains("windows = \"1h,7d\""), "{text}");
    assert!(text.contains("\"sasl.password\" = \"***\""), "{text}");
    assert!(!text.contains("hunter2"), "secret leaked: {text}");
}

/// Several partitions and two topics on librdkafka's mock cluster: events
/// of a realistic stream (with duplicates and malformed events), split by
/// campaign over a 3-partition and a 2-partition topic, give exactly what
/// `replay` gives for the whole file.
#[test]
fn two_topics_many_partitions_on_the_mock_cluster_equal_replay() {
    use funnelstream::synth::{Synth, SynthConfig};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("ads", 3, 1).unwrap();
    cluster.create_topic("crm", 2, 1).unwrap();
    let addr = cluster.bootstrap_servers();
    let dir = Scratch::new("two-topics");
    let mut g = Synth::new(SynthConfig {
        keys: 30,
        step_ms: 50.0,
        duplicate_ratio: 0.01,
        invalid_ratio: 0.005,
        ..SynthConfig::default()
    });
    let (mut all, mut ads, mut crm) = (String::new(), String::new(), String::new());
    for _ in 0..8000 {
        let line = g.next_line();
        let key = funnelstream::source::producer::campaign_key(line.as_bytes());
        let to = if key.bytes().map(u32::from).sum::<u32>() % 2 == 0 {
            &mut ads
        } else {
            &mut crm
        };
        to.push_str(&line);
        to.push('\n');
        all.push_str(&line);
        all.push('\n');
    }
    for (name, text) in [("all", &all), ("ads", &ads), ("crm", &crm)] {
        std::fs::write(dir.join(format!("{name}.ndjson")), text).unwrap();
    }
    produce_file(&addr, "ads", &dir.join("ads.ndjson"));
    produce_file(&addr, "crm", &dir.join("crm.ndjson"));
    let engine = Engine::start(
        &addr,
        "ads,crm",
        "two-topics",
        &["--clock", "event", "--workers", "2"],
    );
    engine.wait_ready(Duration::from_secs(90));
    let live = engine.get("/metrics").1;
    assert_same_series(&replay(&dir.join("all.ndjson")), &live);
    assert!(metric(&live, "funnel_events_duplicate_total") > 0.0);
    assert!(metric(&live, "funnel_events_rejected_total") > 0.0);
    let lags = live
        .lines()
        .filter(|l| l.starts_with("funnel_consumer_lag_messages{"))
        .count();
    assert!(
        lags == 5 || lags == 0,
        "one lag series per partition: {lags}"
    );
}

/// Rejected events are copied unchanged to the dead-letter topic, with the
/// reason and their source in headers, and the partition keeps flowing.
#[test]
#[ignore = "needs Kafka (Java, Maven): run scripts/test"]
fn rejected_events_are_dead_lettered_unchanged() {
    use funnelstream::decode::{decode, DecodeConfig};
    use rdkafka::message::{Headers, Message};
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("dlq", 1);
    let file = manifest("tests/golden/events.ndjson");
    produce_file(&broker.addr(), "events", &file);
    let engine = Engine::start(
        &broker.addr(),
        "events",
        "dlq-test",
        &["--clock", "event", "--dead-letter-topic", "dlq"],
    );
    engine.wait_ready(Duration::from_secs(60));

    // What should be there: every line the decoder rejects, with its reason.
    let raw = std::fs::read(&file).unwrap();
    let mut want: Vec<(Vec<u8>, String)> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| {
            decode(l, &DecodeConfig::default(), funnelstream::wall_clock_ms())
                .err()
                .map(|r| (l.to_vec(), r.as_str().to_string()))
        })
        .collect();
    want.sort();
    assert!(want.len() >= 10, "the golden file has rejected lines");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = engine.get("/metrics").1;
        if metric(&m, "funnel_dead_letter_total") as usize == want.len() {
            assert_eq!(metric(&m, "funnel_dead_letter_pending"), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-letter writes not acknowledged:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    c.subscribe(&["dlq"]).unwrap();
    let mut got: Vec<(Vec<u8>, String)> = Vec::new();
    let mut offsets = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let h = m.headers().expect("dead-lettered messages carry headers");
            let header = |name: &str| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            assert_eq!(header("funnelstream.source.topic"), "events");
            assert_eq!(header("funnelstream.source.partition"), "0");
            offsets.insert(header("funnelstream.source.offset").parse::<i64>().unwrap());
            got.push((
                m.payload().unwrap_or_default().to_vec(),
                header("funnelstream.reason"),
            ));
        }
    }
    got.sort();
    assert_eq!(got, want, "dead-letter topic content");
    assert_eq!(offsets.len(), want.len(), "one copy per source offset");
    // The partition kept flowing: every valid event was applied too.
    let m = engine.get("/metrics").1;
    assert_eq!(processed(&m), golden_messages());
}

/// A failing dead-letter write is retried, counted and visible, and does
/// not stall the partition; once it succeeds everything is committed.
#[test]
fn dead_letter_write_failures_are_retried_and_counted() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("ev", 1, 1).unwrap();
    cluster.create_topic("dlq", 1, 1).unwrap();
    let addr = cluster.bootstrap_servers();
    let file = manifest("tests/golden/events.ndjson");
    produce_file(&addr, "ev", &file);
    // From now on the next Produce requests fail, without retry by librdkafka.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
    let engine = Engine::start(
        &addr,
        "ev",
        "dlq-fail",
        &["--clock", "event", "--dead-letter-topic", "dlq"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = engine.scrape();
        let rejected = metric(&m, "funnel_events_rejected_total");
        if rejected > 0.0
            && metric(&m, "funnel_dead_letter_total") == rejected
            && metric(&m, "funnel_dead_letter_pending") == 0.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters not delivered:\n{m}\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metric(&m, "funnel_dead_letter_failures_total") > 0.0,
        "the injected failures are counted:\n{m}"
    );
    assert_eq!(
        processed(&m),
        golden_messages(),
        "the partition kept flowing"
    );
    // Everything applied and dead-lettered is committed, up to the end.
    let deadline = Instant::now() + Duration::from_secs(15);
    while (committed(&addr, "dlq-fail", "ev", 1)[0] as f64) < golden_messages() {
        assert!(Instant::now() < deadline, "commit did not reach the end");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Messages `produce --from` writes for the golden file: one per line that
/// is not blank.
fn golden_messages() -> f64 {
    std::fs::read(manifest("tests/golden/events.ndjson"))
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count() as f64
}
