//! Everything the integration tests share: the Kafka broker
//! ([`broker`], also used by the benches), the HTTP client ([`http`]), the
//! running engine ([`engine`]), Prometheus' tools ([`prometheus`]), a
//! terminal ([`tmux`]), a test's temporary files ([`scratch`]), running the
//! binary and outside tools once, and the comparison of expositions.
#![allow(dead_code)]

mod broker;
pub mod engine;
pub mod http;
pub mod prometheus;
pub mod scratch;
pub mod tmux;

pub use broker::{block_on, free_port, Broker};
pub use engine::Engine;
pub use http::{http_get, try_http_get};
pub use prometheus::promtool_check;
pub use scratch::Scratch;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_funnelstream");

/// A path in the repository.
pub fn manifest(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A file of the repository, which must exist.
pub fn read(p: &str) -> String {
    std::fs::read_to_string(manifest(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

/// The built binary, run from the repository's root with no
/// `FUNNELSTREAM_*` variables inherited, so only the given flags and
/// defaults apply.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUNNELSTREAM_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `funnelstream ARGS` (see [`command`]) to its end: its output.
pub fn funnelstream(args: &[&str]) -> Output {
    command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

/// `funnelstream replay --clock event --from FILE EXTRA`, which must exit
/// 0; its stdout.
pub fn replay_with(file: &Path, extra: &[&str]) -> String {
    let out = command()
        .args(["replay", "--clock", "event", "--from"])
        .arg(file)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    assert!(
        out.status.success(),
        "`funnelstream replay --clock event --from {} {}` failed\n{}",
        file.display(),
        extra.join(" "),
        show(&out)
    );
    String::from_utf8(out.stdout).expect("replay stdout is not UTF-8")
}

/// `funnelstream replay --clock event --from FILE`; see [`replay_with`].
pub fn replay(file: &Path) -> String {
    replay_with(file, &[])
}

/// `funnelstream produce` of a whole file, which must succeed.
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

/// Runs a tool, turning "not installed" into a message that says what to
/// install.
pub fn run_tool(cmd: &mut Command, tool: &str, install: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{tool}` is not on PATH: {install}")
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

/// `python3 ARGS` in the repository's root (the golden reference, the
/// realistic generator, the chart and alert tools).
pub fn python(args: &[&str]) -> Output {
    run_tool(
        Command::new("python3")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null()),
        "python3",
        "install Python 3 (`apt-get install python3`; scripts/test does)",
    )
}

/// `openssl ARGS` in `dir` (throw-away certificates), which must succeed.
pub fn openssl(d: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed (Debian package openssl)")
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A finished command's exit code, stdout and stderr, for a failure message.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// All tests run in one process, two at a time by default. Those that keep
/// the machine busy (property tests, large replays) and those whose
/// timeouts assume a calm one (Prometheus scraping every second) hold this
/// guard, so that no two of them run at once.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stdout of a finished command, which must have exited 0.
pub fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 300 ms until it is `Ok`, for at most `secs`; panics
/// with `what` and the last `Err` after that.
pub fn wait_until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
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

/// Per-instance facts, not sums of events: several instances' values do
/// not add up to one engine's (build, the series budget setting).
pub const PER_INSTANCE: &[&str] = &["funnel_build_info", "funnel_series_budget"];

/// Series lines keyed by `name{labels}`, without the live-only families
/// and the per-instance facts.
pub fn series(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| {
            !PER_INSTANCE.iter().any(|p| l.starts_with(p))
                && !LIVE_ONLY.iter().any(|p| l.starts_with(p))
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

/// Windowed KPIs new in METRICS.md v2 computed in floating point at render
/// time.
pub const V2_WINDOWED_FLOAT_KPIS: &[&str] = &[
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
];

/// Whether a family is a KPI computed in floating point (METRICS.md); every
/// other series of a replay is an integer count or exact money.
pub fn is_float_kpi(name: &str) -> bool {
    // funnel_arpa: the one current (not windowed) KPI computed so.
    V1_WINDOWED_KPIS.contains(&name)
        || V2_WINDOWED_FLOAT_KPIS.contains(&name)
        || name == "funnel_arpa"
}
