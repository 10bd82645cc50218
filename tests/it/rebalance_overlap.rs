//! Scrape overlap during rebalances, measured with a real Prometheus
//! scraping two `funnelstream run` instances of one group on real Kafka
//! while the second one joins and leaves again and again. Scrapes are 5 s
//! apart, so that a rebalance (a few seconds here) often completes between
//! two scrapes of the old owner: the case where a plain sum double counts.
//! (With 1 s scrapes on a loaded 2-core machine every rebalance outlasted
//! a scrape interval: 691 instants, 0 double counted, 180 short.)
//!
//! Every event is applied before the first rebalance and checkpoints hand
//! each partition's state to its next owner, so at every instant the true
//! sum over instances of `funnel_events_ingested_total` is the number of
//! events written. Evaluated every 100 ms over the run, a plain `sum` over
//! the instances counts moved partitions twice or not at all (printed: the
//! measurement), and the sum joined on `funnel_partition_owned` through
//! `deploy/prometheus/rebalance-rules.yml` never exceeds the truth, both
//! as an ad hoc query and as the recorded series.
//!
//! Needs Apache Kafka (`scripts/kafka`) and `prometheus` (Debian package).

use crate::support::*;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EVENTS: usize = 4_000;
const RULES: &str = "deploy/prometheus/rebalance-rules.yml";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `EVENTS` valid spend events over 40 campaigns (so every partition of a
/// campaign-keyed topic holds some), unique ids, recent timestamps.
fn events(dir: &std::path::Path) -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut text = String::new();
    for i in 0..EVENTS {
        text.push_str(&format!(
            "{{\"id\":\"ov-{i}\",\"type\":\"spend\",\"ts\":{},\"channel\":\"paid_search\",\"campaign\":\"c{}\",\"amount\":1}}\n",
            now - 60_000 + i as i64,
            i % 40
        ));
    }
    let f = dir.join("events.ndjson");
    std::fs::write(&f, text).unwrap();
    f
}

fn engine(broker: &str, port: u16, log: PathBuf) -> Kill {
    Kill(
        Command::new(BIN)
            .args([
                "run",
                "--brokers",
                broker,
                "--topics",
                "ov",
                "--group",
                "ov",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--log-format", "json", "--clock", "event"])
            .args(["--checkpoint-topic", "ov-checkpoints"])
            .args(["--checkpoint-interval", "1s"])
            .args(["--kafka-property", "session.timeout.ms=6000"])
            .args(["--kafka-property", "heartbeat.interval.ms=500"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn ready(port: u16) -> bool {
    try_http_get(port, "/readyz", &[]).is_ok_and(|r| r.status == 200)
}

fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn api(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path, &[]);
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("HTTP {code}, not JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "{path}: {body}");
    v["data"]["result"].clone()
}

/// Values of a one-series range query every `step` seconds over
/// [start, end] (Unix seconds); instants without a value are `None`.
fn range(prom: u16, expr: &str, start: f64, end: f64, step: f64) -> Vec<(f64, Option<f64>)> {
    let r = api(
        prom,
        &format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            urlencode(expr)
        ),
    );
    let series = r.as_array().unwrap();
    assert!(series.len() <= 1, "{expr}: several series: {r}");
    let mut got: std::collections::BTreeMap<i64, f64> = Default::default();
    if let Some(s) = series.first() {
        for p in s["values"].as_array().unwrap() {
            let t = p[0].as_f64().unwrap();
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            got.insert((t * 1000.0).round() as i64, v);
        }
    }
    let mut out = Vec::new();
    let mut t = start;
    while t <= end + 1e-9 {
        out.push((t, got.get(&((t * 1000.0).round() as i64)).copied()));
        t += step;
    }
    out
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The expression of `funnel:instance_exclusive` in the rules file (its
/// `expr: |` block).
fn exclusive_expr() -> String {
    let text = std::fs::read_to_string(manifest(RULES)).unwrap();
    let rest = text
        .split("- record: funnel:instance_exclusive")
        .nth(1)
        .expect("funnel:instance_exclusive in the rules file");
    let block = rest.split_once("expr: |\n").expect("expr: |").1;
    block
        .lines()
        .take_while(|l| l.starts_with("          "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "needs Apache Kafka and prometheus: run scripts/test"]
fn sums_joined_on_partition_ownership_never_double_count_during_rebalances() {
    let _one_at_a_time = crate::support::serial();
    let dir = Scratch::new("overlap");
    let broker = Broker::start();
    broker.create_topic("ov", 4);
    produce_file(&broker.addr(), "ov", &events(&dir));

    let (pa, pb) = (free_port(), free_port());
    let _a = engine(&broker.addr(), pa, dir.join("a.log"));
    wait("instance A ready", Duration::from_secs(60), || ready(pa));
    wait(
        "instance A applied every event",
        Duration::from_secs(60),
        || {
            try_http_get(pa, "/metrics", &[])
                .map(|r| processed(&r.text()) as usize == EVENTS)
                .unwrap_or(false)
        },
    );

    let prom = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: funnelstream\n    scrape_interval: 5s\n    scrape_timeout: 4s\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{pa}\", \"127.0.0.1:{pb}\"]\n",
            rules = manifest(RULES),
        ),
    )
    .unwrap();
    let _prometheus = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package `prometheus`)"),
    );
    wait("Prometheus ready", Duration::from_secs(60), || {
        try_http_get(prom, "/-/ready", &[]).is_ok_and(|r| r.status == 200)
    });
    wait("a scrape of A", Duration::from_secs(30), || {
        api(prom, "/api/v1/query?query=funnel_partition_owned")
            .as_array()
            .is_some_and(|a| a.len() == 4)
    });
    let start = unix_now().ceil();

    // B joins (partitions move A -> B), then leaves (B -> A), six times.
    for cycle in 0..6 {
        let mut b = engine(&broker.addr(), pb, dir.join(format!("b{cycle}.log")));
        wait("instance B ready", Duration::from_secs(60), || ready(pb));
        std::thread::sleep(Duration::from_millis(7_000 + 700 * cycle));
        // SIGTERM: B checkpoints, commits and leaves; A takes its
        // partitions back from the checkpoints.
        let _ = Command::new("kill")
            .args(["-TERM", &b.0.id().to_string()])
            .status();
        let _ = b.0.wait();
        wait("A ready again", Duration::from_secs(60), || {
            ready(pa)
                && try_http_get(pa, "/metrics", &[])
                    .map(|r| processed(&r.text()) as usize == EVENTS)
                    .unwrap_or(false)
        });
        std::thread::sleep(Duration::from_millis(7_000 + 700 * cycle));
    }
    // Let the last scrapes and rule evaluations land.
    std::thread::sleep(Duration::from_secs(11));
    let end = unix_now().floor() - 6.0;

    let metric = "funnel_events_ingested_total{type=\"spend\"}";
    let naive = range(prom, &format!("sum({metric})"), start, end, 0.1);
    let joined_expr = format!(
        "sum({metric} and on (job, instance) ({}))",
        exclusive_expr()
    );
    let joined = range(prom, &joined_expr, start, end, 0.1);
    let recorded = range(
        prom,
        "sum(funnel:events_ingested:sum_exclusive{type=\"spend\"})",
        start,
        end,
        0.1,
    );
    let want = EVENTS as f64;
    let count = |v: &[(f64, Option<f64>)], f: &dyn Fn(f64) -> bool| {
        v.iter().filter(|(_, x)| x.is_some_and(f)).count()
    };
    let (over, under, exact) = (
        count(&naive, &|x| x > want),
        count(&naive, &|x| x < want) + naive.iter().filter(|(_, x)| x.is_none()).count(),
        count(&naive, &|x| x == want),
    );
    let (j_over, j_under, j_exact) = (
        count(&joined, &|x| x > want),
        count(&joined, &|x| x < want) + joined.iter().filter(|(_, x)| x.is_none()).count(),
        count(&joined, &|x| x == want),
    );
    let r_over = count(&recorded, &|x| x > want);
    println!(
        "{} instants (100 ms apart, {:.0} s, 12 rebalances): plain sum over instances: \
         {over} double counted, {under} short, {exact} exact; joined on funnel_partition_owned: \
         {j_over} over, {j_under} short, {j_exact} exact; recorded rule: {r_over} over",
        naive.len(),
        end - start,
    );
    let max = naive.iter().filter_map(|(_, x)| *x).fold(0.0, f64::max);
    println!("largest plain sum {max} (true {want})");
    assert!(
        over > 0,
        "the plain sum never double counted: the run did not exercise the overlap"
    );
    assert_eq!(
        j_over,
        0,
        "the joined sum exceeded {want}: {:?}",
        joined
            .iter()
            .filter(|(_, x)| x.is_some_and(|x| x > want))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(r_over, 0, "the recorded joined sum exceeded {want}");
    assert!(
        j_exact * 2 > joined.len(),
        "the joined sum was exact at only {j_exact} of {} instants",
        joined.len()
    );
}
