//! Helpers shared by the end-to-end tests: a tansu broker process, a
//! `funnelstream run` process, HTTP scrapes, replay and comparison of
//! expositions. Each test crate uses the part it needs.
#![allow(dead_code)]

mod broker;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_funnelstream");

pub fn manifest(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[allow(unused_imports)]
pub use broker::{free_port, Broker};

/// A `funnelstream run` process, killed on drop if still running.
pub struct Engine {
    pub child: Child,
    pub port: u16,
    pub stderr: PathBuf,
}

impl Engine {
    pub fn start(broker: &str, topics: &str, group: &str, extra: &[&str]) -> Engine {
        let port = free_port();
        let stderr = std::env::temp_dir().join(format!("funnelstream-test-{port}.log"));
        let child = Command::new(BIN)
            .args([
                "run",
                "--brokers",
                broker,
                "--topics",
                topics,
                "--group",
                group,
            ])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Engine {
            child,
            port,
            stderr,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, &[])
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _, _)) = try_http_get(self.port, "/readyz", &[]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not ready after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn sigterm(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no exit 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn try_http_get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body, head))
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, body, _) = try_http_get(port, path, headers).expect("http get");
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn produce_file(broker: &str, topic: &str, file: &Path) {
    let out = Command::new(BIN)
        .args(["produce", "--brokers", broker, "--topic", topic, "--from"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn replay(file: &Path) -> String {
    let out: Output = Command::new(BIN)
        .args(["replay", "--clock", "event", "--from"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Family-name prefixes only the live path publishes (lag, delay
/// histogram, checkpoint, dead-letter and stream-client health): a replay
/// has none of them, so comparisons with a replay or a reference skip them.
pub const LIVE_ONLY: &[&str] = &[
    "funnel_consumer_lag_messages",
    "funnel_event_delay_seconds",
    "funnel_checkpoint",
    "funnel_dead_letter",
    "funnel_stream_clients",
    "funnel_partition_owned",
];

/// Series lines keyed by `name{labels}`, without the live-only families.
pub fn series(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| {
            !l.starts_with("funnel_build_info") && !LIVE_ONLY.iter().any(|p| l.starts_with(p))
        })
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn assert_same_series(want: &str, got: &str) {
    if let Ok(dir) = std::env::var("FUNNELSTREAM_TEST_DUMP") {
        let _ = std::fs::write(Path::new(&dir).join("want.prom"), want);
        let _ = std::fs::write(Path::new(&dir).join("got.prom"), got);
    }
    let (w, g) = (series(want), series(got));
    let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).take(10).collect();
    let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).take(10).collect();
    let differ: Vec<_> = w
        .iter()
        .filter(|(k, v)| g.get(*k).is_some_and(|gv| gv != *v))
        .take(10)
        .map(|(k, v)| format!("{k}: want {v}, got {}", g[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "live scrape differs from replay\nmissing: {missing:?}\nextra: {extra:?}\ndiffer: {differ:#?}"
    );
}

pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) must be installed; .ci/run installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn committed(broker: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

pub fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// Messages the engine processed: applied, duplicate or rejected.
pub fn processed(text: &str) -> f64 {
    metric(text, "funnel_events_ingested_total")
        + metric(text, "funnel_events_rejected_total")
        + metric(text, "funnel_events_duplicate_total")
}

/// Series the engine publishes that the reference does not model.
pub const ALLOWED_EXTRA: &[&str] = &["funnel_build_info", "funnel_series", "funnel_series_budget"];

/// Engine-health series: everything else is a business series, counted by
/// `funnel_series`. (`funnel_events_*` is matched as a prefix.)
pub const NON_BUSINESS: &[&str] = &[
    "funnel_label_overflow_total",
    "funnel_fields_ignored_total",
    "funnel_dedup_evicted_total",
    "funnel_deals_untracked_total",
    "funnel_series",
    "funnel_series_budget",
    "funnel_build_info",
];

/// Windowed KPIs of METRICS.md v1, computed in floating point at render
/// time.
pub const V1_WINDOWED_KPIS: &[&str] = &[
    "funnel_ctr_ratio",
    "funnel_cpc",
    "funnel_cpm",
    "funnel_cpl",
    "funnel_cost_per_mql",
    "funnel_click_to_lead_ratio",
    "funnel_lead_to_mql_ratio",
    "funnel_mql_to_sql_ratio",
    "funnel_sql_to_opportunity_ratio",
    "funnel_win_ratio",
    "funnel_lead_to_customer_ratio",
    "funnel_avg_deal_size",
    "funnel_cac",
    "funnel_roas_ratio",
    "funnel_roi_ratio",
    "funnel_sales_cycle_mean_seconds",
    "funnel_sales_cycle_p50_seconds",
    "funnel_sales_cycle_p90_seconds",
    "funnel_pipeline_velocity",
    "funnel_nrr_ratio",
    "funnel_gross_mrr_churn_ratio",
    "funnel_customer_churn_ratio",
];

/// KPIs new in METRICS.md v2 computed in floating point at render time.
pub const V2_FLOAT_KPIS: &[&str] = &[
    "funnel_mer_ratio",
    "funnel_sql_to_won_ratio",
    "funnel_mrr_growth_ratio",
    "funnel_net_mrr_churn_ratio",
    "funnel_quick_ratio",
    "funnel_ltv",
    "funnel_ltv_to_cac_ratio",
    "funnel_cac_payback_months",
    "funnel_marketing_originated_ratio",
    "funnel_marketing_influenced_ratio",
    "funnel_bounce_ratio",
    "funnel_engagement_ratio",
    "funnel_session_to_lead_ratio",
    "funnel_session_conversion_ratio",
    "funnel_cpa",
    "funnel_email_delivery_ratio",
    "funnel_email_bounce_ratio",
    "funnel_email_open_ratio",
    "funnel_email_click_ratio",
    "funnel_email_unsubscribe_ratio",
    "funnel_email_click_to_open_ratio",
    "funnel_nps_score",
    "funnel_csat_ratio",
    "funnel_arpa",
];

/// Whether a family is a KPI computed in floating point (METRICS.md); every
/// other series of a replay is an integer count or exact money.
pub fn is_float_kpi(name: &str) -> bool {
    V1_WINDOWED_KPIS.contains(&name) || V2_FLOAT_KPIS.contains(&name)
}
