//! Command line (CLI.md): argument parsing, settings resolution
//! (flag > `FUNNELSTREAM_*` env > `--config` TOML file > default) and the
//! commands. `main.rs` only calls [`main`].

use crate::config::{
    format_duration_ms, parse_duration_ms, parse_windows, ClockMode, ConfigError, EngineConfig,
};
pub(crate) use crate::logging::LogFormat;

/// The defaults of the settings that are not engine settings (those are
/// `EngineConfig::default()`), each defined here only.
pub mod defaults {
    pub(crate) const BROKERS: &str = "127.0.0.1:9092";
    pub(crate) const TOPIC: &str = "funnel-events";
    pub(crate) const GROUP: &str = "funnelstream";
    /// `--listen` of `run` and `check-config`.
    pub(crate) const LISTEN: &str = "0.0.0.0:9490";
    /// `--listen` of `demo`.
    pub(crate) const DEMO_LISTEN: &str = "127.0.0.1:9490";
    pub(crate) const CHECKPOINT_INTERVAL_MS: i64 = 30_000;
    /// The longest history `demo` writes (`--history`, in days): see
    /// `demo::MAX_HISTORY_DAYS`.
    pub(crate) const MAX_HISTORY_DAYS: u64 = 179;
}
use crate::settings::{layer, ChannelOrigins, Properties, Settings};
use crate::source::checkpoint::{CheckpointSettings, Policy};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "funnelstream",
    version,
    about = "Exact rolling-window marketing and sales KPIs, from Kafka to Prometheus"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where each setting was given, for the messages of invalid ones.
    #[arg(skip)]
    pub(crate) given: Given,
}

/// Where the settings of a parsed command line were given: each flag or
/// `FUNNELSTREAM_*` variable (by its setting's key), and the `--config`
/// file for the rest. An invalid setting is told with its key and where
/// it came from (`max_series (--max-series)`, `max_series
/// (FUNNELSTREAM_MAX_SERIES)`, `max_series (funnel.toml)`), so the message
/// names what to fix (CLI.md: "names the key and the problem").
#[derive(Debug, Clone, Default)]
pub(crate) struct Given {
    /// Setting key, `--flag` or `FUNNELSTREAM_VAR`.
    routes: Vec<(String, String)>,
    file: Option<PathBuf>,
}

impl Given {
    fn of(sub: &clap::Command, matches: &clap::ArgMatches) -> Given {
        use clap::parser::ValueSource;
        let mut routes = Vec::new();
        for a in sub.get_arguments() {
            let id = a.get_id().as_str();
            let route = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => a.get_long().map(|l| format!("--{l}")),
                Some(ValueSource::EnvVariable) => {
                    a.get_env().map(|e| e.to_string_lossy().into_owned())
                }
                _ => None,
            };
            if let Some(route) = route {
                routes.push((id.to_string(), route));
            }
        }
        Given {
            routes,
            file: matches.get_one::<PathBuf>("config").cloned(),
        }
    }

    /// `e` with where its key's value was given: a flag, a variable, else
    /// the file (defaults are valid).
    pub(crate) fn tell(&self, e: ConfigError) -> ConfigError {
        let key = e.key().split(": ").next().unwrap_or_default().to_string();
        if let Some((_, route)) = self.routes.iter().find(|(k, _)| *k == key) {
            return e.given_by(route);
        }
        match &self.file {
            Some(p) => e.given_by(&p.display().to_string()),
            _ => e,
        }
    }
}

/// A value clap's parser refused (`--history x`, `FUNNELSTREAM_ONCE=maybe`,
/// or one of our parsers' [`ConfigError`]s): the flag's long name and the
/// problem, without clap's usage text.
fn refused_value(e: &clap::Error) -> Option<(String, String)> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg
        .split([' ', '='])
        .next()?
        .strip_prefix("--")?
        .to_string();
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let source = std::error::Error::source(e);
    let problem = match (source.and_then(|s| s.downcast_ref::<ConfigError>()), source) {
        (Some(c), _) => c.problem(),
        (None, Some(s)) => format!("`{value}`: {s}"),
        (None, None) => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) if !valid.is_empty() => {
                format!("`{value}` is not one of: {}", valid.join(", "))
            }
            _ if value.is_empty() => "a value is needed".into(),
            _ => format!("`{value}` is not valid"),
        },
    };
    Some((long, problem))
}

/// The setting whose value is not UTF-8 (clap names none), and where it
/// was given: `--flag=VALUE`, `--flag VALUE` or a variable.
fn not_utf8<'a>(
    sub: &'a clap::Command,
    argv: &[std::ffi::OsString],
) -> Option<(&'a clap::Arg, String)> {
    let by_long = |long: &str| sub.get_arguments().find(|a| a.get_long() == Some(long));
    for (i, a) in argv.iter().enumerate().skip(2) {
        if a.to_str().is_some() {
            continue;
        }
        let bytes = a.as_encoded_bytes();
        let long = match bytes.strip_prefix(b"--") {
            Some(rest) => rest.split(|&b| b == b'=').next().unwrap_or_default(),
            None => argv[i - 1].to_str()?.strip_prefix("--")?.as_bytes(),
        };
        let arg = by_long(std::str::from_utf8(long).ok()?)?;
        return Some((arg, format!("--{}", arg.get_long()?)));
    }
    sub.get_arguments().find_map(|a| {
        let env = a.get_env()?;
        let bad = std::env::var_os(env).is_some_and(|v| v.to_str().is_none());
        bad.then(|| (a, env.to_string_lossy().into_owned()))
    })
}

/// Why the command line `argv` does not parse: a refused value is an
/// invalid setting (exit 2) naming its key and the flag or variable that
/// gave it; anything else (usage, `--help`) is clap's to tell.
fn refused(e: clap::Error, cmd: &clap::Command, argv: &[std::ffi::OsString]) -> crate::Error {
    let sub = argv
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| cmd.find_subcommand(a));
    if let (clap::error::ErrorKind::InvalidUtf8, Some(sub)) = (e.kind(), sub) {
        if let Some((arg, route)) = not_utf8(sub, argv) {
            return ConfigError::invalid(arg.get_id().as_str(), "the value is not UTF-8")
                .given_by(&route)
                .into();
        }
    }
    let Some(((long, problem), sub)) = refused_value(&e).zip(sub) else {
        return e.into();
    };
    let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(&long)) else {
        return e.into();
    };
    let flag = format!("--{long}");
    let on_line = argv[2..]
        .iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let route = match arg.get_env() {
        Some(env) if !on_line && std::env::var_os(env).is_some() => {
            env.to_string_lossy().into_owned()
        }
        _ => flag,
    };
    ConfigError::invalid(arg.get_id().as_str(), problem)
        .given_by(&route)
        .into()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume from Kafka, aggregate, serve /metrics until SIGTERM/SIGINT,
    /// then drain, checkpoint (with --checkpoint-topic), commit and exit 0.
    Run(RunArgs),
    /// The embedded default: an in-process Kafka-protocol broker, a
    /// realistic synthetic event stream, and the engine on it, serving
    /// /metrics and the KPI board on 127.0.0.1:9490; needs nothing installed.
    Demo(DemoArgs),
    /// Write synthetic or file-supplied events to a Kafka topic.
    Produce(ProduceArgs),
    /// Read events from a file (one JSON event a line; `-` for stdin), apply
    /// them exactly as `run` would, and print the /metrics exposition
    /// (deterministic with --clock event).
    Replay(ReplayArgs),
    /// Follow a running engine's KPIs live in the terminal.
    Tail(crate::tail::TailArgs),
    /// Validate the configuration and print the effective settings.
    CheckConfig(RunArgs),
}

/// The commands whose `--config` file the command line layers in itself
/// ([`parse_args`]); `run`, `replay` and `check-config` read theirs as
/// typed [`Settings`].
const LAYERED: [&str; 3] = ["demo", "produce", "tail"];

/// Parses the command line; for `demo`, `produce` and `tail` with their
/// `--config` file: each of its keys becomes the flag of that name unless
/// the command line or the environment sets it (flag > env > file >
/// default, CLI.md). A key no command has is an error naming it; a key of
/// another command is ignored, so that one file can serve them all.
pub fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<Cli, crate::Error> {
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut cli = Cli::try_parse_from(&argv).map_err(|e| refused(e, &cmd, &argv))?;
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| refused(e, &cmd, &argv))?;
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(cli);
    };
    let this = cmd.find_subcommand(name).expect("the parsed command");
    let given = Given::of(this, sub);
    let Some(path) = sub
        .get_one::<PathBuf>("config")
        .filter(|_| LAYERED.contains(&name))
    else {
        cli.given = given;
        return Ok(cli);
    };
    let file = path.display().to_string();
    let config = |problem: String| given.tell(ConfigError::invalid("config", problem));
    let text =
        std::fs::read_to_string(path).map_err(|e| config(format!("cannot read {file}: {e}")))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| config(format!("{file}: {}", e.to_string().trim())))?;
    let mut extra: Vec<String> = Vec::new();
    for (key, value) in &table {
        // `run`'s `[kafka]` table is `--kafka-property` too.
        let kafka;
        let (key, value) = match value {
            toml::Value::Table(t) if key == "kafka" => {
                kafka = toml::Value::Array(
                    t.iter()
                        .map(|(k, v)| {
                            toml::Value::String(format!("{k}={}", file_values(v, false)[0]))
                        })
                        .collect(),
                );
                ("kafka_property", &kafka)
            }
            _ => (key.as_str(), value),
        };
        let arg = this
            .get_arguments()
            .find(|a| a.get_id() == key && a.get_long().is_some());
        let Some(arg) = arg.filter(|_| key != "config") else {
            if key != "config" && known_elsewhere(&cmd, key) {
                continue;
            }
            return Err(ConfigError::invalid(key, "no such setting")
                .given_by(&file)
                .into());
        };
        if matches!(
            sub.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().expect("filtered on");
        let flag = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        for v in file_values(value, repeatable) {
            let args: Vec<String> = match (flag, v.as_str()) {
                (true, "true") => vec![format!("--{long}")],
                (true, "false") => vec![],
                (true, _) => {
                    return Err(
                        ConfigError::invalid(key, format!("`{v}` is not true or false"))
                            .given_by(&file)
                            .into(),
                    )
                }
                (false, _) => vec![format!("--{long}={v}")],
            };
            // Checked alone, so that a bad value is told as the file's key.
            let alone = [argv[0].clone(), name.into()]
                .into_iter()
                .chain(args.iter().map(Into::into));
            if let Err(e) = Cli::try_parse_from(alone) {
                let problem = match refused_value(&e) {
                    Some((_, problem)) => problem,
                    None => {
                        let told = e.to_string();
                        let first = told.lines().next().unwrap_or_default();
                        first.strip_prefix("error: ").unwrap_or(first).to_string()
                    }
                };
                return Err(ConfigError::invalid(key, problem).given_by(&file).into());
            }
            extra.extend(args);
        }
    }
    let mut cli = Cli::try_parse_from(
        argv.iter()
            .cloned()
            .chain(extra.into_iter().map(Into::into)),
    )
    .map_err(|e| refused(e, &cmd, &argv))?;
    cli.given = given;
    Ok(cli)
}

/// Whether a command other than the one parsed has the setting `key` (or
/// it is `run`'s `[kafka]` table).
fn known_elsewhere(cmd: &clap::Command, key: &str) -> bool {
    key == "kafka"
        || cmd
            .get_subcommands()
            .flat_map(|c| c.get_arguments())
            .any(|a| a.get_id() == key && a.get_long().is_some())
}

/// A file value as flag values: an array one value each (repeatable
/// flags) or joined by commas (lists), a table as `key=value` pairs.
fn file_values(v: &toml::Value, repeatable: bool) -> Vec<String> {
    fn one(v: &toml::Value) -> String {
        match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| format!("{k}={}", one(v)))
                .collect::<Vec<_>>()
                .join(","),
            toml::Value::Array(a) => a.iter().map(one).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        }
    }
    match v {
        toml::Value::Array(a) if repeatable => a.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// Settings of `run` (and `check-config`).
#[derive(Args, Serialize, Debug, Clone, Default)]
pub struct RunArgs {
    /// Kafka bootstrap servers [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT[,..]", env = "FUNNELSTREAM_BROKERS")]
    pub brokers: Option<String>,
    /// Topics to consume [default: funnel-events].
    #[arg(long, value_name = "T[,..]", env = "FUNNELSTREAM_TOPICS", value_parser = list)]
    pub topics: Option<List>,
    /// Consumer group id [default: funnelstream].
    #[arg(long, value_name = "ID", env = "FUNNELSTREAM_GROUP")]
    pub group: Option<String>,
    /// HTTP listen address for /metrics, /, /healthz, /readyz [default: 0.0.0.0:9490].
    #[arg(long, value_name = "ADDR:PORT", env = "FUNNELSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Topic receiving every rejected event unchanged, with headers
    /// funnelstream.reason and funnelstream.source.{topic,partition,offset}.
    #[arg(long, value_name = "T", env = "FUNNELSTREAM_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Compacted topic holding each partition's state: restored on
    /// assignment, so counters and windows survive restarts and rebalances;
    /// offsets are committed only once a checkpoint covers them.
    #[arg(long, value_name = "T", env = "FUNNELSTREAM_CHECKPOINT_TOPIC")]
    pub checkpoint_topic: Option<String>,
    /// How often each partition is checkpointed [default: 30s].
    #[arg(
        long,
        value_name = "DURATION",
        env = "FUNNELSTREAM_CHECKPOINT_INTERVAL"
    )]
    pub checkpoint_interval: Option<String>,
    /// When a partition's checkpoint is missing, corrupt or incompatible:
    /// `rebuild` (empty state, from the earliest retained offset) or
    /// `refuse` (exit 1) [default: rebuild].
    #[arg(
        long,
        value_name = "rebuild|refuse",
        env = "FUNNELSTREAM_CHECKPOINT_POLICY"
    )]
    pub checkpoint_policy: Option<String>,
    /// Create the checkpoint topic when it is missing (compacted; as many
    /// partitions as the largest source topic; the broker's default
    /// replication factor); `false` where the engine may not create topics,
    /// and a missing topic is an error [default: true].
    #[arg(
        long,
        value_name = "true|false",
        env = "FUNNELSTREAM_CHECKPOINT_TOPIC_CREATE",
        value_parser = boolean("checkpoint_topic_create")
    )]
    pub checkpoint_topic_create: Option<bool>,
    /// Threads applying events, 1 to 1024 [default: cores - 1, at least 1].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_WORKERS", value_parser = whole("workers"))]
    pub workers: Option<u64>,
    /// Most clients following /api/v1/kpis/stream at once (up to 1000000); more get 503 [default: 1000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_STREAM_CLIENTS", value_parser = whole("max_stream_clients"))]
    pub max_stream_clients: Option<u64>,
    /// Extra librdkafka property (security.protocol, sasl.*, ssl.*, ...); repeatable.
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        env = "FUNNELSTREAM_KAFKA_PROPERTY"
    )]
    #[serde(skip)]
    pub(crate) kafka_property: Vec<String>,
    /// Extra plain-HTTP address serving only /healthz and /readyz, without
    /// TLS or auth (for kubelet probes when --web-config-file protects the
    /// main address).
    #[arg(long, value_name = "ADDR:PORT", env = "FUNNELSTREAM_PROBE_LISTEN")]
    pub probe_listen: Option<String>,
    /// TLS and basic-auth settings for every HTTP endpoint, in Prometheus
    /// exporter-toolkit's web-config format.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "text|json", env = "FUNNELSTREAM_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or funnelstream=debug [default: info; RUST_LOG also works].
    #[arg(long, value_name = "FILTER", env = "FUNNELSTREAM_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub engine: EngineArgs,
}

/// Settings of `demo`.
#[derive(Args, Debug, Clone, Default)]
pub struct DemoArgs {
    /// TOML file of these settings, keyed by the flags' names with `_`
    /// (`max_series = 1000`); flag > env > file > default. Keys of other
    /// commands are ignored, so one file can serve them all.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:9490].
    #[arg(long, value_name = "ADDR:PORT", env = "FUNNELSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Live traffic after the history: at most N messages a second, a
    /// fraction too (the demo company's own pace is a few a second); 0 =
    /// none, the KPIs stay put.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200.0,
        env = "FUNNELSTREAM_RATE"
    )]
    pub rate: f64,
    /// Days of history written at start, up to 179 (just under twice the
    /// 90d window, whose previous window the growth families read).
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = 179,
        env = "FUNNELSTREAM_HISTORY",
        value_parser = history_days
    )]
    pub history: u64,
    /// Load-test mode: instead of the company, src/synth.rs's benchmark
    /// stream (random keys, KPIs changing all the time): --events events of
    /// history over the last 178 days, then --rate events a second;
    /// --history is ignored.
    #[arg(long, env = "FUNNELSTREAM_FIREHOSE")]
    pub firehose: bool,
    /// With --firehose: events of history written at start.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 40_000,
        requires = "firehose",
        env = "FUNNELSTREAM_EVENTS"
    )]
    pub events: u64,
    /// Stop after this many seconds (0 = until SIGTERM/SIGINT).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0,
        env = "FUNNELSTREAM_DURATION"
    )]
    pub duration: u64,
    /// With --firehose: distinct (channel, campaign) keys of the stream (benchmarks: series count).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 24,
        env = "FUNNELSTREAM_KEYS",
        value_parser = at_least_one("keys")
    )]
    pub keys: u64,
    /// The series budget (see `run --max-series`).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200_000,
        env = "FUNNELSTREAM_MAX_SERIES",
        value_parser = at_least_one_usize("max_series")
    )]
    pub max_series: usize,
    /// Deals remembered per partition (see `run --max-tracked-deals`; soak benchmarks).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        env = "FUNNELSTREAM_MAX_TRACKED_DEALS",
        value_parser = at_least_one_usize("max_tracked_deals")
    )]
    pub(crate) max_tracked_deals: usize,
    /// Event ids remembered for deduplication per partition (see `run --dedup-capacity`; soak benchmarks).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        env = "FUNNELSTREAM_DEDUP_CAPACITY",
        value_parser = at_least_one_usize("dedup_capacity")
    )]
    pub(crate) dedup_capacity: usize,
    /// Calendar windows (see `run --calendar-windows`; `none` for none).
    #[arg(
        long,
        value_name = "W,..",
        default_value = "mtd,qtd",
        env = "FUNNELSTREAM_CALENDAR_WINDOWS"
    )]
    pub(crate) calendar_windows: String,
    /// IANA time zone of the calendar windows.
    #[arg(
        long,
        value_name = "ZONE",
        default_value = "UTC",
        env = "FUNNELSTREAM_CALENDAR_TIMEZONE"
    )]
    pub(crate) calendar_timezone: String,
    /// First month (1..=12) of the fiscal year.
    #[arg(
        long,
        value_name = "1..12",
        default_value_t = 1,
        env = "FUNNELSTREAM_FISCAL_YEAR_START_MONTH",
        value_parser = month
    )]
    pub fiscal_year_start_month: u8,
    /// How long an accepted `id` is remembered, in engine time after its acceptance [default: 24h].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_DEDUP_HORIZON")]
    pub(crate) dedup_horizon: Option<String>,
    /// Gross margin for LTV and CAC payback, 0 < gm <= 1 [default: 1].
    #[arg(long, value_name = "GM", env = "FUNNELSTREAM_GROSS_MARGIN", value_parser = margin)]
    pub(crate) gross_margin: Option<f64>,
    /// `channel=origin` pairs overriding the default origin of a deal's
    /// channel (outbound=sales, partner=partner, unknown=other, else
    /// marketing).
    #[arg(
        long,
        value_name = "CHANNEL=ORIGIN,..",
        env = "FUNNELSTREAM_CHANNEL_ORIGINS",
        value_parser = origins
    )]
    pub(crate) channel_origins: Option<ChannelOrigins>,
    /// Distinct conversion `action` values before folding into __overflow__ [default: 50].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_ACTIONS", value_parser = whole("max_actions"))]
    pub(crate) max_actions: Option<u64>,
}

/// Settings of `produce`.
#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    /// TOML file of these settings, keyed by the flags' names with `_`
    /// (`max_series = 1000`); flag > env > file > default. Keys of other
    /// commands are ignored, so one file can serve them all.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        value_name = "HOST:PORT[,..]",
        env = "FUNNELSTREAM_BROKERS",
        default_value = defaults::BROKERS,
        value_parser = broker_list
    )]
    pub brokers: String,
    /// Topic to write to.
    #[arg(long, value_name = "T", default_value = defaults::TOPIC, env = "FUNNELSTREAM_TOPIC", value_parser = topic("topic"))]
    pub topic: String,
    /// NDJSON file of events (`-` for stdin); synthetic events without it.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_FROM")]
    pub from: Option<PathBuf>,
    /// Events per second, 0 = as fast as possible [default: 0 with --from, 1000 synthetic].
    #[arg(long, value_name = "EVENTS_PER_S", env = "FUNNELSTREAM_RATE")]
    pub rate: Option<f64>,
    /// Synthetic events to write.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        env = "FUNNELSTREAM_COUNT"
    )]
    pub count: u64,
    /// Distinct (channel, campaign) keys of synthetic events.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 40,
        env = "FUNNELSTREAM_KEYS",
        value_parser = at_least_one("keys")
    )]
    pub keys: u64,
    /// Seed of the synthetic generator.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 42,
        env = "FUNNELSTREAM_SEED"
    )]
    pub seed: u64,
    /// Extra librdkafka property; repeatable.
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        env = "FUNNELSTREAM_KAFKA_PROPERTY"
    )]
    pub(crate) kafka_property: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// NDJSON input file, `-` for stdin (needed here, in FUNNELSTREAM_FROM
    /// or as `from` in the config file).
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_FROM")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl ReplayArgs {
    /// The input: `--from`, else the config file's `from` (CLI.md: every
    /// flag also reads from the file).
    pub(crate) fn input(&self) -> Result<PathBuf, ConfigError> {
        if let Some(p) = &self.from {
            return Ok(p.clone());
        }
        let from = match &self.engine.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid("config", format!("cannot read {}: {e}", path.display()))
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    ConfigError::invalid(
                        "config",
                        format!("{}: {}", path.display(), e.to_string().trim()),
                    )
                })?;
                match table.get("from") {
                    None => None,
                    Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(PathBuf::from(s)),
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            "from",
                            format!("`{other}` is not a file name"),
                        ))
                    }
                }
            }
            None => None,
        };
        from.ok_or_else(|| {
            ConfigError::invalid(
                "from",
                "an input is needed: --from FILE (`-` for stdin), FUNNELSTREAM_FROM or `from` in the config file",
            )
        })
    }
}

/// Engine settings shared by every command that aggregates.
#[derive(Args, Serialize, Debug, Default, Clone)]
pub struct EngineArgs {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Rolling windows [default: 5m,1h,1d,7d,30d,90d].
    #[arg(long, value_name = "W,..", env = "FUNNELSTREAM_WINDOWS")]
    pub windows: Option<String>,
    /// Engine time: `wall` clock or greatest `event` time seen [default: wall].
    #[arg(long, value_name = "wall|event", env = "FUNNELSTREAM_CLOCK")]
    pub clock: Option<String>,
    /// How far `ts` may lie ahead of the wall clock, at most 10y [default: 5m].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_MAX_FUTURE_SKEW")]
    pub(crate) max_future_skew: Option<String>,
    /// Extra age past what the windows cover (twice the longest window, for
    /// the previous windows; the previous period of a calendar window)
    /// before an event counts as late, at most 10y [default: 0].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_ALLOWED_LATENESS")]
    pub(crate) allowed_lateness: Option<String>,
    /// How long an accepted `id` is remembered, in engine time after its
    /// acceptance (more than 0, at most 10y) [default: 24h].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_DEDUP_HORIZON")]
    pub(crate) dedup_horizon: Option<String>,
    /// Event ids remembered per partition at most [default: 1000000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_DEDUP_CAPACITY", value_parser = whole("dedup_capacity"))]
    pub(crate) dedup_capacity: Option<u64>,
    /// Distinct `channel` values before folding into __overflow__ [default: 100].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_CHANNELS", value_parser = whole("max_channels"))]
    pub(crate) max_channels: Option<u64>,
    /// Distinct `campaign` values before folding into __overflow__ [default: 10000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_CAMPAIGNS", value_parser = whole("max_campaigns"))]
    pub max_campaigns: Option<u64>,
    /// Deals remembered per partition for open-pipeline matching [default: 1000000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_TRACKED_DEALS", value_parser = whole("max_tracked_deals"))]
    pub(crate) max_tracked_deals: Option<u64>,
    /// Longest accepted event, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES", env = "FUNNELSTREAM_MAX_EVENT_BYTES", value_parser = whole("max_event_bytes"))]
    pub max_event_bytes: Option<u64>,
    /// Gross margin for LTV and CAC payback, 0 < gm <= 1 [default: 1].
    #[arg(long, value_name = "GM", env = "FUNNELSTREAM_GROSS_MARGIN", value_parser = margin)]
    pub gross_margin: Option<f64>,
    /// `channel=origin` pairs overriding the default origin of a deal's
    /// channel (outbound=sales, partner=partner, unknown=other, else
    /// marketing).
    #[arg(
        long,
        value_name = "CHANNEL=ORIGIN,..",
        env = "FUNNELSTREAM_CHANNEL_ORIGINS",
        value_parser = origins
    )]
    pub channel_origins: Option<ChannelOrigins>,
    /// Distinct conversion `action` values before folding into __overflow__, up to 1000000 [default: 50].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_ACTIONS", value_parser = whole("max_actions"))]
    pub max_actions: Option<u64>,
    /// Business series published at most; whole (channel, campaign) keys past it fold into __overflow__ [default: 200000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_SERIES", value_parser = whole("max_series"))]
    pub max_series: Option<u64>,
    /// Calendar windows to publish besides the rolling ones: any of mtd,qtd,ytd,last_month,last_quarter [default: none].
    #[arg(long, value_name = "W,..", env = "FUNNELSTREAM_CALENDAR_WINDOWS")]
    pub(crate) calendar_windows: Option<String>,
    /// IANA time zone of the calendar windows' periods [default: UTC].
    #[arg(long, value_name = "ZONE", env = "FUNNELSTREAM_CALENDAR_TIMEZONE")]
    pub(crate) calendar_timezone: Option<String>,
    /// First month (1..=12) of the fiscal year, for qtd, ytd and last_quarter [default: 1].
    #[arg(long, value_name = "1..12", env = "FUNNELSTREAM_FISCAL_YEAR_START_MONTH", value_parser = whole("fiscal_year_start_month"))]
    pub fiscal_year_start_month: Option<u64>,
}

/// Parses `channel=origin` pairs (the `channel_origins` setting).
pub(crate) fn parse_channel_origins(
    pairs: &[(String, String)],
) -> Result<Vec<(String, crate::decode::Origin)>, ConfigError> {
    let mut out: Vec<(String, crate::decode::Origin)> = Vec::new();
    for (channel, origin) in pairs {
        let (channel, origin) = (channel.trim(), origin.trim());
        if channel.is_empty() || channel.len() > 64 {
            return Err(ConfigError::invalid(
                "channel_origins",
                format!("`{channel}` is not a channel (1 to 64 bytes)"),
            ));
        }
        let Some(o) = crate::decode::Origin::parse(origin) else {
            return Err(ConfigError::invalid(
                "channel_origins",
                format!("`{origin}` is not an origin: use marketing, sales, partner or other"),
            ));
        };
        if out.iter().any(|(c, _)| c == channel) {
            return Err(ConfigError::invalid(
                "channel_origins",
                format!("channel `{channel}` is listed twice"),
            ));
        }
        out.push((channel.to_string(), o));
    }
    Ok(out)
}

fn channel_origin_pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(c, o)| (c.to_string(), o.to_string()))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "channel_origins",
                        format!("`{p}` is not a channel=origin pair"),
                    )
                })
        })
        .collect()
}

fn gross_margin(x: f64) -> Result<f64, ConfigError> {
    match x > 0.0 && x <= 1.0 {
        true => Ok(x),
        false => Err(margin_error(&x.to_string())),
    }
}

fn margin_error(v: &str) -> ConfigError {
    ConfigError::invalid(
        "gross_margin",
        format!("`{v}` is not a number with 0 < gross_margin <= 1"),
    )
}

// Parsers of flag and environment values into the file's types (clap
// calls them; `main.rs` prints their errors like any invalid setting).

fn margin(v: &str) -> Result<f64, ConfigError> {
    v.trim().parse().map_err(|_| margin_error(v))
}

/// A whole number up to the largest a TOML file holds (2^63 - 1; more
/// was told as "config: u64 value was too large").
fn whole(key: &'static str) -> impl Fn(&str) -> Result<u64, ConfigError> + Clone {
    move |v| match v.trim().parse::<u64>() {
        Ok(n) if n <= i64::MAX as u64 => Ok(n),
        Ok(_) => Err(ConfigError::invalid(key, format!("`{v}` is too large"))),
        Err(_) => Err(ConfigError::invalid(
            key,
            format!("`{v}` is not a positive whole number"),
        )),
    }
}

/// A positive count of at most `max`, where more would exhaust the
/// process (threads, permits) or overflow its arithmetic.
fn positive_at_most(key: &str, n: u64, max: usize) -> Result<usize, ConfigError> {
    match positive(key, n)? {
        n if n <= max => Ok(n),
        n => Err(ConfigError::invalid(
            key,
            format!("`{n}` is more than the {max} supported"),
        )),
    }
}

/// `--workers`: threads, at most.
const MAX_WORKERS: usize = 1024;
/// `--max-stream-clients`: concurrent streams, at most.
const MAX_STREAM_CLIENTS: usize = 1_000_000;
/// `--max-actions`: distinct conversion actions, at most (the series
/// budget's arithmetic multiplies it).
const MAX_ACTIONS: usize = 1_000_000;

/// A count where zero means nothing sensible (`--keys 0`, a budget of
/// no series): refused rather than quietly taken as 1.
fn at_least_one(key: &'static str) -> impl Fn(&str) -> Result<u64, ConfigError> + Clone {
    move |v| match whole(key)(v)? {
        0 => Err(ConfigError::invalid(key, "`0`: must be at least 1")),
        n => Ok(n),
    }
}

fn at_least_one_usize(key: &'static str) -> impl Fn(&str) -> Result<usize, ConfigError> + Clone {
    move |v| positive(key, at_least_one(key)(v)?)
}

/// `demo --history`: 0 to 179 days (more was quietly cut to 179).
fn history_days(v: &str) -> Result<u64, ConfigError> {
    match whole("history")(v)? {
        n if n <= defaults::MAX_HISTORY_DAYS => Ok(n),
        n => Err(ConfigError::invalid(
            "history",
            format!(
                "`{n}`: at most {} days of history",
                defaults::MAX_HISTORY_DAYS
            ),
        )),
    }
}

/// `demo --fiscal-year-start-month`: 1..=12.
fn month(v: &str) -> Result<u8, ConfigError> {
    let key = "fiscal_year_start_month";
    match whole(key)(v)? {
        n @ 1..=12 => Ok(n as u8),
        n => Err(month_error(n)),
    }
}

fn month_error(n: u64) -> ConfigError {
    ConfigError::invalid(
        "fiscal_year_start_month",
        format!("`{n}` is not a month: use 1 (January) to 12 (December)"),
    )
}

/// `--rate` of `demo` and `produce` (one `FUNNELSTREAM_RATE` for both):
/// 0, or from one event a day up. Below that the pacing's wait (1 / rate
/// seconds) does not fit a `Duration`: 1e-300 panicked.
pub(crate) fn check_rate(r: f64) -> Result<(), ConfigError> {
    if r == 0.0 || (r >= 1.0 / 86_400.0 && r.is_finite()) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        "rate",
        format!(
            "`{}` must be 0 (as fast as possible) or from one event a day (1/86400) up",
            if r != 0.0 && r.abs() < 1e-4 {
                format!("{r:e}")
            } else {
                r.to_string()
            }
        ),
    ))
}

/// A topic name, as Kafka takes them (`check_topic`).
fn topic(key: &'static str) -> impl Fn(&str) -> Result<String, ConfigError> + Clone {
    move |v| {
        check_topic(key, v)?;
        Ok(v.trim().to_string())
    }
}

/// A Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`
/// (what the broker accepts; anything else was only refused, over and
/// over, once connected).
pub(crate) fn check_topic(key: &str, v: &str) -> Result<(), ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ConfigError::invalid(key, "empty topic name"));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if t.len() > 249 || t == "." || t == ".." || !t.chars().all(legal) {
        return Err(ConfigError::invalid(
            key,
            format!("`{t}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)"),
        ));
    }
    Ok(())
}

/// `HOST:PORT[,..]` (each optionally `scheme://HOST:PORT`, as librdkafka
/// takes them): no empty entry, a port from 1 to 65535.
pub(crate) fn check_brokers(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        return Err(ConfigError::invalid(key, "empty broker list"));
    }
    for b in v.split(',').map(str::trim) {
        let bad = |why: &str| {
            ConfigError::invalid(
                key,
                format!("`{b}` {why}: use HOST:PORT[,HOST:PORT..], like kafka-1:9092"),
            )
        };
        if b.is_empty() {
            return Err(bad("is an empty entry"));
        }
        let addr = b.split_once("://").map_or(b, |(_, a)| a);
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(bad("has no port"));
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad("has no host"));
        }
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(bad("has no port from 1 to 65535"));
        }
    }
    Ok(())
}

fn broker_list(v: &str) -> Result<String, ConfigError> {
    check_brokers("brokers", v)?;
    Ok(v.trim().to_string())
}

fn boolean(key: &'static str) -> impl Fn(&str) -> Result<bool, ConfigError> + Clone {
    move |v| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::invalid(
            key,
            format!("`{v}` is not a boolean: use true or false"),
        )),
    }
}

/// A `T[,..]` flag: the file's array of strings.
#[derive(Serialize, Debug, Clone)]
#[serde(transparent)]
pub struct List(pub Vec<String>);

/// `--topics`: no empty entry (`a,,b` is a typo, as for `--windows`).
fn list(v: &str) -> Result<List, ConfigError> {
    if v.trim().is_empty() {
        return Ok(List(Vec::new()));
    }
    if v.split(',').any(|t| t.trim().is_empty()) {
        return Err(ConfigError::invalid(
            "topics",
            format!("`{v}` has an empty entry"),
        ));
    }
    Ok(List(split_list(v)))
}

fn origins(v: &str) -> Result<ChannelOrigins, ConfigError> {
    Ok(ChannelOrigins::Text(v.to_string()))
}

fn duration(key: &str, v: &str) -> Result<i64, ConfigError> {
    parse_duration_ms(v).map_err(|p| ConfigError::parse(key, p))
}

/// The longest duration setting: as the longest window (10y); more,
/// e.g. `99999999999d`, is a typo rather than a wish.
const MAX_SPAN_MS: i64 = 10 * 365 * 86_400_000;

/// A duration setting from `min_ms` to 10y.
fn span(key: &str, v: &str, min_ms: i64) -> Result<i64, ConfigError> {
    let ms = duration(key, v)?;
    if ms < min_ms {
        return Err(ConfigError::invalid(
            key,
            format!("`{}` must be more than 0", v.trim()),
        ));
    }
    if ms > MAX_SPAN_MS {
        return Err(ConfigError::invalid(
            key,
            format!("`{}` is longer than the 10y maximum", v.trim()),
        ));
    }
    Ok(ms)
}

fn positive(key: &str, n: u64) -> Result<usize, ConfigError> {
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::invalid(
            key,
            format!("`{n}` is not a positive whole number"),
        )),
    }
}

impl EngineArgs {
    /// The `--config` file's settings (none without it).
    pub fn file(&self) -> Result<Settings, ConfigError> {
        match &self.config {
            Some(p) => {
                use clap::CommandFactory;
                let cmd = Cli::command();
                let run = cmd.find_subcommand("run").expect("run exists");
                let ours = |k: &str| k == "kafka" || run.get_arguments().any(|a| a.get_id() == k);
                Settings::load(p, |k| !ours(k) && known_elsewhere(&cmd, k))
            }
            None => Ok(Settings::default()),
        }
    }

    /// The engine settings: flag > env (both via clap) > file > default.
    pub fn resolve(&self) -> Result<EngineConfig, ConfigError> {
        engine_config(&layer(self, self.file()?)?)
    }
}

/// The engine settings of `s`, defaults for what it leaves out.
pub fn engine_config(s: &Settings) -> Result<EngineConfig, ConfigError> {
    let mut c = EngineConfig::default();
    if let Some(v) = &s.windows {
        c.windows = parse_windows(v).map_err(|p| ConfigError::parse("windows", p))?;
    }
    if let Some(v) = &s.clock {
        c.clock = v
            .parse::<ClockMode>()
            .map_err(|p| ConfigError::parse("clock", p))?;
    }
    if let Some(v) = &s.max_future_skew {
        c.max_future_skew_ms = span("max_future_skew", v, 0)?;
    }
    if let Some(v) = &s.allowed_lateness {
        c.allowed_lateness_ms = span("allowed_lateness", v, 0)?;
    }
    if let Some(v) = &s.dedup_horizon {
        // 0 would remember no id: every resend counted again.
        c.dedup_horizon_ms = span("dedup_horizon", v, 1)?;
    }
    for (key, value, field) in [
        ("dedup_capacity", s.dedup_capacity, &mut c.dedup_capacity),
        ("max_channels", s.max_channels, &mut c.max_channels),
        ("max_campaigns", s.max_campaigns, &mut c.max_campaigns),
        (
            "max_tracked_deals",
            s.max_tracked_deals,
            &mut c.max_tracked_deals,
        ),
        ("max_event_bytes", s.max_event_bytes, &mut c.max_event_bytes),
    ] {
        if let Some(n) = value {
            *field = positive(key, n)?;
        }
    }
    if let Some(x) = s.gross_margin {
        c.gross_margin = gross_margin(x)?;
    }
    let pairs = match &s.channel_origins {
        Some(ChannelOrigins::Text(t)) => Some(channel_origin_pairs(t)?),
        Some(ChannelOrigins::Table(t)) => {
            Some(t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        None => None,
    };
    if let Some(pairs) = pairs {
        c.channel_origins = parse_channel_origins(&pairs)?;
    }
    if let Some(n) = s.max_actions {
        c.max_actions = positive_at_most("max_actions", n, MAX_ACTIONS)?;
    }
    if let Some(n) = s.max_series {
        c.max_series = positive("max_series", n)?;
    }
    if let Some(v) = &s.calendar_windows {
        c.calendar.windows = crate::config::parse_calendar_windows(v)
            .map_err(|p| ConfigError::parse("calendar_windows", p))?;
    }
    if let Some(v) = &s.calendar_timezone {
        c.calendar.tz = crate::config::parse_timezone(v)
            .map_err(|p| ConfigError::parse("calendar_timezone", p))?;
        c.calendar.timezone = v.trim().to_string();
    }
    if let Some(n) = s.fiscal_year_start_month {
        if !(1..=12).contains(&n) {
            return Err(month_error(n));
        }
        c.calendar.fiscal_year_start_month = n as u8;
    }
    Ok(c)
}

/// Everything `run` needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub engine: EngineConfig,
    pub kafka: crate::source::KafkaSettings,
    pub listen: std::net::SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub web_config_file: Option<PathBuf>,
    pub security: crate::export::security::Security,
    pub probe_listen: Option<std::net::SocketAddr>,
    pub http: crate::export::http::HttpLimits,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

fn listen_addr(key: &str, v: &str) -> Result<std::net::SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        ConfigError::invalid(key, format!("`{v}` is not an ADDR:PORT like 0.0.0.0:9490"))
    })
}

impl RunArgs {
    /// Everything `run` needs: flag > env (both via clap) > file > default.
    pub fn resolve(&self, default_listen: &str) -> Result<RunConfig, ConfigError> {
        let s = layer(self, self.engine.file()?)?;
        let engine = engine_config(&s)?;
        let (dead_letter_topic, checkpoint) = outputs(&s)?;
        let brokers = s
            .brokers
            .clone()
            .unwrap_or_else(|| defaults::BROKERS.into());
        check_brokers("brokers", &brokers)?;
        let topics = topics(&s, dead_letter_topic.as_ref(), checkpoint.as_ref())?;
        let group = s.group.clone().unwrap_or_else(|| defaults::GROUP.into());
        if group.trim().is_empty() {
            return Err(ConfigError::invalid("group", "empty group id"));
        }
        let listen_s = s.listen.clone().unwrap_or_else(|| default_listen.into());
        let listen = listen_addr("listen", &listen_s)?;
        let mut http = crate::export::http::HttpLimits::default();
        if let Some(n) = s.max_stream_clients {
            http.streams.max_clients =
                positive_at_most("max_stream_clients", n, MAX_STREAM_CLIENTS)?;
        }
        let workers = match s.workers {
            Some(w) => positive_at_most("workers", w, MAX_WORKERS)?,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1),
        };
        let file = self.engine.config.as_ref();
        let properties = kafka_properties(&s, &self.kafka_property, file)?;
        let (log_format, log_level) = logging(&s)?;
        let security = match &s.web_config_file {
            Some(p) => crate::export::security::load(p)?,
            None => Default::default(),
        };
        let probe_listen = match &s.probe_listen {
            Some(v) => Some(listen_addr("probe_listen", v)?),
            None => None,
        };
        if probe_listen.is_some() && probe_listen == Some(listen) {
            return Err(ConfigError::invalid(
                "probe_listen",
                "must differ from listen",
            ));
        }
        let kafka = crate::source::KafkaSettings {
            brokers,
            topics,
            group,
            properties: properties.merged.clone(),
            workers,
            dead_letter_topic,
            checkpoint,
        };
        // Each property passed librdkafka's check alone: now together,
        // still before anything connects.
        if !kafka.properties.is_empty() {
            together(&kafka, &properties, file)?;
        }
        Ok(RunConfig {
            probe_listen,
            http,
            engine,
            kafka,
            listen,
            log_format,
            log_level,
            web_config_file: s.web_config_file,
            security,
        })
    }
}

/// Checks the properties together on every client `run` would create
/// ([`crate::source::client::validate`]). A refusal names where the
/// properties were given: the file when its `[kafka]` table alone is
/// refused, the flag (added by [`Given::tell`]) when the flag's alone are,
/// and both when it takes one of each.
fn together(
    kafka: &crate::source::KafkaSettings,
    p: &KafkaProperties,
    file: Option<&PathBuf>,
) -> Result<(), ConfigError> {
    use crate::source::client::validate;
    let Err(e) = validate(kafka) else {
        return Ok(());
    };
    let told = |with: &str| {
        ConfigError::invalid(
            "kafka_property",
            format!(
                "librdkafka refuses these properties together for {}{with}: {}",
                e.client, e.why
            ),
        )
    };
    let refused_alone = |properties: &[(String, String)]| {
        validate(&crate::source::KafkaSettings {
            properties: properties.to_vec(),
            ..kafka.clone()
        })
        .is_err()
    };
    Err(match file {
        Some(f) if !p.in_file.is_empty() && refused_alone(&p.in_file) => {
            told("").given_by(&f.display().to_string())
        }
        Some(f) if !p.in_file.is_empty() && !refused_alone(&p.given) => {
            told(&format!(" (some given in {})", f.display()))
        }
        _ => told(""),
    })
}

/// Where the engine writes: the dead-letter topic and the checkpoints.
fn outputs(s: &Settings) -> Result<(Option<String>, Option<CheckpointSettings>), ConfigError> {
    let dead_letter_topic = s.dead_letter_topic.clone();
    if let Some(t) = &dead_letter_topic {
        check_topic("dead_letter_topic", t)?;
    }
    let checkpoint = checkpoint_settings(s)?;
    if let (Some(d), Some(c)) = (&dead_letter_topic, &checkpoint) {
        if *d == c.topic {
            return Err(ConfigError::invalid(
                "checkpoint_topic",
                "must differ from dead_letter_topic",
            ));
        }
    }
    Ok((dead_letter_topic, checkpoint))
}

fn checkpoint_settings(s: &Settings) -> Result<Option<CheckpointSettings>, ConfigError> {
    let Some(topic) = s.checkpoint_topic.clone() else {
        for (key, set) in [
            ("checkpoint_interval", s.checkpoint_interval.is_some()),
            ("checkpoint_policy", s.checkpoint_policy.is_some()),
            (
                "checkpoint_topic_create",
                s.checkpoint_topic_create.is_some(),
            ),
        ] {
            if set {
                return Err(ConfigError::invalid(key, "needs checkpoint_topic"));
            }
        }
        return Ok(None);
    };
    check_topic("checkpoint_topic", &topic)?;
    let interval_ms = match &s.checkpoint_interval {
        Some(v) => duration("checkpoint_interval", v)?,
        None => defaults::CHECKPOINT_INTERVAL_MS,
    };
    if !(100..=86_400_000).contains(&interval_ms) {
        return Err(ConfigError::invalid(
            "checkpoint_interval",
            "must be between 100ms and 1d",
        ));
    }
    let policy = match &s.checkpoint_policy {
        Some(v) => v
            .parse()
            .map_err(|e: crate::source::checkpoint::UnknownPolicy| {
                ConfigError::invalid("checkpoint_policy", e.to_string())
            })?,
        None => Policy::Rebuild,
    };
    Ok(Some(CheckpointSettings {
        topic,
        interval: std::time::Duration::from_millis(interval_ms as u64),
        policy,
        create: s.checkpoint_topic_create.unwrap_or(true),
    }))
}

/// The consumed topics: none of them may be one the engine writes, or it
/// would read its own output back as events.
fn topics(
    s: &Settings,
    dead_letter_topic: Option<&String>,
    checkpoint: Option<&CheckpointSettings>,
) -> Result<Vec<String>, ConfigError> {
    let topics = s
        .topics
        .clone()
        .unwrap_or_else(|| vec![defaults::TOPIC.into()]);
    if topics.is_empty() {
        return Err(ConfigError::invalid(
            "topics",
            "at least one non-empty topic name is needed",
        ));
    }
    for (i, t) in topics.iter().enumerate() {
        check_topic("topics", t)?;
        if topics[..i].contains(t) {
            return Err(ConfigError::invalid(
                "topics",
                format!("`{t}` is listed twice"),
            ));
        }
    }
    for (key, t) in [
        ("dead_letter_topic", dead_letter_topic),
        ("checkpoint_topic", checkpoint.map(|c| &c.topic)),
    ] {
        if let Some(t) = t.filter(|t| topics.contains(t)) {
            return Err(ConfigError::invalid(
                key,
                format!("`{t}` is also one of the consumed topics"),
            ));
        }
    }
    Ok(topics)
}

/// Why librdkafka refuses the property `k` = `v` (an unknown name, a value
/// its type or range does not take), told as `` `k=v`: librdkafka refuses
/// it: its reason ``, a secret's value masked; checked without connecting.
pub(crate) fn kafka_refusal(k: &str, v: &str) -> Option<String> {
    let why = crate::source::client::refusal(k, v)?;
    let (shown, why) = match is_secret(k) && !v.is_empty() {
        true => ("***", why.replace(v, "***")),
        false => (v, why),
    };
    Some(format!("`{k}={shown}`: librdkafka refuses it: {why}"))
}

/// The file's `[kafka]` table, overridden by `--kafka-property` (or its
/// variable); the properties funnelstream sets itself are refused, and so
/// is any librdkafka refuses, naming where it was given (the flag's route
/// is added by [`Given::tell`], the `file`'s here).
fn kafka_properties(
    s: &Settings,
    flags: &[String],
    file: Option<&PathBuf>,
) -> Result<KafkaProperties, ConfigError> {
    let refused = |k: &str, v: &str| match crate::source::MANAGED_PROPERTIES.contains(&k) {
        true => Some(format!(
            "`{k}={v}`: set by funnelstream itself (use brokers / group, or leave it out)"
        )),
        false => kafka_refusal(k, v),
    };
    let mut given = Vec::with_capacity(flags.len());
    for kv in flags {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(ConfigError::invalid(
                "kafka_property",
                format!("`{kv}` is not KEY=VALUE"),
            ));
        };
        if let Some(refused) = refused(k.trim(), v) {
            return Err(ConfigError::invalid("kafka_property", refused));
        }
        given.push((k.trim().to_string(), v.to_string()));
    }
    let in_file = s.kafka.clone().unwrap_or_default().0;
    for (k, v) in &in_file {
        if let Some(refused) = refused(k, v) {
            let e = ConfigError::invalid("kafka_property", refused);
            return Err(match file {
                Some(p) => e.given_by(&p.display().to_string()),
                None => e,
            });
        }
    }
    let mut merged = in_file.clone();
    for (k, v) in &given {
        merged.retain(|(pk, _)| pk != k);
        merged.push((k.clone(), v.clone()));
    }
    Ok(KafkaProperties {
        merged,
        in_file,
        given,
    })
}

/// The Kafka properties `run` passes on, and where they came from.
struct KafkaProperties {
    /// The file's, overridden by the flag's: what the clients get.
    merged: Vec<(String, String)>,
    /// The file's `[kafka]` table.
    in_file: Vec<(String, String)>,
    /// `--kafka-property` (or its variable; for `run` the file's table
    /// arrives here too when neither is given, see [`parse_args`]).
    given: Vec<(String, String)>,
}

fn logging(s: &Settings) -> Result<(LogFormat, String), ConfigError> {
    let log_format = match s.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(
                "log_format",
                format!("`{other}`: use text or json"),
            ))
        }
    };
    let log_level = s
        .log_level
        .clone()
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "info".into());
    if log_level.trim().is_empty() || tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(ConfigError::invalid(
            "log_level",
            format!("`{log_level}` is not a log filter"),
        ));
    }
    Ok((log_format, log_level))
}

/// Property names whose values are secrets: never printed or logged.
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "ssl.key",
        "token",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The effective settings as TOML, secrets masked: the resolved values,
/// serialized as the [`Settings`] the file would hold.
pub(crate) fn effective_settings(cfg: &RunConfig) -> Result<String, ConfigError> {
    let e = &cfg.engine;
    let k = &cfg.kafka;
    let checkpoint = k.checkpoint.as_ref();
    let masked = k
        .properties
        .iter()
        .map(|(p, v)| {
            (
                p.clone(),
                if is_secret(p) {
                    "***".into()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let s = Settings {
        brokers: Some(k.brokers.clone()),
        topics: Some(k.topics.clone()),
        group: Some(k.group.clone()),
        dead_letter_topic: k.dead_letter_topic.clone(),
        checkpoint_topic: checkpoint.map(|c| c.topic.clone()),
        checkpoint_interval: checkpoint.map(|c| format_duration_ms(c.interval.as_millis() as i64)),
        checkpoint_policy: checkpoint.map(|c| c.policy.to_string()),
        checkpoint_topic_create: checkpoint.map(|c| c.create),
        listen: Some(cfg.listen.to_string()),
        workers: Some(k.workers as u64),
        max_stream_clients: Some(cfg.http.streams.max_clients as u64),
        probe_listen: cfg.probe_listen.map(|p| p.to_string()),
        web_config_file: cfg.web_config_file.clone(),
        log_format: Some(match cfg.log_format {
            LogFormat::Json => "json".into(),
            LogFormat::Text => "text".into(),
        }),
        log_level: Some(cfg.log_level.clone()),
        windows: Some(
            e.windows
                .iter()
                .map(|w| w.label.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        clock: Some(e.clock.to_string()),
        max_future_skew: Some(format_duration_ms(e.max_future_skew_ms)),
        allowed_lateness: Some(format_duration_ms(e.allowed_lateness_ms)),
        dedup_horizon: Some(format_duration_ms(e.dedup_horizon_ms)),
        dedup_capacity: Some(e.dedup_capacity as u64),
        max_channels: Some(e.max_channels as u64),
        max_campaigns: Some(e.max_campaigns as u64),
        max_tracked_deals: Some(e.max_tracked_deals as u64),
        max_event_bytes: Some(e.max_event_bytes as u64),
        gross_margin: Some(e.gross_margin),
        max_actions: Some(e.max_actions as u64),
        max_series: Some(e.max_series as u64),
        calendar_windows: Some(if e.calendar.windows.is_empty() {
            "none".to_string()
        } else {
            e.calendar
                .windows
                .iter()
                .map(|w| w.label())
                .collect::<Vec<_>>()
                .join(",")
        }),
        calendar_timezone: Some(e.calendar.timezone.clone()),
        fiscal_year_start_month: Some(u64::from(e.calendar.fiscal_year_start_month)),
        channel_origins: Some(ChannelOrigins::Text(
            e.channel_origins
                .iter()
                .map(|(c, o)| format!("{c}={}", o.as_str()))
                .collect::<Vec<_>>()
                .join(","),
        )),
        kafka: (!k.properties.is_empty()).then_some(Properties(masked)),
    };
    let web = format!(
        "tls: {}, basic auth users: {}",
        cfg.security.tls.is_some(),
        cfg.security.auth.is_some()
    );
    s.to_toml(&[("web_config_file", web)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Origin;

    fn toml(text: &str) -> Settings {
        toml::from_str(text).expect("valid TOML")
    }

    /// The engine settings of `flags` (parsed as clap does, with its
    /// value errors) over `file`.
    fn resolve(flags: &[&str], file: &Settings) -> Result<EngineConfig, ConfigError> {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            engine: EngineArgs,
        }
        let args =
            T::try_parse_from(std::iter::once("t").chain(flags.iter().copied())).map_err(|e| {
                std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<ConfigError>())
                    .expect("a setting's error")
                    .clone()
            })?;
        engine_config(&layer(&args.engine, file.clone())?)
    }

    #[test]
    fn v2_settings_resolve_from_flags_and_file() {
        let d = resolve(&[], &Settings::default()).unwrap();
        assert_eq!(d.gross_margin, 1.0);
        assert_eq!(d.max_actions, 50);
        assert!(d.channel_origins.is_empty());
        let file = toml(
            "gross_margin = 0.75\nmax_actions = 7\n[channel_origins]\noutbound = \"marketing\"\n",
        );
        let c = resolve(&[], &file).unwrap();
        assert_eq!(c.gross_margin, 0.75);
        assert_eq!(c.max_actions, 7);
        assert_eq!(
            c.channel_origins,
            vec![("outbound".into(), Origin::Marketing)]
        );
        // The string form in the file, and an integer margin.
        let file =
            toml("gross_margin = 1\nchannel_origins = \"events=partner, paid_social=other\"\n");
        let c = resolve(&[], &file).unwrap();
        assert_eq!(c.gross_margin, 1.0);
        assert_eq!(
            c.channel_origins,
            vec![
                ("events".into(), Origin::Partner),
                ("paid_social".into(), Origin::Other)
            ]
        );
        // Flags win over the file.
        let flags = [
            "--gross-margin",
            "0.5",
            "--channel-origins",
            "partner=sales",
            "--max-actions",
            "3",
        ];
        let c = resolve(&flags, &file).unwrap();
        assert_eq!(c.gross_margin, 0.5);
        assert_eq!(c.max_actions, 3);
        assert_eq!(c.channel_origins, vec![("partner".into(), Origin::Sales)]);
    }

    #[test]
    fn bad_v2_settings_name_the_key() {
        let bad = |flag: &str, v: &str, key: &str| {
            let arg = format!("{flag}={v}");
            let e = resolve(&[&arg], &Settings::default()).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
        };
        for gm in ["0", "-0.5", "1.01", "NaN", "inf", "x", ""] {
            bad("--gross-margin", gm, "gross_margin");
        }
        for co in ["outbound", "outbound=ads", "=sales", "a=sales,a=other"] {
            bad("--channel-origins", co, "channel_origins");
        }
        for n in ["0", "-1", "x"] {
            bad("--max-actions", n, "max_actions");
        }
        for w in ["wtd", "mtd,mtd", "mtd,,qtd", "MTD"] {
            bad("--calendar-windows", w, "calendar_windows");
        }
        for z in ["Europe/Nowhere", "", "CET+1"] {
            bad("--calendar-timezone", z, "calendar_timezone");
        }
        for m in ["0", "13", "x", "-1"] {
            bad("--fiscal-year-start-month", m, "fiscal_year_start_month");
        }
        let c = resolve(
            &[
                "--calendar-windows=last_quarter,mtd",
                "--calendar-timezone=Europe/Berlin",
                "--fiscal-year-start-month=4",
            ],
            &Settings::default(),
        )
        .unwrap();
        assert_eq!(
            c.calendar.windows,
            [
                crate::config::CalWindow::Mtd,
                crate::config::CalWindow::LastQuarter
            ]
        );
        assert_eq!(
            (
                c.calendar.timezone.as_str(),
                c.calendar.fiscal_year_start_month
            ),
            ("Europe/Berlin", 4)
        );
        let file = toml("gross_margin = 2.0\n");
        let e = resolve(&[], &file).unwrap_err();
        assert!(e.to_string().starts_with("gross_margin: "), "{e}");
    }

    /// An invalid setting says where it was given, after the setting's
    /// part of the key; broker lists and topic names are checked as
    /// Kafka takes them.
    #[test]
    fn invalid_settings_say_where_they_were_given() {
        let e = ConfigError::invalid("max_series", "`0` is not a positive whole number");
        assert_eq!(
            e.given_by("--max-series").to_string(),
            "max_series (--max-series): `0` is not a positive whole number"
        );
        let e = ConfigError::invalid("web_config_file: tls_server_config", "x")
            .given_by("FUNNELSTREAM_WEB_CONFIG_FILE");
        assert_eq!(
            e.to_string(),
            "web_config_file (FUNNELSTREAM_WEB_CONFIG_FILE): tls_server_config: x"
        );
        assert_eq!(e.clone().given_by("f.toml"), e, "told once");
        for ok in [
            "k:9092",
            "k-1:9092, k-2:9093",
            "PLAINTEXT://k:9092",
            "[::1]:9092",
        ] {
            assert!(check_brokers("brokers", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ",", "k:1,,k:2", "host", "h:0", "h:65536", ":9092", "h :1",
        ] {
            assert!(check_brokers("brokers", bad).is_err(), "{bad}");
        }
        for ok in ["funnel-events", "a.b_c-D9", &"t".repeat(249)] {
            assert!(check_topic("topics", ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", ".", "..", "a b", "x/y", "ü", &"t".repeat(250)] {
            assert!(check_topic("topics", bad).is_err(), "{bad}");
        }
    }

    /// librdkafka's refusals, checked without a client; a secret's value
    /// is not told.
    #[test]
    fn kafka_refusals_keep_librdkafkas_reason_and_mask_secrets() {
        assert_eq!(kafka_refusal("client.id", "x"), None);
        assert_eq!(kafka_refusal("linger.ms", "5"), None, "a producer's");
        let e = kafka_refusal("fetch.max.bytes", "abc").unwrap();
        assert!(
            e.starts_with("`fetch.max.bytes=abc`: librdkafka refuses it: "),
            "{e}"
        );
        let e = kafka_refusal("no.such.password", "hunter2").unwrap();
        assert!(e.contains("`no.such.password=***`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    /// The file layered under the flags round-trips through the one
    /// struct: what `check-config` prints reads back as the same settings.
    #[test]
    fn effective_settings_read_back_as_the_same_settings() {
        let args = RunArgs {
            engine: EngineArgs {
                windows: Some("1h,7d".into()),
                ..EngineArgs::default()
            },
            kafka_property: vec!["client.id=x".into()],
            ..RunArgs::default()
        };
        let cfg = args.resolve(defaults::LISTEN).unwrap();
        let text = effective_settings(&cfg).unwrap();
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back.windows.as_deref(), Some("1h,7d"));
        assert_eq!(back.topics, Some(vec![defaults::TOPIC.to_string()]));
        assert_eq!(
            back.kafka,
            Some(Properties(vec![("client.id".into(), "x".into())]))
        );
        assert_eq!(layer(&RunArgs::default(), back.clone()).unwrap(), back);
    }

    /// `demo`, `produce` and `tail` read `--config` (CLI.md: every flag,
    /// flag > env > file > default; env is checked on the binary, since
    /// a test cannot set the process's variables without racing others).
    #[test]
    fn demo_produce_and_tail_layer_their_config_file_under_the_flags() {
        let dir = std::env::temp_dir().join(format!("funnelstream-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let parse = |args: &[&str]| parse_args(args.iter().map(Into::into).collect());
        let shared = file(
            "all.toml",
            "brokers = \"b:1\"\ntopics = [\"events\"]\nhistory = 7\nrate = 0\n\
             calendar_windows = \"mtd,ytd\"\nchannel_origins = { outbound = \"marketing\" }\n\
             once = true\ncount = 5\n[kafka]\n\"client.id\" = \"x\"\ndebug = \"broker,topic\"\n",
        );
        let Command::Demo(d) = parse(&["f", "demo", "--config", &shared]).unwrap().command else {
            panic!("demo");
        };
        assert_eq!((d.history, d.rate), (7, 0.0));
        assert_eq!(d.calendar_windows, "mtd,ytd");
        assert!(
            matches!(d.channel_origins, Some(ChannelOrigins::Text(ref t)) if t == "outbound=marketing")
        );
        // The flag wins over the file.
        let Command::Demo(d) = parse(&["f", "demo", "--config", &shared, "--history", "3"])
            .unwrap()
            .command
        else {
            panic!("demo");
        };
        assert_eq!(d.history, 3);
        let Command::Produce(p) = parse(&["f", "produce", "--config", &shared])
            .unwrap()
            .command
        else {
            panic!("produce");
        };
        assert_eq!((p.count, p.brokers.as_str()), (5, "b:1"));
        assert_eq!(p.rate, Some(0.0));
        // `run`'s `[kafka]` table is `produce --kafka-property` too.
        assert_eq!(p.kafka_property, ["client.id=x", "debug=broker,topic"]);
        let Command::Tail(t) = parse(&["f", "tail", "--config", &shared]).unwrap().command else {
            panic!("tail");
        };
        assert!(t.once);
        // `run` reads the same file, ignoring the other commands' keys.
        let Command::CheckConfig(r) = parse(&["f", "check-config", "--config", &shared])
            .unwrap()
            .command
        else {
            panic!("check-config");
        };
        assert_eq!(r.resolve(defaults::LISTEN).unwrap().kafka.brokers, "b:1");
        // A key no command has, a bad value and a bad flag value are
        // invalid settings naming the key (exit 2).
        for (cmd, text, key) in [
            ("demo", "histroy = 7", "histroy"),
            ("demo", "history = \"long\"", "history"),
            ("tail", "once = \"yes\"", "once"),
            ("demo", "config = \"other.toml\"", "config"),
        ] {
            let bad = file("bad.toml", text);
            match parse(&["f", cmd, "--config", &bad]) {
                Err(crate::Error::Config(e)) => assert!(e.to_string().contains(key), "{e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
