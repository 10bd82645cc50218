//! Tests of the monitoring assets in `deploy/`: the Prometheus recording and
//! alert rules, their `promtool` unit tests, `render-alerts.py`, the Grafana
//! dashboard, and an end-to-end run of all of them against `funnelstream
//! demo` scraped by a real Prometheus.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`, which CI
//! installs) and `python3`.

use crate::support::prometheus::{get, promtool, query, PROMETHEUS_PKG};
use crate::support::{
    free_port, manifest, python, read, show, Engine, Scratch, V1_WINDOWED_KPIS,
    V2_WINDOWED_FLOAT_KPIS,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RECORDING_RULES: &str = "deploy/prometheus/recording-rules.yml";
const ALERT_RULES: &str = "deploy/prometheus/alert-rules.yml";
const RENDER: &str = "deploy/prometheus/render-alerts.py";
const PROM_README: &str = "deploy/prometheus/README.md";
const DASHBOARD: &str = "deploy/grafana/funnelstream.json";

/// Windowed counts of METRICS.md v1.
const V1_WINDOWED_COUNTS: &[&str] = &[
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
];

/// Windowed counts new in METRICS.md v2, the previous-window ones included.
const V2_WINDOWED_COUNTS: &[&str] = &[
    "funnel_pipeline_created",
    "funnel_deals_won_by_origin",
    "funnel_revenue_won_by_origin",
    "funnel_pipeline_created_by_origin",
    "funnel_deals_won_influenced",
    "funnel_revenue_won_influenced",
    "funnel_sessions",
    "funnel_pageviews",
    "funnel_bounces",
    "funnel_engaged_sessions",
    "funnel_conversions",
    "funnel_conversion_value",
    "funnel_emails_sent",
    "funnel_emails_delivered",
    "funnel_emails_bounced",
    "funnel_emails_opened",
    "funnel_emails_clicked",
    "funnel_email_subscribes",
    "funnel_email_unsubscribes",
    "funnel_email_complaints",
    "funnel_nps_responses",
    "funnel_nps_promoters",
    "funnel_nps_passives",
    "funnel_nps_detractors",
    "funnel_csat_responses",
    "funnel_csat_satisfied",
    "funnel_leads_previous",
    "funnel_mqls_previous",
    "funnel_sqls_previous",
    "funnel_opportunities_previous",
    "funnel_deals_won_previous",
    "funnel_revenue_won_previous",
    "funnel_pipeline_created_previous",
    "funnel_customers_new_previous",
    "funnel_sessions_previous",
    "funnel_conversions_previous",
];

/// Windowed KPIs new in METRICS.md v2 besides the floating-point ones
/// ([`V2_WINDOWED_FLOAT_KPIS`]): net new MRR and the growth ratios.
const V2_WINDOWED_KPIS_MORE: &[&str] = &[
    "funnel_mrr_net_new",
    "funnel_leads_growth_ratio",
    "funnel_mqls_growth_ratio",
    "funnel_sqls_growth_ratio",
    "funnel_opportunities_growth_ratio",
    "funnel_deals_won_growth_ratio",
    "funnel_revenue_won_growth_ratio",
    "funnel_pipeline_created_growth_ratio",
    "funnel_customers_new_growth_ratio",
    "funnel_sessions_growth_ratio",
    "funnel_conversions_growth_ratio",
];

/// Current-state gauges (no window) of v1 and v2.
const V1_CURRENT: &[&str] = &[
    "funnel_mrr",
    "funnel_customers",
    "funnel_open_pipeline_value",
];
const V2_CURRENT: &[&str] = &["funnel_arpa", "funnel_arr", "funnel_email_subscribers"];

/// All-time counters of v1 and v2.
const V1_COUNTERS: &[&str] = &[
    "funnel_impressions_total",
    "funnel_clicks_total",
    "funnel_leads_total",
    "funnel_deals_total",
    "funnel_revenue_won_total",
    "funnel_ad_spend_total",
    "funnel_spend_total",
    "funnel_mrr_movement_total",
];
const V2_COUNTERS: &[&str] = &[
    "funnel_pipeline_created_total",
    "funnel_sessions_total",
    "funnel_pageviews_total",
    "funnel_conversions_total",
    "funnel_email_events_total",
    "funnel_survey_responses_total",
    "funnel_fields_ignored_total",
];

/// Engine-health metrics of METRICS.md: no channel/campaign labels.
const CONTRACT_HEALTH: &[&str] = &[
    "funnel_events_ingested_total",
    "funnel_events_rejected_total",
    "funnel_events_duplicate_total",
    "funnel_events_late_total",
    "funnel_dedup_evicted_total",
    "funnel_fields_ignored_total",
    "funnel_consumer_lag_messages",
    "funnel_event_delay_seconds",
    "funnel_series",
    "funnel_build_info",
];

/// Health metrics the engine publishes beyond METRICS.md (the dashboard's
/// Engine health row reads them; the end-to-end test requires data for them).
const ENGINE_EXTRAS: &[&str] = &[
    "funnel_label_overflow_total",
    "funnel_deals_untracked_total",
    "funnel_series_budget",
];

/// KPIs the dashboard may read directly. Every other KPI is a ratio that must
/// be rebuilt as sum/sum from the counts; the mean sales cycle is only usable
/// weighted by deals won, and the quantiles only per campaign. funnel_ltv,
/// funnel_customer_churn_ratio and funnel_cac_payback_months are read only
/// to recover the engine's gross margin and window length (see
/// `RECOVERY`).
const KPIS_ALLOWED_IN_DASHBOARD: &[&str] = &[
    "funnel_sales_cycle_mean_seconds",
    "funnel_sales_cycle_p50_seconds",
    "funnel_sales_cycle_p90_seconds",
    "funnel_ltv",
    "funnel_customer_churn_ratio",
    "funnel_cac_payback_months",
];

/// The only ways the dashboard may read the recovery KPIs: gross margin x
/// W / month from LTV, gross margin from CAC payback (recording-rules.yml,
/// header).
const RECOVERY: &[(&str, &str)] = &[
    (
        "funnel_ltv{",
        "funnel_ltv{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"} * funnel_customer_churn_ratio{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"}\n  / ignoring (window) group_left\n  funnel_arpa{channel=~\"$channel\", campaign=~\"$campaign\"}",
    ),
    (
        "funnel_customer_churn_ratio{",
        "funnel_ltv{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"} * funnel_customer_churn_ratio{",
    ),
    (
        "funnel_cac_payback_months{",
        "funnel_spend{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"}\n    / (funnel_mrr_new{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"} * funnel_cac_payback_months{channel=~\"$channel\", campaign=~\"$campaign\", window=\"$window\"} > 0)",
    ),
];

/// Fixed (not `$window`) windows a dashboard panel may read, each with a
/// word its title must contain to say so.
const FIXED_WINDOWS: &[(&str, &str)] = &[("mtd", "month"), ("qtd", "quarter"), ("30d", "30d")];

/// Calendar windows (METRICS.md v2, opt-in).
const CALENDAR_WINDOWS: &[&str] = &["mtd", "qtd", "ytd", "last_month", "last_quarter"];

/// Dashboard panels that read v2 families or calendar windows, which the
/// demo publishes only once the engine implements METRICS.md v2 (issues 18
/// and 19) and the demo enables `mtd` and `qtd`. The end-to-end test checks
/// each of them for data as soon as every series it reads is exposed, and
/// allows it to be empty only while one of them is missing; every other
/// panel must return data now. Panels of the v2 rows computed from v1 counts
/// only (MER, quick ratio, net new MRR, MRR growth, ARPA, ARR) are not listed:
/// they are checked now.
const V2_PANELS: &[&str] = &[
    "LTV (${currency})",
    "LTV:CAC",
    "CAC payback",
    "LTV by channel (${currency})",
    "LTV:CAC by channel",
    "CAC payback by channel",
    "Sessions",
    "Pageviews",
    "Bounce ratio",
    "Engagement ratio",
    "Session -> lead",
    "Conversions",
    "Sessions by channel",
    "Bounce ratio by channel",
    "Engagement ratio by channel",
    "Session -> lead by channel",
    "Conversions by action",
    "Session conversion ratio by action",
    "CPA by action (${currency})",
    "Conversion value by action (${currency})",
    "Sessions growth by channel",
    "Emails sent",
    "Email delivery ratio",
    "Email open ratio",
    "Email click ratio",
    "Email click-to-open ratio",
    "Email bounce ratio",
    "Email unsubscribe ratio",
    "Email complaint ratio",
    "Emails sent by channel",
    "Email delivery and bounces",
    "Email engagement",
    "Email complaints and unsubscribes",
    "Email subscribers by channel",
    "Email list movements",
    "NPS",
    "NPS responses",
    "CSAT",
    "CSAT responses",
    "NPS by channel",
    "NPS promoters, passives and detractors",
    "CSAT by channel",
    "Marketing-originated deals",
    "Marketing-influenced deals",
    "Marketing-originated revenue",
    "Pipeline created (${currency})",
    "Deals won by origin",
    "Marketing-originated and influenced share by channel",
    "Pipeline created by origin (${currency})",
    "Leads this month",
    "MQLs this month",
    "Deals won this month",
    "Revenue won this month (${currency})",
    "Leads this quarter",
    "MQLs this quarter",
    "Deals won this quarter",
    "Revenue won this quarter (${currency})",
    "Lead velocity (MQL growth, 30d)",
    "This month against last month (same point)",
    "This quarter against last quarter (same point)",
];

/// Windowed KPIs of METRICS.md v2 (v1's included).
const WINDOWED_KPIS: &[&[&str]] = &[
    V1_WINDOWED_KPIS,
    V2_WINDOWED_FLOAT_KPIS,
    V2_WINDOWED_KPIS_MORE,
];

/// Windowed families of METRICS.md v2 (v1's included).
const WINDOWED: &[&[&str]] = &[
    V1_WINDOWED_COUNTS,
    V2_WINDOWED_COUNTS,
    V1_WINDOWED_KPIS,
    V2_WINDOWED_FLOAT_KPIS,
    V2_WINDOWED_KPIS_MORE,
];

/// The families METRICS.md v2 defines, windowed or not, health aside.
const FAMILIES: &[&[&str]] = &[
    V1_WINDOWED_COUNTS,
    V2_WINDOWED_COUNTS,
    V1_WINDOWED_KPIS,
    V2_WINDOWED_FLOAT_KPIS,
    V2_WINDOWED_KPIS_MORE,
    V1_CURRENT,
    V2_CURRENT,
    V1_COUNTERS,
    V2_COUNTERS,
];

/// The families v2 added.
const V2_FAMILIES: &[&[&str]] = &[
    V2_WINDOWED_COUNTS,
    V2_WINDOWED_FLOAT_KPIS,
    V2_WINDOWED_KPIS_MORE,
    V2_CURRENT,
    V2_COUNTERS,
];

fn in_any(lists: &[&[&str]], name: &str) -> bool {
    lists.iter().any(|l| l.contains(&name))
}

fn is_windowed(name: &str) -> bool {
    in_any(WINDOWED, name)
}

fn is_windowed_kpi(name: &str) -> bool {
    in_any(WINDOWED_KPIS, name)
}

fn is_health(name: &str) -> bool {
    let family = name
        .strip_suffix("_bucket")
        .or_else(|| name.strip_suffix("_count"))
        .or_else(|| name.strip_suffix("_sum"))
        .filter(|f| CONTRACT_HEALTH.contains(f))
        .unwrap_or(name);
    CONTRACT_HEALTH.contains(&family) || ENGINE_EXTRAS.contains(&family)
}

/// A family of METRICS.md v2 that v1 did not have.
fn is_v2(name: &str) -> bool {
    in_any(V2_FAMILIES, name)
}

/// A metric name METRICS.md v2 defines (or an engine extra).
fn is_known_metric(name: &str) -> bool {
    in_any(FAMILIES, name) || is_health(name)
}

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
    // v2 alerts: effective once the engine publishes their families.
    "ltv_to_cac_min=1e12",
    "ltv_to_cac_min_deals_won=0",
    "ltv_to_cac_for=0s",
    "cac_payback_months_max=-1",
    "cac_payback_for=0s",
    "nps_drop_points=-1000",
    "nps_min_responses=0",
    "nps_for=0s",
    "bounce_spike_ratio=-1",
    "bounce_min_sessions=0",
    "bounce_for=0s",
    "email_bounce_ratio_max=-1",
    "email_bounce_min_sent=0",
    "email_bounce_for=0s",
    "email_complaint_ratio_max=-1",
    "email_complaint_min_delivered=0",
    "email_complaint_for=0s",
    "mql_growth_min=1e12",
    "mql_growth_min_previous=0",
    "mql_growth_for=0s",
    "series_budget_ratio_max=-1",
    "series_budget_for=0s",
];

// ------------------------------------------------------------ rule parsing

/// `record:` names of a rule file, in order.
fn recording_rule_names(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// (alert name, expr) of a rule file, in order.
fn alert_exprs(yaml: &str) -> Vec<(String, String)> {
    rule_exprs(yaml, "- alert:")
}

/// (record name, expr) of a rule file, in order.
fn record_exprs(yaml: &str) -> Vec<(String, String)> {
    rule_exprs(yaml, "- record:")
}

/// (name, expr) of the rules whose name follows `key` (`- alert:` or
/// `- record:`), in order. Understands the two forms the files use:
/// `expr: <one line>` and `expr: |` followed by a block indented deeper than
/// the `expr:` key.
fn rule_exprs(yaml: &str, key: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(n) = trimmed.strip_prefix(key) {
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

/// An expression without its `#` comments (the threshold markers).
fn strip_comments(expr: &str) -> String {
    expr.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Recording-rule names (`level:funnel_x:op`) an expression reads.
fn rule_refs(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    strip_comments(expr)
        .split(|c: char| !ident(c))
        .filter(|w| w.matches(':').count() == 2 && w.contains(":funnel_"))
        .map(String::from)
        .collect()
}

/// The raw `funnel_*` selectors an expression reads, through the recording
/// rules it uses (transitively), as (name, selector text or None).
fn raw_reads(
    expr: &str,
    rules: &BTreeMap<String, String>,
    out: &mut BTreeSet<(String, Option<String>)>,
) {
    let expr = strip_comments(expr);
    out.extend(funnel_selectors(&expr));
    for r in rule_refs(&expr) {
        if let Some(e) = rules.get(&r) {
            raw_reads(e, rules, out);
        }
    }
}

/// The window a selector pins, if any: `window="X"` -> X.
fn selector_window(selector: &str) -> Option<&str> {
    let at = selector.find("window=\"")? + "window=\"".len();
    selector[at..].split('"').next()
}

/// METRICS.md: the repository's copy of the contract (`docs/contract/`,
/// checked against `shared/contract/` by `contract::`).
fn contract_metrics_md() -> (PathBuf, String) {
    let path = manifest("docs/contract/METRICS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

// -------------------------------------------------------------- processes

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

/// The name lists above are the contract's (METRICS.md, compared with it in
/// `dashboard_queries_parse_and_read_contract_metrics`); the names the
/// engine publishes come from one place, `kpi::FAMILIES`. They must agree:
/// every family of the catalogue is listed, windowed exactly when the
/// catalogue publishes it per window, and every other listed name is a
/// health metric. A family renamed in the catalogue fails here.
#[test]
fn name_lists_agree_with_the_engine_catalogue() {
    use funnelstream::kpi::{Eval, FAMILIES as CATALOGUE};
    let mut problems = Vec::new();
    for f in CATALOGUE {
        // No wildcard: a new kind of family must be classified here.
        let windowed = match f.eval {
            Eval::Window(_)
            | Eval::LabelledWindow { .. }
            | Eval::ActionWindow(_)
            | Eval::ActionGrowth(_) => true,
            Eval::Key(_)
            | Eval::Labelled { .. }
            | Eval::ActionKey(_)
            | Eval::KeyV2(_)
            | Eval::LabelledV2 { .. } => false,
        };
        if !in_any(FAMILIES, f.name) {
            problems.push(format!(
                "{} (kpi::FAMILIES) is in no list of this file",
                f.name
            ));
        } else if windowed != is_windowed(f.name) {
            problems.push(format!(
                "{}: windowed {windowed} in kpi::FAMILIES, {} here",
                f.name,
                is_windowed(f.name)
            ));
        }
    }
    for name in FAMILIES.iter().flat_map(|l| l.iter()) {
        // Health metrics (funnel_fields_ignored_total is both) are the
        // export stage's, not the catalogue's.
        if !is_health(name) && !CATALOGUE.iter().any(|f| f.name == *name) {
            problems.push(format!("{name} is listed here but not in kpi::FAMILIES"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

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

/// The text of every promtool test file whose name starts with `prefix`.
fn rule_tests(prefix: &str) -> String {
    let dir = manifest("deploy/prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus/tests")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".test.yml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {prefix}*.test.yml in {dir:?}");
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn promtool_unit_tests_cover_every_rule() {
    let tests = rule_tests("recording-rules");
    for name in recording_rule_names(&read(RECORDING_RULES)) {
        assert!(
            tests.contains(&format!("- expr: {name}\n")),
            "recording rule {name} has no promql_expr_test in tests/recording-rules*.test.yml"
        );
    }
    let tests = rule_tests("alert-rules");
    for (alert, _) in alert_exprs(&read(ALERT_RULES)) {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        let firing = tests
            .split("alertname: ")
            .filter(|c| c.starts_with(&format!("{alert}\n")) && c.contains("exp_labels:"))
            .count();
        assert!(
            cases >= 2 && firing >= 1 && firing < cases,
            "alert {alert} needs firing and not-firing cases in tests/alert-rules*.test.yml \
             ({cases} cases, {firing} firing)"
        );
    }
}

/// tests/recording-rules-v2.test.yml is what its reference script writes:
/// the expected values were not edited by hand.
#[test]
#[ignore = "needs python3: run scripts/test"]
fn v2_recording_rule_test_matches_its_reference() {
    let out = python(&["deploy/prometheus/tests/make-v2-test.py"]);
    assert!(out.status.success(), "make-v2-test.py:\n{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout) == read("deploy/prometheus/tests/recording-rules-v2.test.yml"),
        "deploy/prometheus/tests/recording-rules-v2.test.yml differs from make-v2-test.py's output: \
         run deploy/prometheus/tests/make-v2-test.py > deploy/prometheus/tests/recording-rules-v2.test.yml"
    );
}

#[test]
fn every_alert_has_severity_and_annotations() {
    let yaml = read(ALERT_RULES);
    let runbook = read("deploy/prometheus/RUNBOOK.md");
    let blocks: Vec<&str> = yaml.split("- alert: ").skip(1).collect();
    assert_eq!(blocks.len(), 15, "expected 15 alerts in {ALERT_RULES}");
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
        "Unit economics",
        "Web",
        "Email",
        "NPS and CSAT",
        "Attribution",
        "This month / this quarter",
        "Engine health",
    ] {
        assert!(
            titles.contains(row),
            "dashboard lacks row {row}; has {titles:?}"
        );
    }

    let mut ids = BTreeSet::new();
    let mut titles_seen = BTreeSet::new();
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
        // Panels are named by title (here, in RUNBOOK.md, in V2_PANELS).
        if !titles_seen.insert(title) {
            problems.push(format!("{title}: two panels have this title"));
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
        // A ratio is a percentage, or a multiple ("3.2x": LTV:CAC, quick ratio).
        if ratio_panel && unit != "percentunit" && unit != "suffix:x" {
            problems.push(format!(
                "{title}: a ratio panel must use percentunit (or suffix:x for a multiple), has {unit}"
            ));
        }
    }

    for (title, refid, expr) in dashboard_targets(&dash) {
        let at = format!("{title} [{refid}]");
        if expr.contains("avg(") || expr.contains("avg by") {
            problems.push(format!("{at}: averages are not roll-ups; use sum/sum"));
        }
        for (name, selector) in funnel_selectors(&expr) {
            if is_health(&name) {
                continue;
            }
            let sel = selector.unwrap_or_default();
            if !sel.contains("channel=~\"$channel\"") || !sel.contains("campaign=~\"$campaign\"") {
                problems.push(format!(
                    "{at}: {name} is not filtered by $channel and $campaign"
                ));
            }
            // A windowed metric reads the window the user picked, or a fixed
            // window its panel's title names (this month, this quarter, 30d);
            // all series of one query read the same window.
            let windowed = is_windowed(&name);
            match selector_window(&sel) {
                None if windowed => problems.push(format!(
                    "{at}: {name} must be filtered by window=\"$window\""
                )),
                Some(_) if !windowed => {
                    problems.push(format!("{at}: {name} has no window label to filter"))
                }
                Some("$window") | None => {}
                Some(w) => {
                    let fixed = FIXED_WINDOWS.iter().find(|(fw, _)| *fw == w);
                    match fixed {
                        Some((_, word)) if title.contains(word) => {}
                        _ => problems.push(format!(
                            "{at}: {name} reads window {w:?}: use $window, or a fixed window of \
                             {FIXED_WINDOWS:?} named in the panel title"
                        )),
                    }
                    if selector_window(&expr) != Some(w) {
                        problems.push(format!("{at}: mixes window {w:?} with other windows"));
                    }
                }
            }
            if is_windowed_kpi(&name) && !KPIS_ALLOWED_IN_DASHBOARD.contains(&name.as_str()) {
                problems.push(format!(
                    "{at}: reads the per-campaign KPI {name}; rebuild it as sum/sum from the counts"
                ));
            }
        }
        for (selector, pattern) in RECOVERY {
            if expr.contains(selector) && !expr.contains(pattern) {
                problems.push(format!(
                    "{at}: reads {selector}..}} other than to recover the gross margin or window length"
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

    // V2_PANELS lists exactly the panels that read a v2 family or a
    // calendar window: no v1 panel can hide behind it.
    let mut reads_v2: BTreeMap<String, bool> = BTreeMap::new();
    for (title, _, expr) in dashboard_targets(&dash) {
        let v2 = funnel_selectors(&expr).iter().any(|(name, sel)| {
            is_v2(name)
                || sel
                    .as_deref()
                    .and_then(selector_window)
                    .is_some_and(|w| CALENDAR_WINDOWS.contains(&w))
        });
        *reads_v2.entry(title).or_default() |= v2;
    }
    for title in V2_PANELS {
        match reads_v2.get(*title) {
            None => problems.push(format!(
                "V2_PANELS lists {title:?}, which the dashboard lacks"
            )),
            Some(false) => problems.push(format!(
                "V2_PANELS lists {title:?}, which reads no v2 family and no calendar window"
            )),
            Some(true) => {}
        }
    }
    for (title, v2) in &reads_v2 {
        if *v2 && !V2_PANELS.contains(&title.as_str()) {
            problems.push(format!("{title:?} reads v2 series but is not in V2_PANELS"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n  {}",
        problems.join("\n  ")
    );
}

/// Every dashboard query parses as PromQL (promtool, as a recording rule),
/// and every metric the dashboard, the recording rules and the alerts read
/// is a METRICS.md v2 name (or a recording rule defined in
/// recording-rules.yml). The name lists of this file are checked against
/// METRICS.md itself (the copy in `docs/contract/`).
#[test]
#[ignore = "needs promtool: run scripts/test"]
fn dashboard_queries_parse_and_read_contract_metrics() {
    let dash = dashboard();
    let targets = dashboard_targets(&dash);
    let tmp = Scratch::new("dashboard-parse");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, refid, expr)) in targets.iter().enumerate() {
        yaml.push_str(&format!(
            "      # {title} [{refid}]\n      - record: dashboard_query_{i}\n        expr: |\n"
        ));
        for line in substitute(expr).lines() {
            yaml.push_str(&format!("          {line}\n"));
        }
    }
    let file = tmp.join("dashboard-queries.yml");
    std::fs::write(&file, &yaml).unwrap();
    let out = promtool(&["check", "rules", &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}",
        show(&out)
    );

    let rules: BTreeMap<String, String> =
        record_exprs(&read(RECORDING_RULES)).into_iter().collect();
    let mut problems = Vec::new();
    let mut reads: Vec<(String, String)> = targets
        .iter()
        .map(|(title, refid, expr)| (format!("dashboard panel {title:?} [{refid}]"), expr.clone()))
        .collect();
    reads.extend(
        rules
            .iter()
            .map(|(n, e)| (format!("recording rule {n}"), e.clone())),
    );
    reads.extend(
        alert_exprs(&read(ALERT_RULES))
            .into_iter()
            .map(|(n, e)| (format!("alert {n}"), e)),
    );
    for (what, expr) in &reads {
        for (name, _) in funnel_selectors(&strip_comments(expr)) {
            // The one roll-up-only ratio has no engine series to read.
            if !is_known_metric(&name) {
                problems.push(format!("{what}: {name} is not a METRICS.md v2 metric"));
            }
        }
        for r in rule_refs(expr) {
            if !rules.contains_key(&r) {
                problems.push(format!(
                    "{what}: reads {r}, which recording-rules.yml does not define"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The lists above against the contract: each of its names is in METRICS.md,
    // and each funnel_ name of METRICS.md is in them.
    let (path, md) = contract_metrics_md();
    let growth_para = md
        .split("For x in")
        .nth(1)
        .and_then(|p| p.split("the engine publishes").next())
        .unwrap_or_else(|| panic!("{path:?}: no \"For x in ... the engine publishes\" paragraph"));
    let lists = [FAMILIES, &[CONTRACT_HEALTH]].concat();
    for name in lists.iter().flat_map(|l| l.iter()) {
        let generic = name
            .strip_suffix("_previous")
            .map(|x| (x, "funnel_<x>_previous"))
            .or_else(|| {
                name.strip_suffix("_growth_ratio")
                    .map(|x| (x, "funnel_<x>_growth_ratio"))
            });
        let found = match generic {
            Some((x, pattern)) if !md.contains(&format!("`{name}")) => {
                let x = x.strip_prefix("funnel_").unwrap();
                md.contains(pattern) && growth_para.contains(&format!("`{x}"))
            }
            _ => md.contains(&format!("`{name}`")) || md.contains(&format!("`{name}{{")),
        };
        if !found {
            problems.push(format!("{name} is not in {path:?}"));
        }
    }
    let listed: BTreeSet<&str> = lists.iter().flat_map(|l| l.iter().copied()).collect();
    let bytes = md.as_bytes();
    let mut i = 0;
    while let Some(off) = md[i..].find("funnel_") {
        let start = i + off;
        let mut end = start + "funnel_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        i = end;
        let name = &md[start..end];
        if name.ends_with('_') {
            continue; // funnel_<x>_previous
        }
        if !listed.contains(name) {
            problems.push(format!(
                "{path:?} defines {name}, which this test's lists lack"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The dashboard's panels of the v2 rows, with every channel and campaign
/// selected, equal the recording rules (totals for the whole-selection
/// stats, the channel, action or origin level for the grouped panels) on the
/// input of tests/recording-rules-v2.test.yml, whose expected values come
/// from an independent reference: the dashboard's inline sum/sum formulas
/// and the rules agree.
#[test]
#[ignore = "needs promtool: run scripts/test"]
fn dashboard_v2_panels_agree_with_recording_rules() {
    const PAIRS: &[(&str, &str)] = &[
        ("LTV (${currency})", "window:funnel_ltv:from_sums"),
        ("LTV:CAC", "window:funnel_ltv_to_cac_ratio:from_sums"),
        ("CAC payback", "window:funnel_cac_payback_months:from_sums"),
        ("MER", "window:funnel_mer_ratio:from_sums"),
        ("Quick ratio", "window:funnel_quick_ratio:from_sums"),
        (
            "Net new MRR (${currency})",
            "window:funnel_mrr_net_new:from_sums",
        ),
        ("ARPA (${currency})", "total:funnel_arpa:from_sums"),
        ("ARR (${currency})", "total:funnel_arr:sum"),
        ("Sessions", "window:funnel_sessions:sum"),
        ("Pageviews", "window:funnel_pageviews:sum"),
        ("Bounce ratio", "window:funnel_bounce_ratio:from_sums"),
        (
            "Engagement ratio",
            "window:funnel_engagement_ratio:from_sums",
        ),
        (
            "Session -> lead",
            "window:funnel_session_to_lead_ratio:from_sums",
        ),
        ("Emails sent", "window:funnel_emails_sent:sum"),
        (
            "Email delivery ratio",
            "window:funnel_email_delivery_ratio:from_sums",
        ),
        (
            "Email open ratio",
            "window:funnel_email_open_ratio:from_sums",
        ),
        (
            "Email click ratio",
            "window:funnel_email_click_ratio:from_sums",
        ),
        (
            "Email click-to-open ratio",
            "window:funnel_email_click_to_open_ratio:from_sums",
        ),
        (
            "Email bounce ratio",
            "window:funnel_email_bounce_ratio:from_sums",
        ),
        (
            "Email unsubscribe ratio",
            "window:funnel_email_unsubscribe_ratio:from_sums",
        ),
        (
            "Email complaint ratio",
            "window:funnel_email_complaint_ratio:from_sums",
        ),
        ("NPS", "window:funnel_nps_score:from_sums"),
        ("NPS responses", "window:funnel_nps_responses:sum"),
        ("CSAT", "window:funnel_csat_ratio:from_sums"),
        ("CSAT responses", "window:funnel_csat_responses:sum"),
        (
            "Marketing-originated deals",
            "window:funnel_marketing_originated_ratio:from_sums",
        ),
        (
            "Marketing-influenced deals",
            "window:funnel_marketing_influenced_ratio:from_sums",
        ),
        (
            "Pipeline created (${currency})",
            "window:funnel_pipeline_created:sum",
        ),
    ];
    let v2_test = read("deploy/prometheus/tests/recording-rules-v2.test.yml");
    let input = v2_test
        .split("    input_series:\n")
        .nth(1)
        .and_then(|s| s.split("    promql_expr_test:\n").next())
        .expect("tests/recording-rules-v2.test.yml: input_series");
    let dash = dashboard();
    let stats: BTreeMap<String, String> = all_panels(&dash)
        .iter()
        .filter(|p| p["type"] == "stat")
        .filter_map(|p| {
            Some((
                p["title"].as_str()?.to_string(),
                p["targets"][0]["expr"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut tests = String::new();
    for (title, rule) in PAIRS {
        let expr = stats
            .get(*title)
            .unwrap_or_else(|| panic!("no stat panel {title:?}"));
        for window in ["1d", "30d"] {
            let query = expr
                .replace("$channel", ".*")
                .replace("$campaign", ".*")
                .replace("$window", window)
                .replace('\n', " ");
            let rule_sel = if rule.starts_with("total:") {
                rule.to_string()
            } else {
                format!("{rule}{{window=\"{window}\"}}")
            };
            let count = if rule.starts_with("total:") {
                format!("count(({query}) - {rule_sel})")
            } else {
                format!("count(({query}) - ignoring (window) {rule_sel})")
            };
            // Present on both sides (all the input's KPIs are), and equal.
            tests.push_str(&format!(
                "      # {title}, {window}\n      - expr: '{}'\n        eval_time: 2m\n        exp_samples:\n          - labels: '{{}}'\n            value: 1\n",
                count.replace('\'', "''")
            ));
            let differs = count.replacen("count((", "abs((", 1);
            tests.push_str(&format!(
                "      - expr: '{} != 0'\n        eval_time: 2m\n        exp_samples: []\n",
                differs.replace('\'', "''")
            ));
        }
    }
    // The grouped panels (by channel, action or origin) against the
    // level's rules: the same series, with the same values. An empty window
    // list is a current-state rule (no window label).
    const ALL: &[&str] = &["1d", "30d"];
    const GROUPED: &[(&str, usize, &str, &[&str])] = &[
        (
            "LTV by channel (${currency})",
            0,
            "channel_window:funnel_ltv:from_sums",
            ALL,
        ),
        (
            "LTV:CAC by channel",
            0,
            "channel_window:funnel_ltv_to_cac_ratio:from_sums",
            ALL,
        ),
        (
            "CAC payback by channel",
            0,
            "channel_window:funnel_cac_payback_months:from_sums",
            ALL,
        ),
        (
            "MER by channel",
            0,
            "channel_window:funnel_mer_ratio:from_sums",
            ALL,
        ),
        (
            "Quick ratio by channel",
            0,
            "channel_window:funnel_quick_ratio:from_sums",
            ALL,
        ),
        (
            "Net new MRR by channel (${currency})",
            0,
            "channel_window:funnel_mrr_net_new:from_sums",
            ALL,
        ),
        (
            "ARPA by channel (${currency})",
            0,
            "channel:funnel_arpa:from_sums",
            &[],
        ),
        (
            "MRR growth and net MRR churn by channel",
            0,
            "channel_window:funnel_mrr_growth_ratio:from_sums",
            ALL,
        ),
        (
            "MRR growth and net MRR churn by channel",
            1,
            "channel_window:funnel_net_mrr_churn_ratio:from_sums",
            ALL,
        ),
        (
            "ARR by channel (${currency})",
            0,
            "channel:funnel_arr:sum",
            &[],
        ),
        (
            "Sessions by channel",
            0,
            "channel_window:funnel_sessions:sum",
            ALL,
        ),
        (
            "Bounce ratio by channel",
            0,
            "channel_window:funnel_bounce_ratio:from_sums",
            ALL,
        ),
        (
            "Engagement ratio by channel",
            0,
            "channel_window:funnel_engagement_ratio:from_sums",
            ALL,
        ),
        (
            "Session -> lead by channel",
            0,
            "channel_window:funnel_session_to_lead_ratio:from_sums",
            ALL,
        ),
        (
            "Conversions by action",
            0,
            "window_action:funnel_conversions:sum",
            ALL,
        ),
        (
            "Session conversion ratio by action",
            0,
            "window_action:funnel_session_conversion_ratio:from_sums",
            ALL,
        ),
        (
            "CPA by action (${currency})",
            0,
            "window_action:funnel_cpa:from_sums",
            ALL,
        ),
        (
            "Conversion value by action (${currency})",
            0,
            "window_action:funnel_conversion_value:sum",
            ALL,
        ),
        (
            "Sessions growth by channel",
            0,
            "channel_window:funnel_sessions_growth_ratio:from_sums",
            ALL,
        ),
        (
            "Emails sent by channel",
            0,
            "channel_window:funnel_emails_sent:sum",
            ALL,
        ),
        (
            "Email delivery and bounces",
            0,
            "window:funnel_email_delivery_ratio:from_sums",
            ALL,
        ),
        (
            "Email delivery and bounces",
            1,
            "window:funnel_email_bounce_ratio:from_sums",
            ALL,
        ),
        (
            "Email engagement",
            0,
            "window:funnel_email_open_ratio:from_sums",
            ALL,
        ),
        (
            "Email engagement",
            1,
            "window:funnel_email_click_ratio:from_sums",
            ALL,
        ),
        (
            "Email engagement",
            2,
            "window:funnel_email_click_to_open_ratio:from_sums",
            ALL,
        ),
        (
            "Email complaints and unsubscribes",
            0,
            "window:funnel_email_complaint_ratio:from_sums",
            ALL,
        ),
        (
            "Email complaints and unsubscribes",
            1,
            "window:funnel_email_unsubscribe_ratio:from_sums",
            ALL,
        ),
        (
            "Email subscribers by channel",
            0,
            "channel:funnel_email_subscribers:sum",
            &[],
        ),
        (
            "Email list movements",
            0,
            "window:funnel_email_subscribes:sum",
            ALL,
        ),
        (
            "NPS by channel",
            0,
            "channel_window:funnel_nps_score:from_sums",
            ALL,
        ),
        (
            "NPS promoters, passives and detractors",
            0,
            "window:funnel_nps_promoters:sum",
            ALL,
        ),
        (
            "NPS promoters, passives and detractors",
            1,
            "window:funnel_nps_passives:sum",
            ALL,
        ),
        (
            "NPS promoters, passives and detractors",
            2,
            "window:funnel_nps_detractors:sum",
            ALL,
        ),
        (
            "CSAT by channel",
            0,
            "channel_window:funnel_csat_ratio:from_sums",
            ALL,
        ),
        (
            "Deals won by origin",
            0,
            "window_origin:funnel_deals_won_by_origin:sum",
            ALL,
        ),
        (
            "Marketing-originated and influenced share by channel",
            0,
            "channel_window:funnel_marketing_originated_ratio:from_sums",
            ALL,
        ),
        (
            "Marketing-originated and influenced share by channel",
            1,
            "channel_window:funnel_marketing_influenced_ratio:from_sums",
            ALL,
        ),
        (
            "Pipeline created by origin (${currency})",
            0,
            "window_origin:funnel_pipeline_created_by_origin:sum",
            ALL,
        ),
        (
            "Lead velocity (MQL growth, 30d)",
            0,
            "channel_window:funnel_mqls_growth_ratio:from_sums",
            &["30d"],
        ),
        (
            "Lead velocity (MQL growth, 30d)",
            1,
            "window:funnel_mqls_growth_ratio:from_sums",
            &["30d"],
        ),
    ];
    let panels: BTreeMap<String, &Value> = all_panels(&dash)
        .into_iter()
        .filter_map(|p| Some((p["title"].as_str()?.to_string(), p)))
        .collect();
    for (title, target, rule, windows) in GROUPED {
        let expr = panels
            .get(*title)
            .and_then(|p| p["targets"][*target]["expr"].as_str())
            .unwrap_or_else(|| panic!("no panel {title:?} with a target {target}"));
        let cases: Vec<(&str, String, &str)> = if windows.is_empty() {
            vec![("1d", rule.to_string(), "")]
        } else {
            windows
                .iter()
                .map(|w| {
                    (
                        *w,
                        format!("{rule}{{window=\"{w}\"}}"),
                        "ignoring (window) ",
                    )
                })
                .collect()
        };
        for (window, rule_sel, ignoring) in cases {
            let query = expr
                .replace("$channel", ".*")
                .replace("$campaign", ".*")
                .replace("$window", window)
                .replace('\n', " ");
            // As many series as the rule, each matching one of the rule's,
            // with the same value.
            for (check, expect) in [
                (format!("count({query}) == bool count({rule_sel})"), "1"),
                (
                    format!("count(({query}) - {ignoring}{rule_sel}) == bool count({rule_sel})"),
                    "1",
                ),
                (format!("abs(({query}) - {ignoring}{rule_sel}) != 0"), ""),
            ] {
                let samples = if expect.is_empty() {
                    " []\n".to_string()
                } else {
                    format!("\n          - labels: '{{}}'\n            value: {expect}\n")
                };
                tests.push_str(&format!(
                    "      # {title} [{target}], {window}\n      - expr: '{}'\n        eval_time: 2m\n        exp_samples:{samples}",
                    check.replace('\'', "''")
                ));
            }
        }
    }

    let tmp = Scratch::new("dashboard-v2-stats");
    let file = tmp.join("dashboard-v2-stats.test.yml");
    std::fs::write(
        &file,
        format!(
            "rule_files:\n  - {:?}\n\nevaluation_interval: 1m\n\ntests:\n  - interval: 1m\n    input_series:\n{input}    promql_expr_test:\n{tests}",
            manifest(RECORDING_RULES)
        ),
    )
    .unwrap();
    let out = promtool(&["test", "rules", &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "dashboard panels and recording rules disagree:\n{}",
        show(&out)
    );
}

/// Rule evaluation interval of the end-to-end Prometheus, in seconds.
const EVALUATION_INTERVAL_S: u64 = 5;

/// The warnings Prometheus's rule manager logs when a rule's result is
/// dropped or a rule fails: a series written twice at one timestamp with
/// different values (two rules recording the same series, or a group
/// evaluated twice at one timestamp), out of order or too old, or an
/// evaluation error (many-to-many matching, duplicate label sets).
fn rule_manager_problems(log: &str) -> Vec<String> {
    const SIGNS: &[&str] = &[
        "different value but same timestamp",
        "out-of-order result from rule evaluation",
        "too old result from rule evaluation",
        "Rule evaluation result discarded",
        "Evaluating rule failed",
    ];
    log.lines()
        .filter(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(String::from)
        .collect()
}

/// Every recorded series has one writer: across the rule files a Prometheus
/// may load together (deploy/prometheus/*-rules.yml), no `record:` name is
/// defined twice and no recording rule adds `labels:` (so a rule's name alone
/// tells its series from every other rule's). Two writers of one series are
/// what "different value but same timestamp" usually means; the end-to-end
/// test below also checks that Prometheus never logs it.
#[test]
fn every_recorded_series_has_one_writer() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(manifest("deploy/prometheus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with("-rules.yml") {
            continue;
        }
        files += 1;
        let yaml = std::fs::read_to_string(&path).unwrap();
        for (record, expr) in record_exprs(&yaml) {
            if let Some(first) = seen.insert(record.clone(), name.clone()) {
                panic!("{record} is recorded twice ({first} and {name})");
            }
            assert!(!expr.is_empty(), "{name}: {record} has no expr");
        }
        let mut in_record = false;
        for line in yaml.lines() {
            let t = line.trim_start();
            if t.starts_with("- record:") || t.starts_with("- alert:") {
                in_record = t.starts_with("- record:");
            } else if in_record && t.starts_with("labels:") {
                panic!("{name}: a recording rule sets labels: {line}");
            }
        }
    }
    assert_eq!(files, 3, "rule files in deploy/prometheus");
    assert_eq!(seen.len(), 236 + 2, "recording rules in deploy/prometheus");
}

/// A rule that reads a recorded series comes after the rule recording it,
/// in the same group: Prometheus evaluates a group's rules in order, each
/// seeing the results of those above it at the same timestamp, but groups
/// run independently. A rule placed above its input would read the previous
/// evaluation's value (or nothing at first), which the promtool tests,
/// whose inputs are constant, cannot see.
#[test]
fn recorded_series_are_read_after_they_are_written() {
    for entry in std::fs::read_dir(manifest("deploy/prometheus")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with("-rules.yml") {
            continue;
        }
        let yaml = std::fs::read_to_string(&path).unwrap();
        let recorded: BTreeSet<String> = recording_rule_names(&yaml).into_iter().collect();
        for group in yaml.split("\n  - name: ").skip(1) {
            let group_name = group.lines().next().unwrap_or("").trim();
            let mut above = BTreeSet::new();
            for (record, expr) in record_exprs(group) {
                let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
                for read in strip_comments(&expr).split(|c: char| !ident(c)) {
                    assert!(
                        !recorded.contains(read) || above.contains(read),
                        "{file}, group {group_name}: {record} reads {read}, \
                         which is not recorded above it in the group"
                    );
                }
                above.insert(record);
            }
        }
    }
}

/// The log check of the end-to-end test recognises what Prometheus 2.42
/// really logs (these lines are from a run of that test before the fix).
#[test]
fn rule_manager_problems_recognises_prometheus_warnings() {
    let log = "ts=2026-12-06T10:18:26.491Z caller=manager.go:719 level=warn component=\"rule manager\" file=/work/wt/tests/deploy/prometheus/recording-rules.yml group=funnelstream.rollup.channel name=channel_window:funnel_email_unsubscribes:sum index=62 msg=\"Error on ingesting results from rule evaluation with different value but same timestamp\" numDropped=6
ts=2026-12-06T10:18:26.606Z caller=manager.go:719 level=warn component=\"rule manager\" file=/work/wt/tests/deploy/prometheus/recording-rules.yml group=funnelstream.rollup.channel name=channel:funnel_arr:sum index=80 msg=\"Error on ingesting results from rule evaluation with different value but same timestamp\" numDropped=6
";
    let found = rule_manager_problems(log);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("channel_window:funnel_email_unsubscribes:sum"));
    assert!(rule_manager_problems("").is_empty());
}

/// `funnelstream demo`, scraped every 2 s by Prometheus with the recording
/// rules (evaluated every 5 s) and a permissively rendered alert file: every
/// dashboard query, every recording rule and every alert expression returns
/// data, the alerts fire, and the rule manager logs no dropped result or
/// failed evaluation.
#[test]
#[ignore = "needs prometheus and python3: run scripts/test"]
fn end_to_end_prometheus_scrapes_demo() {
    let _one_at_a_time = crate::support::serial();
    let started = Instant::now();
    let tmp = Scratch::new("deploy-e2e");

    // Alert rules with thresholds every healthy demo crosses, `for: 0s`.
    let alerts_file = tmp.join("alerts.yml");
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

    // --firehose: every family of every window has data within seconds
    // (the demo company's 5m and 1d windows rightly have no won deal at
    // most hours, and every query here must return data).
    let mut engine = Engine::demo(&["--firehose", "--duration", "120"]);
    let engine_addr = format!("127.0.0.1:{}", engine.port);

    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = tmp.join("prometheus.yml");
    // evaluation_interval: each of the two roll-up groups (118 rules over the
    // firehose's series) takes about 0.9 s on an idle 2-core machine and 2 s
    // under load. A group that overruns a 1 s interval is evaluated late, and
    // Prometheus's scheduler (rules/manager.go, `missed := time.Since(evalTimestamp)
    // / interval - 1`) can then evaluate it a second time at the same
    // timestamp: after a scrape in between, every changed roll-up is written
    // twice with different values ("different value but same timestamp",
    // checked below). 5 s leaves room; evaluating faster than the 2 s scrape
    // gains nothing anyway.
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: {EVALUATION_INTERVAL_S}s\n\
             rule_files:\n  - {rec:?}\n  - {alerts:?}\n\
             scrape_configs:\n  - job_name: funnelstream\n    scrape_interval: 2s\n    scrape_timeout: 2s\n    \
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
            format!("--storage.tsdb.path={}", tmp.join("data").display()),
            "--storage.tsdb.retention.time=15m".into(),
            format!("--web.listen-address={prom_addr}"),
            "--log.level=warn".into(),
        ]),
        tmp.join("prometheus.log"),
        PROMETHEUS_PKG,
    );

    // Every family has data once the history is in (on a busy machine that
    // takes a while after /readyz).
    engine.wait_history(Duration::from_secs(120));
    prometheus.assert_running();
    wait_until(
        "Prometheus to be ready",
        Duration::from_secs(30),
        || matches!(get(&prom_addr, "/-/ready"), Ok((200, _))),
        &mut [&mut prometheus],
    );
    // Five successful scrapes, so that rate(...[1m]) and deriv() have samples
    // (within a minute: under load a scrape of the firehose can time out).
    wait_until(
        "five successful scrapes",
        Duration::from_secs(60),
        || {
            query(
                &prom_addr,
                "sum_over_time(up{job=\"funnelstream\"}[1m]) >= 5",
            )
            .is_ok_and(|r| !r.is_empty())
        },
        &mut [&mut prometheus],
    );
    // Then a whole pass of every rule group (two recording, two alerting)
    // that started after those scrapes: the groups' offsets within the
    // evaluation interval differ, so one group having data says nothing of
    // the others. Prometheus sets this gauge to a pass's start once it ends.
    let scraped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    wait_until(
        "a pass of every rule group after the fifth scrape",
        Duration::from_secs(4 * EVALUATION_INTERVAL_S + 30),
        || {
            let Ok((200, own)) = get(&prom_addr, "/metrics") else {
                return false;
            };
            let passes: Vec<f64> = own
                .lines()
                .filter(|l| {
                    l.starts_with("prometheus_rule_group_last_evaluation_timestamp_seconds{")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            passes.len() == 4 && passes.iter().all(|&t| t > scraped_at)
        },
        &mut [&mut prometheus],
    );
    engine.assert_running();
    let ready_after = started.elapsed();

    let mut failures = Vec::new();
    let mut queried = 0;
    let mut check = |what: String, expr: &str, must_have_data: bool| {
        queried += 1;
        match query(&prom_addr, expr) {
            Ok(r) if r.is_empty() && must_have_data => failures.push(format!(
                "{what}: empty result\n    {}",
                expr.replace('\n', "\n    ")
            )),
            Ok(_) => {}
            Err(e) => failures.push(format!("{what}: {e}\n    {}", expr.replace('\n', "\n    "))),
        }
    };

    // What the running demo exposes: each raw selector a query reads
    // (through the recording rules it uses) probed once. A query may come
    // back empty only while a METRICS.md v2 family or a calendar window it
    // reads is not exposed yet (the engine of issues 18 and 19); it is
    // checked for data as soon as everything it reads is there.
    let rule_map: BTreeMap<String, String> =
        record_exprs(&read(RECORDING_RULES)).into_iter().collect();
    let mut probes: BTreeMap<String, bool> = BTreeMap::new();
    let mut waiting_for_v2 = |expr: &str| -> Option<Vec<String>> {
        let mut reads = BTreeSet::new();
        raw_reads(expr, &rule_map, &mut reads);
        let mut missing = Vec::new();
        let mut v1_missing = false;
        for (name, sel) in reads {
            let probe = match &sel {
                Some(s) => format!("count({name}{{{s}}})"),
                None => format!("count({name})"),
            };
            let present = *probes
                .entry(probe.clone())
                .or_insert_with(|| query(&prom_addr, &probe).is_ok_and(|r| !r.is_empty()));
            if !present {
                let calendar = sel
                    .as_deref()
                    .and_then(selector_window)
                    .is_some_and(|w| CALENDAR_WINDOWS.contains(&w));
                v1_missing |= !(is_v2(&name) || calendar);
                missing.push(probe);
            }
        }
        (!missing.is_empty() && !v1_missing).then_some(missing)
    };
    let mut waiting = Vec::new();
    let mut unlisted = Vec::new();

    let dash = dashboard();
    for (title, refid, expr) in dashboard_targets(&dash) {
        let what = format!("dashboard panel {title:?} [{refid}]");
        let expr = substitute(&expr);
        if let Some(missing) = waiting_for_v2(&expr) {
            if V2_PANELS.contains(&title.as_str()) {
                waiting.push(format!("{what}: {}", missing.join(", ")));
            } else {
                unlisted.push(format!(
                    "{what} reads v2 series the demo does not expose ({}) but is not in V2_PANELS",
                    missing.join(", ")
                ));
            }
            continue;
        }
        check(what, &expr, true);
    }
    let rules = recording_rule_names(&read(RECORDING_RULES));
    assert_eq!(rules.len(), 236, "recording rules");
    for name in &rules {
        if let Some(missing) = waiting_for_v2(name) {
            waiting.push(format!("recording rule {name}: {}", missing.join(", ")));
            continue;
        }
        check(format!("recording rule {name}"), name, true);
    }
    let shipped = alert_exprs(&read(ALERT_RULES));
    assert_eq!(shipped.len(), 15, "alerts in {ALERT_RULES}");
    for (name, expr) in &shipped {
        // With the default thresholds, whether an alert holds depends on the
        // demo's random data: only check that the query is valid.
        check(format!("alert {name} (default thresholds)"), expr, false);
    }
    let permissive = alert_exprs(&rendered);
    let mut alerts_waiting = BTreeSet::new();
    for (name, expr) in &permissive {
        if let Some(missing) = waiting_for_v2(expr) {
            waiting.push(format!("alert {name}: {}", missing.join(", ")));
            alerts_waiting.insert(name.clone());
            check(format!("alert {name} (permissive thresholds)"), expr, false);
            continue;
        }
        let must = !ALERTS_QUIET_ON_DEMO.contains(&name.as_str());
        check(format!("alert {name} (permissive thresholds)"), expr, must);
    }
    failures.extend(unlisted);
    if !waiting.is_empty() {
        eprintln!(
            "deploy e2e: {} queries wait for METRICS.md v2 series the demo does not expose yet \
             (checked for data once it does):\n  {}",
            waiting.len(),
            waiting.join("\n  ")
        );
    }
    let queries_done = started.elapsed();

    // The rendered alerts fire (for: 0s), FunnelCACHigh first of all.
    let expected: BTreeSet<String> = permissive
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !ALERTS_QUIET_ON_DEMO.contains(&n.as_str()) && !alerts_waiting.contains(n))
        .collect();
    let mut firing = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, body)) = get(&prom_addr, "/api/v1/alerts") {
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

    // Every recorded series is written once per evaluation: no rule collides
    // with another (or with itself, evaluated twice at one timestamp), and
    // no rule fails to evaluate. Prometheus only logs these (--log.level=warn).
    let problems =
        rule_manager_problems(&std::fs::read_to_string(&prometheus.log).unwrap_or_default());
    if !problems.is_empty() {
        let own = get(&prom_addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let timing: Vec<&str> = own
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_rule_group_last_duration_seconds")
                    || l.starts_with("prometheus_rule_group_iterations_missed_total")
            })
            .collect();
        failures.push(format!(
            "Prometheus's rule manager logged {} problem(s) (group timing: {}):\n  {}",
            problems.len(),
            timing.join("; "),
            problems.join("\n  ")
        ));
    }

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
