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
    let cli = Cli::try_parse_from(&argv)?;
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(&argv)?;
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(cli);
    };
    let Some(path) = sub
        .get_one::<PathBuf>("config")
        .filter(|_| LAYERED.contains(&name))
    else {
        return Ok(cli);
    };
    let at = |problem: String| format!("{}: {problem}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid("config", at(format!("cannot read it: {e}"))))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::invalid("config", at(e.to_string().trim().to_string())))?;
    let this = cmd.find_subcommand(name).expect("the parsed command");
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
            return Err(ConfigError::invalid(key, at("no such setting".into())).into());
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
                    return Err(ConfigError::invalid(
                        key,
                        at(format!("`{v}` is not true or false")),
                    )
                    .into())
                }
                (false, _) => vec![format!("--{long}={v}")],
            };
            // Checked alone, so that a bad value is told as the file's key.
            let alone = [argv[0].clone(), name.into()]
                .into_iter()
                .chain(args.iter().map(Into::into));
            if let Err(e) = Cli::try_parse_from(alone) {
                let told = e.to_string();
                let first = told.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                return Err(ConfigError::invalid(key, at(first.to_string())).into());
            }
            extra.extend(args);
        }
    }
    Ok(Cli::try_parse_from(
        argv.into_iter().chain(extra.into_iter().map(Into::into)),
    )?)
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
    /// Threads applying events [default: cores - 1, at least 1].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_WORKERS", value_parser = whole("workers"))]
    pub workers: Option<u64>,
    /// Most clients following /api/v1/kpis/stream at once; more get 503 [default: 1000].
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
        env = "FUNNELSTREAM_HISTORY"
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
        env = "FUNNELSTREAM_KEYS"
    )]
    pub keys: u64,
    /// The series budget (see `run --max-series`).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200_000,
        env = "FUNNELSTREAM_MAX_SERIES"
    )]
    pub max_series: usize,
    /// Deals remembered per partition (see `run --max-tracked-deals`; soak benchmarks).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        env = "FUNNELSTREAM_MAX_TRACKED_DEALS"
    )]
    pub(crate) max_tracked_deals: usize,
    /// Event ids remembered for deduplication per partition (see `run --dedup-capacity`; soak benchmarks).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        env = "FUNNELSTREAM_DEDUP_CAPACITY"
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
        env = "FUNNELSTREAM_FISCAL_YEAR_START_MONTH"
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
        default_value = defaults::BROKERS
    )]
    pub brokers: String,
    /// Topic to write to.
    #[arg(long, value_name = "T", default_value = defaults::TOPIC, env = "FUNNELSTREAM_TOPIC")]
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
        env = "FUNNELSTREAM_KEYS"
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
    /// NDJSON input file, `-` for stdin.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_FROM")]
    pub from: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
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
    /// How far `ts` may lie ahead of the wall clock [default: 5m].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_MAX_FUTURE_SKEW")]
    pub(crate) max_future_skew: Option<String>,
    /// Extra age past what the windows cover (twice the longest window, for
    /// the previous windows; the previous period of a calendar window)
    /// before an event counts as late [default: 0].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_ALLOWED_LATENESS")]
    pub(crate) allowed_lateness: Option<String>,
    /// How long an accepted `id` is remembered, in engine time after its acceptance [default: 24h].
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
    /// Distinct conversion `action` values before folding into __overflow__ [default: 50].
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

fn whole(key: &'static str) -> impl Fn(&str) -> Result<u64, ConfigError> + Clone {
    move |v| {
        v.trim()
            .parse()
            .map_err(|_| ConfigError::invalid(key, format!("`{v}` is not a positive whole number")))
    }
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

fn list(v: &str) -> Result<List, ConfigError> {
    Ok(List(split_list(v)))
}

fn origins(v: &str) -> Result<ChannelOrigins, ConfigError> {
    Ok(ChannelOrigins::Text(v.to_string()))
}

fn duration(key: &str, v: &str) -> Result<i64, ConfigError> {
    parse_duration_ms(v).map_err(|p| ConfigError::parse(key, p))
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
        c.max_future_skew_ms = duration("max_future_skew", v)?;
    }
    if let Some(v) = &s.allowed_lateness {
        c.allowed_lateness_ms = duration("allowed_lateness", v)?;
    }
    if let Some(v) = &s.dedup_horizon {
        c.dedup_horizon_ms = duration("dedup_horizon", v)?;
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
        c.max_actions = positive("max_actions", n)?;
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
            return Err(ConfigError::invalid(
                "fiscal_year_start_month",
                format!("`{n}` is not a month: use 1 (January) to 12 (December)"),
            ));
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
        if brokers.trim().is_empty() {
            return Err(ConfigError::invalid("brokers", "empty broker list"));
        }
        let topics = topics(&s, dead_letter_topic.as_ref(), checkpoint.as_ref())?;
        let group = s.group.clone().unwrap_or_else(|| defaults::GROUP.into());
        if group.trim().is_empty() {
            return Err(ConfigError::invalid("group", "empty group id"));
        }
        let listen_s = s.listen.clone().unwrap_or_else(|| default_listen.into());
        let listen = listen_addr("listen", &listen_s)?;
        let mut http = crate::export::http::HttpLimits::default();
        if let Some(n) = s.max_stream_clients {
            http.streams.max_clients = positive("max_stream_clients", n)?;
        }
        let workers = match s.workers {
            Some(w) => positive("workers", w)?,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1),
        };
        let properties = kafka_properties(&s, &self.kafka_property)?;
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
        Ok(RunConfig {
            probe_listen,
            http,
            engine,
            kafka: crate::source::KafkaSettings {
                brokers,
                topics,
                group,
                properties,
                workers,
                dead_letter_topic,
                checkpoint,
            },
            listen,
            log_format,
            log_level,
            web_config_file: s.web_config_file,
            security,
        })
    }
}

/// Where the engine writes: the dead-letter topic and the checkpoints.
fn outputs(s: &Settings) -> Result<(Option<String>, Option<CheckpointSettings>), ConfigError> {
    let dead_letter_topic = s.dead_letter_topic.clone();
    if dead_letter_topic
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(ConfigError::invalid(
            "dead_letter_topic",
            "empty topic name",
        ));
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
    if topic.trim().is_empty() {
        return Err(ConfigError::invalid("checkpoint_topic", "empty topic name"));
    }
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
    if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::invalid(
            "topics",
            "at least one non-empty topic name is needed",
        ));
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

/// The file's `[kafka]` table, overridden by `--kafka-property`; the
/// properties funnelstream sets itself are refused.
fn kafka_properties(s: &Settings, flags: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut properties = s.kafka.clone().unwrap_or_default().0;
    for kv in flags {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ConfigError::invalid(
                "kafka-property",
                format!("`{kv}` is not KEY=VALUE"),
            ));
        };
        properties.retain(|(pk, _)| pk != k.trim());
        properties.push((k.trim().to_string(), v.to_string()));
    }
    for (k, _) in &properties {
        if crate::source::MANAGED_PROPERTIES.contains(&k.as_str()) {
            return Err(ConfigError::invalid(
                &format!("kafka.{k}"),
                "set by funnelstream itself (use brokers / group, or leave it out)",
            ));
        }
    }
    Ok(properties)
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
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
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
             once = true\ncount = 5\n[kafka]\na = \"1\"\nb = \"2,3\"\n",
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
        assert_eq!(p.kafka_property, ["a=1", "b=2,3"]);
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
