//! `funnelstream tail`: follows a running engine's KPIs in the terminal,
//! through its public HTTP API only: `/api/v1/kpis` (one snapshot) and
//! `/api/v1/kpis/stream` (server-sent events), plus `/readyz` and the
//! health counters of `/metrics` for the status line.
//!
//! Modes: on a terminal, a full-screen board (`screen.rs`: one row per
//! channel, campaign or both, the headline KPIs of one window as columns);
//! `--once` prints that board once as plain text; `--changes` prints the
//! old line per changed series (and, with `--once`, one row per series),
//! as does `--metric` (one metric is a list of series, not a board).
//! When stdout is not a terminal and neither flag is given, `tail` behaves
//! as `--changes`, which is what a pipe can use.
//!
//! When the engine goes away (the stream ends, the connection drops, or the
//! engine announces `event: shutdown`), `tail` says so on stderr and exits
//! 1, unless `--follow` asks it to reconnect with backoff.
//!
//! `run` returns a [`TailError`]; `crate::error::Error` (through the `From`
//! below) knows its exit code: 2 for an invalid flag (malformed, or a
//! `--metric` or `--window` the engine says it does not publish), 1 for
//! the rest.

pub mod board;
pub mod feed;
pub mod screen;

use crate::config::ConfigError;
use crate::export::api::{KpiSeries, Snapshot};
use board::{Settings, Store, View};
use clap::Args;
use feed::Msg;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct TailArgs {
    /// TOML file of these settings, keyed by the flags' names with `_`
    /// (`max_series = 1000`); flag > env > file > default. Keys of other
    /// commands are ignored, so one file can serve them all.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The engine's HTTP address.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9490",
        env = "FUNNELSTREAM_URL"
    )]
    pub url: String,
    /// Print the board once as plain text and exit (with --changes: one row
    /// per series).
    #[arg(long, env = "FUNNELSTREAM_ONCE")]
    pub once: bool,
    /// One line per changed series instead of the board (the default when
    /// stdout is not a terminal).
    #[arg(long, env = "FUNNELSTREAM_CHANGES")]
    pub changes: bool,
    /// Reconnect when the engine goes away (restarts, rolling updates),
    /// retrying with backoff, instead of exiting 1.
    #[arg(long, env = "FUNNELSTREAM_FOLLOW")]
    pub follow: bool,
    /// Only this metric: implies --changes (the board has fixed columns).
    #[arg(long, value_name = "NAME", env = "FUNNELSTREAM_METRIC")]
    pub metric: Option<String>,
    /// Only this window (--changes); on the board, the window shown first
    /// [default: 30d as on the board, else 1d, else the shortest served].
    #[arg(long, value_name = "W", env = "FUNNELSTREAM_WINDOW")]
    pub window: Option<String>,
    /// Only the series of this channel (the API's `channel` filter).
    #[arg(long, value_name = "C", env = "FUNNELSTREAM_CHANNEL")]
    pub channel: Option<String>,
    /// Only the series of this campaign (the API's `campaign` filter).
    #[arg(long, value_name = "C", env = "FUNNELSTREAM_CAMPAIGN")]
    pub campaign: Option<String>,
    /// Board rows: channel, campaign or channel/campaign [default: channel].
    #[arg(long, value_name = "VIEW", env = "FUNNELSTREAM_BY")]
    pub by: Option<String>,
    /// Board column to sort by (header or metric name; descending, the
    /// labels ascending) [default: SPEND].
    #[arg(long, value_name = "COLUMN", env = "FUNNELSTREAM_SORT")]
    pub sort: Option<String>,
    /// Seconds between updates when following.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1.0,
        env = "FUNNELSTREAM_INTERVAL"
    )]
    pub interval: f64,
    /// Basic-auth user (the password from FUNNELSTREAM_PASSWORD).
    #[arg(long, value_name = "USER", env = "FUNNELSTREAM_USER")]
    pub user: Option<String>,
    /// PEM file of the CA that signed the engine's certificate (https://
    /// URLs with a private CA).
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CA_CERT")]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
}

/// How a request failed (each message starts with the URL).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fetch {
    /// Connection refused, reset, timed out: the engine may come back.
    #[error("{0}")]
    Transport(String),
    /// HTTP 5xx (e.g. `/readyz` not ready): the body says why.
    #[error("{0}")]
    Server(String),
    /// HTTP 4xx or a bad URL: retrying cannot help.
    #[error("{0}")]
    Client(String),
    /// The `--ca-cert` file cannot be read or holds no usable certificate.
    #[error("--ca-cert {path}: {problem}")]
    CaCert { path: String, problem: String },
    /// The API's 400 for a filter of ours (`metric`, `window`, `interval`)
    /// it refuses, e.g. a family it does not publish: an invalid setting
    /// (exit 2), told in the engine's words.
    #[error("{key}: {problem}")]
    Setting { key: &'static str, problem: String },
}

/// Why `tail` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TailError {
    /// A flag with an invalid value (exit 2).
    #[error(transparent)]
    Usage(#[from] ConfigError),
    /// A request that retrying cannot fix (auth, a bad URL or CA file), or
    /// the one request of `--once`.
    #[error(transparent)]
    Fetch(#[from] Fetch),
    /// The snapshot of `/api/v1/kpis` is not the API's JSON.
    #[error("{0}")]
    Snapshot(#[from] serde_json::Error),
    /// The engine went away and `--follow` was not given.
    #[error("the engine at {url} went away: {reason}")]
    Gone { url: String, reason: String },
    /// The engine could not be reached at all (the board, before any
    /// connection): the reason names the URL.
    #[error("{0}")]
    Unreachable(String),
    /// The stream's reader stopped without saying why.
    #[error("the engine at {0} went away")]
    Ended(String),
    #[error("cannot use the terminal: {0}")]
    Terminal(std::io::Error),
    #[error("drawing: {0}")]
    Draw(std::io::Error),
    #[error("terminal: {0}")]
    Input(std::io::Error),
}

impl From<TailError> for crate::error::Error {
    fn from(e: TailError) -> Self {
        match e {
            TailError::Usage(e) => crate::error::Error::Config(e),
            TailError::Fetch(Fetch::Setting { key, problem }) => {
                crate::error::Error::Config(ConfigError::invalid(key, problem))
            }
            e => crate::error::Error::Command {
                command: "tail",
                source: Box::new(e),
            },
        }
    }
}

fn agent(args: &TailArgs, streaming: bool) -> Result<ureq::Agent, Fetch> {
    // The stream sends a keep-alive comment every 15 s: a silent minute
    // means the engine is gone without having closed the connection.
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(if streaming { 60 } else { 30 }));
    if let Some(ca) = &args.ca_cert {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad = |problem: &dyn std::fmt::Display| Fetch::CaCert {
            path: ca.display().to_string(),
            problem: problem.to_string(),
        };
        let data = std::fs::read(ca).map_err(|e| bad(&e))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &data[..]) {
            let c = c.map_err(|e| bad(&e))?;
            roots.add(c).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"holds no PEM certificate"));
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        b = b.tls_config(std::sync::Arc::new(cfg));
    }
    Ok(b.build())
}

/// The API filters of the flags: `metric` and `window` only when asked for
/// (the board needs every metric and window).
fn query(args: &TailArgs, metric_and_window: bool) -> Vec<(&'static str, String)> {
    let mut q = vec![("interval", args.interval.to_string())];
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    };
    if metric_and_window {
        add("metric", &args.metric);
        add("window", &args.window);
    }
    add("channel", &args.channel);
    add("campaign", &args.campaign);
    q
}

pub fn request(
    args: &TailArgs,
    path: &str,
    query: &[(&str, String)],
    streaming: bool,
) -> Result<ureq::Response, Fetch> {
    let mut req = agent(args, streaming)?.get(&format!("{}{path}", args.url.trim_end_matches('/')));
    if !query.is_empty() {
        // Percent-encoded by ureq (form-urlencoded, as the API's query
        // parser expects).
        req = req.query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    let url = req.url().to_string();
    if let Some(user) = &args.user {
        use base64::Engine as _;
        let password = std::env::var("FUNNELSTREAM_PASSWORD").unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.set("Authorization", &format!("Basic {token}"));
    }
    req.call().map_err(|e| match e {
        ureq::Error::Status(401, _) => Fetch::Client(format!(
            "{url}: 401 unauthorized (check --user and FUNNELSTREAM_PASSWORD)"
        )),
        ureq::Error::Status(code, r) => {
            let text = r.status_text().to_string();
            let body = r.into_string().unwrap_or_default();
            let body = body.trim();
            // The API names the parameter it refuses (`metric: ...`).
            let refused = ["metric", "window", "interval"]
                .into_iter()
                .find_map(|key| {
                    let problem = body.strip_prefix(key)?.strip_prefix(": ")?;
                    query
                        .iter()
                        .any(|(k, _)| *k == key)
                        .then_some((key, problem))
                });
            if let (400, Some((key, problem))) = (code, refused) {
                return Fetch::Setting {
                    key,
                    problem: format!(
                        "the engine at {} says: {problem}",
                        args.url.trim_end_matches('/')
                    ),
                };
            }
            let m = if body.is_empty() {
                format!("{url}: HTTP {code} {text}")
            } else {
                format!("{url}: HTTP {code} {text}: {body}")
            };
            if code >= 500 {
                Fetch::Server(m)
            } else {
                Fetch::Client(m)
            }
        }
        ureq::Error::Transport(t) => {
            // ureq's message starts with the URL when it knows it: say it once.
            let m = match t.url() {
                Some(_) => t.to_string(),
                None => format!("{url}: {t}"),
            };
            match t.kind() {
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => Fetch::Client(m),
                _ => Fetch::Transport(m),
            }
        }
    })
}

/// `metric{channel="..",campaign="..",window=".."}`
pub(crate) fn series_name(s: &KpiSeries) -> String {
    let mut labels: Vec<(&String, &String)> = s.labels.iter().collect();
    // channel, campaign first, then the extra label.
    labels.sort_by_key(|(k, _)| match k.as_str() {
        "channel" => 0,
        "campaign" => 1,
        _ => 2,
    });
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{}{{{}}}", s.metric, inner.join(","))
}

pub(crate) fn format_value(v: Option<f64>) -> String {
    match v {
        None => "gone".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => {
            let s = format!("{x:.6}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

/// The table of a snapshot, aligned.
pub fn table(s: &Snapshot) -> String {
    let rows: Vec<[String; 5]> = s
        .series
        .iter()
        .map(|k| {
            let extra = k
                .labels
                .iter()
                .find(|(l, _)| !matches!(l.as_str(), "channel" | "campaign"))
                .map(|(l, v)| {
                    if l == "window" {
                        v.clone()
                    } else {
                        format!("{l}={v}")
                    }
                })
                .unwrap_or_default();
            [
                k.metric.clone(),
                k.labels.get("channel").cloned().unwrap_or_default(),
                k.labels.get("campaign").cloned().unwrap_or_default(),
                extra,
                format_value(k.value),
            ]
        })
        .collect();
    let head = ["METRIC", "CHANNEL", "CAMPAIGN", "WINDOW", "VALUE"].map(String::from);
    let mut width = [0usize; 5];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 4 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The board's starting settings from the flags; `Err`: a usage error
/// (exit 2).
fn settings(args: &TailArgs) -> Result<Settings, ConfigError> {
    let view = match &args.by {
        Some(v) => v
            .parse::<View>()
            .map_err(|e| ConfigError::invalid("by", e.to_string()))?,
        None => View::Channel,
    };
    let sort = args.sort.clone().unwrap_or_else(|| "SPEND".into());
    let sort = board::column_index(&sort).ok_or_else(|| {
        let names: Vec<&str> = board::COLUMNS.iter().map(|c| c.metric).collect();
        ConfigError::invalid(
            "sort",
            format!(
                "`{sort}` is not a column of the board ({}); --metric follows any metric",
                names.join(", ")
            ),
        )
    })?;
    Ok(Settings {
        view,
        window: args.window.clone().unwrap_or_default(),
        sort,
        descending: sort != 0,
        filter: String::new(),
    })
}

/// The window to show: the one asked for, else 30d (as the board: a B2B
/// funnel has every KPI over a month, while a day, on a Monday morning,
/// may hold no deal), else 1d, else the shortest.
pub(crate) fn pick_window(asked: &str, served: &[String]) -> String {
    if !asked.is_empty() {
        return asked.to_string();
    }
    ["30d", "1d"]
        .into_iter()
        .find(|w| served.iter().any(|s| s == w))
        .map(String::from)
        .or_else(|| served.first().cloned())
        .unwrap_or_default()
}

/// The flags checked before anything connects: a bad one is a usage
/// error (exit 2) naming it, not a failed request (exit 1).
fn check(args: &TailArgs) -> Result<(), ConfigError> {
    use crate::export::api::INTERVALS;
    if !INTERVALS.contains(&args.interval) {
        return Err(ConfigError::invalid(
            "interval",
            format!(
                "`{}` is not a number of seconds from {} to {}",
                args.interval,
                INTERVALS.start(),
                INTERVALS.end()
            ),
        ));
    }
    let bad_url = |why: String| {
        ConfigError::invalid(
            "url",
            format!(
                "`{}` {why}: use http://HOST:PORT or https://HOST:PORT",
                args.url
            ),
        )
    };
    let url = ureq::get(&args.url)
        .request_url()
        .map_err(|e| bad_url(format!("is not a URL ({})", e.kind())))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_url(format!("has scheme `{}`", url.scheme())));
    }
    if url.host().is_empty() {
        return Err(bad_url("has no host".into()));
    }
    if url.as_url().query().is_some() || url.as_url().fragment().is_some() {
        return Err(bad_url("has a query or fragment".into()));
    }
    for (key, v) in [
        ("metric", &args.metric),
        ("window", &args.window),
        ("channel", &args.channel),
        ("campaign", &args.campaign),
        ("user", &args.user),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ConfigError::invalid(key, "empty value"));
        }
    }
    // Any metric name: the engine says whether it publishes the family (a
    // `tail` older than the engine follows the families added since).
    if let Some(m) = args.metric.as_deref().filter(|m| !is_metric_name(m)) {
        return Err(ConfigError::invalid(
            "metric",
            format!(
                "`{m}` is not a metric name (letters, digits, `_` and `:`, not starting \
                 with a digit; like funnel_clicks)"
            ),
        ));
    }
    settings(args)?;
    match agent(args, false) {
        Err(Fetch::CaCert { path, problem }) => Err(ConfigError::invalid(
            "ca_cert",
            format!("{path}: {problem}"),
        )),
        _ => Ok(()),
    }
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(m: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':');
    m.starts_with(|c: char| word(c) && !c.is_ascii_digit()) && m.chars().all(word)
}

/// Says on stderr when `--metric` has no series (yet): a family the engine
/// publishes but that nothing has fed, or, from an engine older than the
/// API's check, one it does not publish at all; not a silent empty table.
fn say_if_empty(args: &TailArgs, s: &Snapshot) {
    if let (Some(m), true) = (&args.metric, s.series.is_empty()) {
        eprintln!(
            "funnelstream tail: the engine at {} has no series of {m} (yet)",
            args.url.trim_end_matches('/')
        );
    }
}

pub fn run(args: &TailArgs) -> Result<(), TailError> {
    check(args)?;
    // One metric is a list of series, not a board.
    let changes =
        args.changes || args.metric.is_some() || (!args.once && !std::io::stdout().is_terminal());
    if changes {
        return if args.once {
            once_series(args)
        } else {
            follow_changes(args)
        };
    }
    let settings = settings(args)?;
    if args.once {
        once_board(args, settings)
    } else {
        screen::run(args, settings)
    }
}

fn snapshot(args: &TailArgs, q: &[(&'static str, String)]) -> Result<Snapshot, TailError> {
    let r = request(args, "/api/v1/kpis", q, false)?;
    Ok(serde_json::from_reader::<_, Snapshot>(r.into_reader())?)
}

/// `--once`: the board as plain text.
fn once_board(args: &TailArgs, mut s: Settings) -> Result<(), TailError> {
    let snap = snapshot(args, &query(args, false))?;
    let mut store = Store::default();
    store.apply(&snap, true);
    let served = store.windows();
    s.window = pick_window(&s.window, &served);
    if !served.is_empty() && !served.contains(&s.window) {
        return Err(ConfigError::invalid(
            "window",
            format!(
                "`{}` is not served (served: {})",
                s.window,
                served.join(", ")
            ),
        )
        .into());
    }
    let _ = std::io::stdout()
        .lock()
        .write_all(board::text(&args.url, &store, &s).as_bytes());
    Ok(())
}

/// `--once --changes`: one row per series.
fn once_series(args: &TailArgs) -> Result<(), TailError> {
    let s = snapshot(args, &query(args, true))?;
    say_if_empty(args, &s);
    let _ = std::io::stdout().lock().write_all(table(&s).as_bytes());
    Ok(())
}

/// `--changes`: the table of the first snapshot, then one line per changed
/// series (in colour on a terminal).
fn follow_changes(args: &TailArgs) -> Result<(), TailError> {
    let colour = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (a, q, follow) = (args.clone(), query(args, true), args.follow);
        std::thread::spawn(move || feed::stream(a, q, follow, tx));
    }
    let mut last: HashMap<String, Option<f64>> = HashMap::new();
    let mut first = true;
    let mut retrying = false;
    for msg in rx {
        let (snap, full) = match msg {
            Msg::Snapshot(s) => (s, true),
            Msg::Changes(s) => (s, false),
            Msg::Retrying {
                attempt,
                wait,
                reason,
            } => {
                eprintln!(
                    "funnelstream tail: the engine went away ({reason}); reconnecting in {:.1}s (attempt {attempt})",
                    wait.as_secs_f64()
                );
                retrying = true;
                continue;
            }
            // Never reached (no snapshot yet): not "went away", as on the board.
            Msg::Gone(reason) if first => return Err(TailError::Unreachable(reason)),
            Msg::Gone(reason) => {
                return Err(TailError::Gone {
                    url: args.url.clone(),
                    reason,
                })
            }
            Msg::Fatal(e) => return Err(e.into()),
            Msg::Health(_) => continue,
        };
        if retrying && full {
            eprintln!("funnelstream tail: reconnected to {}", args.url);
            retrying = false;
        }
        let text = if first {
            first = false;
            say_if_empty(args, &snap);
            table(&snap)
        } else {
            let mut series = snap.series.clone();
            if full {
                // A new connection: what changed while away, and what is
                // no longer there.
                let ids: std::collections::HashSet<String> =
                    series.iter().map(|s| s.id()).collect();
                series.retain(|s| last.get(&s.id()) != Some(&s.value));
                for (id, v) in &last {
                    if v.is_some() && !ids.contains(id) {
                        series.push(gone_series(id));
                    }
                }
            }
            change_lines(&snap, &series, &last, colour)
        };
        if full {
            last.clear();
        }
        for s in &snap.series {
            last.insert(s.id(), s.value);
        }
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
    }
    Err(TailError::Ended(args.url.clone()))
}

/// A series known only by its id (`metric,k=v,...`), gone.
fn gone_series(id: &str) -> KpiSeries {
    let mut parts = id.split(',');
    let metric = parts.next().unwrap_or_default().to_string();
    KpiSeries {
        metric,
        labels: parts
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: None,
    }
}

fn change_lines(
    snap: &Snapshot,
    series: &[KpiSeries],
    last: &HashMap<String, Option<f64>>,
    colour: bool,
) -> String {
    let time = crate::decode::time::format_rfc3339_ms(snap.now);
    let hms = time.get(11..19).unwrap_or("").to_string();
    let mut t = String::new();
    for s in series {
        let before = last.get(&s.id()).copied().flatten();
        let (on, off) = match (colour, before, s.value) {
            (false, _, _) => ("", ""),
            (true, _, None) => ("\x1b[2m", "\x1b[0m"),
            (true, Some(b), Some(a)) if a > b => ("\x1b[32m", "\x1b[0m"),
            (true, Some(b), Some(a)) if a < b => ("\x1b[31m", "\x1b[0m"),
            (true, _, _) => ("\x1b[1m", "\x1b[0m"),
        };
        t.push_str(&format!(
            "{hms}  {}  {on}{}{off}\n",
            series_name(s),
            format_value(s.value)
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_opens_on_30d_like_the_web_board() {
        let ws = |l: &[&str]| l.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let six = ws(&["5m", "1h", "1d", "7d", "30d", "90d"]);
        assert_eq!(pick_window("", &six), "30d");
        assert_eq!(pick_window("7d", &six), "7d");
        assert_eq!(pick_window("", &ws(&["5m", "1d"])), "1d");
        assert_eq!(pick_window("", &ws(&["1h", "7d"])), "1h");
        assert_eq!(pick_window("", &[]), "");
    }

    /// `--metric` takes any Prometheus metric name (the engine decides
    /// which it publishes), nothing else.
    #[test]
    fn metric_names_are_prometheus_names() {
        for ok in [
            "funnel_clicks",
            "funnel_kpi_from_a_newer_engine",
            "_x",
            "a:b",
            "A9",
        ] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in [
            "",
            " funnel_clicks",
            "funnel clicks",
            "funnel-clicks",
            "9x",
            "ü",
            "a{b}",
        ] {
            assert!(!is_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn values_print_compactly() {
        assert_eq!(format_value(Some(12.0)), "12");
        assert_eq!(format_value(Some(0.125)), "0.125");
        assert_eq!(format_value(Some(1.0 / 3.0)), "0.333333");
        assert_eq!(format_value(None), "gone");
    }
}
