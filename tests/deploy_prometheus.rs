//! Tests of the monitoring assets in `deploy/`: the Prometheus recording and
//! alert rules, their `promtool` unit tests, `render-alerts.py`, the Grafana
//! dashboard, and an end-to-end run of all of them against `funnelstream
//! demo` scraped by a real Prometheus.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`, which CI
//! installs) and `python3`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_funnelstream");

const RECORDING_RULES: &str = "deploy/prometheus/recording-rules.yml";
const ALERT_RULES: &str = "deploy/prometheus/alert-rules.yml";
const RENDER: &str = "deploy/prometheus/render-alerts.py";
const PROM_README: &str = "deploy/prometheus/README.md";
const DASHBOARD: &str = "deploy/grafana/funnelstream.json";

/// Windowed metrics: the 19 counts and the KPIs (METRICS.md).
const WINDOWED: &[&str] = &[
    "funnel_impressions",
    "funnel_clicks",
    "funnel_leads",
    "funnel_mqls",
    "funnel_sqls",
    "funnel_opportunities",
    "funnel_deals_won",
    "funnel_deals_lost",
    "funnel_revenue_won",
    "funnel_ad_spend",
    "funnel_spend",
    "funnel_mrr_new",
    "funnel_mrr_expansion",
    "funnel_mrr_reactivation",
    "funnel_mrr_contraction",
    "funnel_mrr_churned",
    "funnel_customers_new",
    "funnel_customers_churned",
    "funnel_customers_reactivated",
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

/// KPIs the dashboard may read directly. Every other KPI is a ratio that must
/// be rebuilt as sum/sum from the counts; the mean sales cycle is only usable
/// weighted by deals won, and the quantiles only per campaign.
const KPIS_ALLOWED_IN_DASHBOARD: &[&str] = &[
    "funnel_sales_cycle_mean_seconds",
    "funnel_sales_cycle_p50_seconds",
    "funnel_sales_cycle_p90_seconds",
];

/// Engine-health metrics: no channel/campaign labels.
const HEALTH: &[&str] = &[
    "funnel_events_ingested_total",
    "funnel_events_rejected_total",
    "funnel_events_duplicate_total",
    "funnel_events_late_total",
    "funnel_label_overflow_total",
    "funnel_dedup_evicted_total",
    "funnel_deals_untracked_total",
    "funnel_consumer_lag_messages",
    "funnel_event_delay_seconds_bucket",
    "funnel_series",
    "funnel_build_info",
];

/// Alert expressions that are false on healthy demo data whatever the
/// thresholds: the end-to-end test only checks that they are valid queries.
const ALERTS_QUIET_ON_DEMO: &[&str] = &["FunnelIngestionStalled"];

/// Thresholds for the end-to-end test: every alert whose condition depends on
/// a threshold becomes true on healthy demo data, and fires at once.
const PERMISSIVE: &[&str] = &[
    "cac_max=0.01",
    "cac_min_deals_won=0",
    "cac_for=0s",
    "customer_churn_ratio_max=-1",
    "customer_churn_for=0s",
    "gross_mrr_churn_ratio_max=-1",
    "gross_mrr_churn_for=0s",
    "ctr_drop_ratio=2",
    "ctr_min_impressions=0",
    "ctr_for=0s",
    "lag_min=-1",
    "lag_growth_min=-1000000000",
    "lag_growing_for=0s",
    "rejected_ratio_max=-1",
    "rejected_for=0s",
    "ingestion_stalled_for=0s",
];

fn manifest(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(manifest(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

/// Runs a tool, turning "not installed" into a message that says what to install.
fn run_tool(cmd: &mut Command, tool: &str, install: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{tool}` is not on PATH: {install}")
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

const PROMETHEUS_PKG: &str = "install Debian's `prometheus` package \
    (`apt-get install prometheus`), which provides `prometheus` and `promtool`; CI installs it";

fn promtool(args: &[&str]) -> Output {
    run_tool(
        Command::new("promtool")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        "promtool",
        PROMETHEUS_PKG,
    )
}

fn python(args: &[&str]) -> Output {
    run_tool(
        Command::new("python3")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        "python3",
        "install Python 3 (`apt-get install python3`)",
    )
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ------------------------------------------------------------ rule parsing

/// `record:` names of a rule file, in order.
fn recording_rule_names(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// (alert name, expr) of a rule file, in order. Understands the two forms the
/// file uses: `expr: <one line>` and `expr: |` followed by a block indented
/// deeper than the `expr:` key.
fn alert_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(n) = trimmed.strip_prefix("- alert:") {
            name = Some(n.trim().to_string());
        } else if let Some(rest) = trimmed.strip_prefix("expr:") {
            let indent = line.len() - trimmed.len();
            let rest = rest.trim();
            let expr = if rest == "|" || rest == "|-" {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim_end());
                    i += 1;
                }
                block.join("\n").trim().to_string()
            } else {
                rest.to_string()
            };
            if let Some(n) = name.take() {
                out.push((n, expr));
            }
        }
        i += 1;
    }
    out
}

// --------------------------------------------------------------- dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("deploy/grafana/funnelstream.json is not JSON")
}

/// Every panel, rows' nested panels included (collapsed rows keep theirs).
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(ps: &'a Value, out: &mut Vec<&'a Value>) {
        for p in ps.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// (panel title, refId, expr) of every panel target.
fn dashboard_targets(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_string(),
                    t["refId"].as_str().unwrap_or("?").to_string(),
                    expr.to_string(),
                ));
            }
        }
    }
    out
}

/// The dashboard's variables replaced the way the end-to-end test queries them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$channel", ".*")
        .replace("$campaign", ".*")
        .replace("$window", "1d")
}

/// (metric name, selector text or None) of every `funnel_*` metric an
/// expression reads. Recording-rule names (`level:funnel_x:op`) are skipped.
fn funnel_selectors(expr: &str) -> Vec<(String, Option<String>)> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = expr[i..].find("funnel_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        i = end;
        if start > 0 && ident(b[start - 1]) {
            continue;
        }
        let name = &expr[start..end];
        if name.contains(':') {
            continue;
        }
        let mut j = end;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let selector = if j < b.len() && b[j] == b'{' {
            let close = expr[j..].find('}').map(|k| j + k).unwrap_or(b.len() - 1);
            i = close + 1;
            Some(expr[j + 1..close].to_string())
        } else {
            None
        };
        out.push((name.to_string(), selector));
    }
    out
}

// -------------------------------------------------------------- processes

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) on drop.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf, install: &str) -> Proc {
        let file = std::fs::File::create(&log).expect("create log file");
        let err = file.try_clone().expect("clone log file");
        let child = match cmd.stdin(Stdio::null()).stdout(file).stderr(err).spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("`{name}` is not on PATH: {install}")
            }
            Err(e) => panic!("cannot start {name}: {e}"),
        };
        Proc { child, name, log }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- last lines of {} ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p =
            std::env::temp_dir().join(format!("funnelstream-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------- HTTP

/// GET over HTTP/1.0 (no chunked bodies from a conforming server; decoded
/// anyway if one sends them). Returns (status, body).
fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    s.set_write_timeout(Some(Duration::from_secs(15))).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// An instant query: Ok(result array) on status success, Err(message) otherwise.
fn prom_query(addr: &str, expr: &str) -> Result<Vec<Value>, String> {
    let (code, body) = http_get(addr, &format!("/api/v1/query?query={}", urlencode(expr)))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {code}, not JSON ({e}): {body}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "HTTP {code}: {} {}",
            v["errorType"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or(&body)
        ));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    procs: &mut [&mut Proc],
) {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return;
        }
        for p in procs.iter_mut() {
            p.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs.iter().map(|p| p.log_tail()).collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ================================================================== tests

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn promtool_check_rules_accepts_both_rule_files() {
    let out = promtool(&["check", "rules", RECORDING_RULES, ALERT_RULES]);
    assert!(
        out.status.success(),
        "`promtool check rules` rejected the rule files:\n{}",
        show(&out)
    );
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(
        out.status.success(),
        "`promtool check config` rejected deploy/prometheus/prometheus.yml:\n{}",
        show(&out)
    );
}

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn promtool_unit_tests_pass() {
    let dir = manifest("deploy/prometheus/tests");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus/tests")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            p.strip_prefix(manifest(""))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected rule test files in {dir:?}, found {files:?}"
    );
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(
        out.status.success(),
        "`promtool test rules {}` failed:\n{}",
        files.join(" "),
        show(&out)
    );
}

#[test]
fn promtool_unit_tests_cover_every_rule() {
    let tests = read("deploy/prometheus/tests/recording-rules.test.yml");
    for name in recording_rule_names(&read(RECORDING_RULES)) {
        assert!(
            tests.contains(&format!("- expr: {name}\n")),
            "recording rule {name} has no promql_expr_test in tests/recording-rules.test.yml"
        );
    }
    let tests = read("deploy/prometheus/tests/alert-rules.test.yml");
    for (alert, _) in alert_exprs(&read(ALERT_RULES)) {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        let firing = tests
            .split("alertname: ")
            .filter(|c| c.starts_with(&format!("{alert}\n")) && c.contains("exp_labels:"))
            .count();
        assert!(
            cases >= 2 && firing >= 1 && firing < cases,
            "alert {alert} needs firing and not-firing cases in tests/alert-rules.test.yml \
             ({cases} cases, {firing} firing)"
        );
    }
}

#[test]
fn every_alert_has_severity_and_annotations() {
    let yaml = read(ALERT_RULES);
    let runbook = read("deploy/prometheus/RUNBOOK.md");
    let blocks: Vec<&str> = yaml.split("- alert: ").skip(1).collect();
    assert_eq!(blocks.len(), 7, "expected 7 alerts in {ALERT_RULES}");
    for block in blocks {
        let name = block.lines().next().unwrap().trim();
        for key in ["severity: ", "summary: ", "description: ", "runbook_url: "] {
            assert!(block.contains(key), "alert {name} lacks `{key}`");
        }
        let anchor = name.to_ascii_lowercase();
        assert!(
            block.contains(&format!("deploy/prometheus/RUNBOOK.md#{anchor}\"")),
            "alert {name}: runbook_url must point at RUNBOOK.md#{anchor}"
        );
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "RUNBOOK.md has no `## {name}` section"
        );
        let description = block
            .lines()
            .find(|l| l.trim_start().starts_with("description:"))
            .unwrap();
        assert!(
            description.contains("$value") || description.contains("$labels"),
            "alert {name}: the description should use $value or $labels"
        );
    }
}

#[test]
#[ignore = "needs python3: run scripts/test"]
fn render_alerts_rewrites_thresholds_and_readme_lists_them() {
    let out = python(&[RENDER, "--check"]);
    assert!(
        out.status.success(),
        "render-alerts.py --check:\n{}",
        show(&out)
    );

    // No settings: the file comes out byte for byte.
    let out = python(&[RENDER]);
    assert!(out.status.success(), "render-alerts.py:\n{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        read(ALERT_RULES),
        "render-alerts.py without --set must reproduce alert-rules.yml"
    );

    // A setting changes the expression, the description and the marker.
    let out = python(&[RENDER, "--set", "cac_max=450", "--set", "cac_for=2h"]);
    assert!(
        out.status.success(),
        "render-alerts.py --set:\n{}",
        show(&out)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(rendered.contains("> 450  # threshold: cac_max (default 2000; rendered 450)"));
    assert!(rendered.contains("above cac_max = 450 "));
    assert!(rendered.contains("for: 2h  # threshold: cac_for (default 1h; rendered 2h)"));
    let code_lines = || {
        rendered
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
    };
    assert_eq!(
        code_lines().filter(|l| l.contains("2000")).count(),
        code_lines()
            .filter(|l| l.contains("(default 2000; rendered 450)"))
            .count(),
        "every occurrence of the default CAC threshold must have been rewritten"
    );

    // Unknown names and bad values are refused.
    for bad in ["no_such_threshold=1", "cac_max=lots", "cac_for=an hour"] {
        let out = python(&[RENDER, "--set", bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "render-alerts.py --set {bad} must fail with 2:\n{}",
            show(&out)
        );
    }

    // README's threshold table lists every parameter with its default.
    let out = python(&[RENDER, "--list"]);
    assert!(
        out.status.success(),
        "render-alerts.py --list:\n{}",
        show(&out)
    );
    let readme = read(PROM_README);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let params: Vec<(&str, &str)> = listing
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| (f[0], f[2]))
        })
        .collect();
    assert!(
        params.len() >= 15,
        "render-alerts.py --list printed:\n{listing}"
    );
    for (name, default) in params {
        assert!(
            readme.contains(&format!("| `{name}` | `{default}` |")),
            "{PROM_README}: the thresholds table lacks `| `{name}` | `{default}` |`"
        );
    }
}

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "funnelstream");
    let schema = dash["schemaVersion"].as_i64().unwrap_or(0);
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or(""), v))
        .collect();
    let ds = vars.get("datasource").expect("variable `datasource`");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["channel", "campaign"] {
        let v = vars
            .get(name)
            .unwrap_or_else(|| panic!("variable `{name}`"));
        assert_eq!(v["type"], "query", "variable {name}");
        assert_eq!(v["multi"], true, "variable {name} must be multi-value");
        assert_eq!(v["includeAll"], true, "variable {name} must include All");
        let q = v["definition"].as_str().unwrap_or("");
        assert!(q.starts_with("label_values("), "variable {name}: {q}");
    }
    assert!(vars.contains_key("window"), "variable `window`");
    assert!(vars.contains_key("currency"), "variable `currency`");

    let titles: BTreeSet<&str> = all_panels(&dash)
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for row in [
        "Acquisition",
        "Funnel",
        "Sales",
        "Revenue and retention",
        "Engine health",
    ] {
        assert!(
            titles.contains(row),
            "dashboard lacks row {row}; has {titles:?}"
        );
    }

    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_i64().unwrap_or(-1)),
            "duplicate panel id in {title}"
        );
        if p["type"] == "row" {
            continue;
        }
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        if unit.is_empty() {
            problems.push(format!("{title}: no unit"));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource is not ${{datasource}}"));
        }
        if !matches!(p["targets"].as_array(), Some(t) if !t.is_empty()) {
            problems.push(format!("{title}: no targets"));
        }
        let ratio_panel = title.to_ascii_lowercase().contains("ratio")
            || ["CTR", "Win rate", "NRR", "churn", "->"]
                .iter()
                .any(|k| title.contains(k));
        if ratio_panel && unit != "percentunit" {
            problems.push(format!(
                "{title}: a ratio panel must use percentunit, has {unit}"
            ));
        }
    }

    for (title, refid, expr) in dashboard_targets(&dash) {
        let at = format!("{title} [{refid}]");
        if expr.contains("avg(") || expr.contains("avg by") {
            problems.push(format!("{at}: averages are not roll-ups; use sum/sum"));
        }
        for (name, selector) in funnel_selectors(&expr) {
            if HEALTH.contains(&name.as_str()) {
                continue;
            }
            let sel = selector.unwrap_or_default();
            if !sel.contains("channel=~\"$channel\"") || !sel.contains("campaign=~\"$campaign\"") {
                problems.push(format!(
                    "{at}: {name} is not filtered by $channel and $campaign"
                ));
            }
            let windowed = WINDOWED.contains(&name.as_str());
            if windowed != sel.contains("window=\"$window\"") {
                problems.push(format!(
                    "{at}: {name} {} filtered by window=\"$window\"",
                    if windowed { "must be" } else { "cannot be" }
                ));
            }
            let kpi = WINDOWED[19..].contains(&name.as_str());
            if kpi && !KPIS_ALLOWED_IN_DASHBOARD.contains(&name.as_str()) {
                problems.push(format!(
                    "{at}: reads the per-campaign KPI {name}; rebuild it as sum/sum from the counts"
                ));
            }
        }
        if expr.contains("funnel_sales_cycle_mean_seconds{")
            && !expr.contains("funnel_sales_cycle_mean_seconds{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"} * funnel_deals_won{")
        {
            problems.push(format!("{at}: the mean sales cycle must be weighted by deals won"));
        }
        let substituted = substitute(&expr);
        if substituted.contains('$') {
            problems.push(format!("{at}: unknown variable left in {substituted}"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n  {}",
        problems.join("\n  ")
    );
}

/// `funnelstream demo`, scraped every second by Prometheus with the recording
/// rules and a permissively rendered alert file: every dashboard query, every
/// recording rule and every alert expression returns data, and the alerts
/// fire.
#[test]
#[ignore = "needs prometheus and python3: run scripts/test"]
fn end_to_end_prometheus_scrapes_demo() {
    let started = Instant::now();
    let tmp = TempDir::new("deploy-e2e");

    // Alert rules with thresholds every healthy demo crosses, `for: 0s`.
    let alerts_file = tmp.0.join("alerts.yml");
    let mut render_args = vec![RENDER.to_string()];
    for s in PERMISSIVE {
        render_args.push("--set".into());
        render_args.push(s.to_string());
    }
    render_args.push("--out".into());
    render_args.push(alerts_file.to_string_lossy().into_owned());
    let args: Vec<&str> = render_args.iter().map(String::as_str).collect();
    let out = python(&args);
    assert!(out.status.success(), "render-alerts.py:\n{}", show(&out));
    let rendered = std::fs::read_to_string(&alerts_file).unwrap();

    let engine_port = free_port();
    let engine_addr = format!("127.0.0.1:{engine_port}");
    let mut engine = Proc::spawn(
        "funnelstream demo",
        Command::new(BIN).args(["demo", "--listen", &engine_addr, "--duration", "120"]),
        tmp.0.join("demo.log"),
        "",
    );

    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rec:?}\n  - {alerts:?}\n\
             scrape_configs:\n  - job_name: funnelstream\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
             static_configs:\n      - targets: [\"{engine_addr}\"]\n",
            rec = manifest(RECORDING_RULES),
            alerts = alerts_file,
        ),
    )
    .unwrap();
    let mut prometheus = Proc::spawn(
        "prometheus",
        Command::new("prometheus").args([
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", tmp.0.join("data").display()),
            "--storage.tsdb.retention.time=15m".into(),
            format!("--web.listen-address={prom_addr}"),
            "--log.level=warn".into(),
        ]),
        tmp.0.join("prometheus.log"),
        PROMETHEUS_PKG,
    );

    wait_until(
        "the demo engine's /readyz",
        Duration::from_secs(45),
        || matches!(http_get(&engine_addr, "/readyz"), Ok((200, _))),
        &mut [&mut engine, &mut prometheus],
    );
    wait_until(
        "Prometheus to be ready",
        Duration::from_secs(30),
        || matches!(http_get(&prom_addr, "/-/ready"), Ok((200, _))),
        &mut [&mut engine, &mut prometheus],
    );
    // Five successful scrapes, so that rate(...[1m]) and deriv() have samples,
    // and the rules have been evaluated on them.
    wait_until(
        "five successful scrapes",
        Duration::from_secs(30),
        || {
            prom_query(
                &prom_addr,
                "sum_over_time(up{job=\"funnelstream\"}[1m]) >= 5",
            )
            .is_ok_and(|r| !r.is_empty())
                && prom_query(&prom_addr, "window:funnel_impressions:sum")
                    .is_ok_and(|r| !r.is_empty())
        },
        &mut [&mut engine, &mut prometheus],
    );
    let ready_after = started.elapsed();

    let mut failures = Vec::new();
    let mut queried = 0;
    let mut check = |what: String, expr: &str, must_have_data: bool| {
        queried += 1;
        match prom_query(&prom_addr, expr) {
            Ok(r) if r.is_empty() && must_have_data => failures.push(format!(
                "{what}: empty result\n    {}",
                expr.replace('\n', "\n    ")
            )),
            Ok(_) => {}
            Err(e) => failures.push(format!("{what}: {e}\n    {}", expr.replace('\n', "\n    "))),
        }
    };

    let dash = dashboard();
    for (title, refid, expr) in dashboard_targets(&dash) {
        check(
            format!("dashboard panel {title:?} [{refid}]"),
            &substitute(&expr),
            true,
        );
    }
    let rules = recording_rule_names(&read(RECORDING_RULES));
    assert_eq!(rules.len(), 88, "recording rules");
    for name in &rules {
        check(format!("recording rule {name}"), name, true);
    }
    let shipped = alert_exprs(&read(ALERT_RULES));
    assert_eq!(shipped.len(), 7, "alerts in {ALERT_RULES}");
    for (name, expr) in &shipped {
        // With the default thresholds, whether an alert holds depends on the
        // demo's random data: only check that the query is valid.
        check(format!("alert {name} (default thresholds)"), expr, false);
    }
    let permissive = alert_exprs(&rendered);
    for (name, expr) in &permissive {
        let must = !ALERTS_QUIET_ON_DEMO.contains(&name.as_str());
        check(format!("alert {name} (permissive thresholds)"), expr, must);
    }
    let queries_done = started.elapsed();

    // The rendered alerts fire (for: 0s), FunnelCACHigh first of all.
    let expected: BTreeSet<String> = permissive
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !ALERTS_QUIET_ON_DEMO.contains(&n.as_str()))
        .collect();
    let mut firing = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, body)) = http_get(&prom_addr, "/api/v1/alerts") {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            firing = v["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["state"] == "firing")
                .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
                .collect();
            if expected.is_subset(&firing) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !firing.contains("FunnelCACHigh") {
        failures.push(format!(
            "FunnelCACHigh with cac_max=0.01 is not firing within 30 s; firing: {firing:?}"
        ));
    }
    let missing: Vec<&String> = expected.difference(&firing).collect();
    if !missing.is_empty() {
        failures.push(format!(
            "alerts with permissive thresholds not firing within 30 s: {missing:?}; firing: {firing:?}"
        ));
    }
    for quiet in ALERTS_QUIET_ON_DEMO {
        if firing.contains(*quiet) {
            failures.push(format!("{quiet} fires on a healthy demo"));
        }
    }
    engine.assert_running();
    prometheus.assert_running();

    eprintln!(
        "deploy e2e: ready after {ready_after:?}, {queried} queries done at {queries_done:?}, \
         {} alerts firing at {:?}",
        firing.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {queried} checks failed:\n{}\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        engine.log_tail(),
        prometheus.log_tail()
    );
}
