//! Command line (CLI.md): argument parsing, settings resolution
//! (flag > `FUNNELSTREAM_*` env > `--config` TOML file > default) and the
//! commands. `main.rs` only calls [`main`].

use crate::config::{parse_duration_ms, parse_windows, ClockMode, ConfigError, EngineConfig};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::path::PathBuf;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// then drain, commit and exit 0.
    Run(RunArgs),
    /// The embedded default: an in-process Kafka-protocol broker, a
    /// realistic synthetic event stream, and the engine on it.
    Demo(DemoArgs),
    /// Write synthetic or file-supplied events to a Kafka topic.
    Produce(crate::produce::ProduceArgs),
    /// Read events from a file (one JSON event a line; `-` for stdin), apply
    /// them exactly as `run` would, and print the /metrics exposition.
    Replay(ReplayArgs),
    /// Follow a running engine's KPIs live in the terminal.
    Tail(crate::tail::TailArgs),
    /// Validate the configuration and print the effective settings.
    CheckConfig(RunArgs),
}

/// Settings of `run` (and `check-config`).
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Kafka bootstrap servers [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT[,..]", env = "FUNNELSTREAM_BROKERS")]
    pub brokers: Option<String>,
    /// Topics to consume [default: funnel-events].
    #[arg(long, value_name = "T[,..]", env = "FUNNELSTREAM_TOPICS")]
    pub topics: Option<String>,
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
        env = "FUNNELSTREAM_CHECKPOINT_TOPIC_CREATE"
    )]
    pub checkpoint_topic_create: Option<String>,
    /// Threads applying events [default: cores - 1, at least 1].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_WORKERS")]
    pub workers: Option<String>,
    /// Most clients following /api/v1/kpis/stream at once; more get 503 [default: 1000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_STREAM_CLIENTS")]
    pub max_stream_clients: Option<String>,
    /// Extra librdkafka property (security.protocol, sasl.*, ssl.*, ...); repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_property: Vec<String>,
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
    pub engine: EngineArgs,
}

/// Settings of `demo`.
#[derive(Args, Debug, Clone, Default)]
pub struct DemoArgs {
    /// HTTP listen address [default: 127.0.0.1:9490].
    #[arg(long, value_name = "ADDR:PORT", env = "FUNNELSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Live traffic after the history: at most N messages a second (the
    /// demo company's own pace is a few a second); 0 = none, the KPIs stay
    /// put [default: 200].
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub rate: u64,
    /// Days of history written at start, up to the longest window (larger
    /// values mean 90) [default: 90].
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub history: u64,
    /// Load-test mode: instead of the company, src/synth.rs's benchmark
    /// stream (random keys, KPIs changing all the time): --events events of
    /// history over the last 89 days, then --rate events a second;
    /// --history is ignored.
    #[arg(long)]
    pub firehose: bool,
    /// With --firehose: events of history written at start [default: 20000].
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20_000,
        requires = "firehose"
    )]
    pub events: u64,
    /// Stop after this many seconds (0 = until SIGTERM/SIGINT).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub duration: u64,
    /// With --firehose: distinct (channel, campaign) keys of the stream (benchmarks: series count).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub keys: u64,
    /// The series budget (see `run --max-series`) [default: 200000].
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub max_series: usize,
    /// Deals remembered per partition (see `run --max-tracked-deals`; soak benchmarks) [default: 1000000].
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_tracked_deals: usize,
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
#[derive(Args, Debug, Default, Clone)]
pub struct EngineArgs {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, value_name = "FILE", env = "FUNNELSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rolling windows [default: 5m,1h,1d,7d,30d,90d].
    #[arg(long, value_name = "W,..", env = "FUNNELSTREAM_WINDOWS")]
    pub windows: Option<String>,
    /// Engine time: `wall` clock or greatest `event` time seen [default: wall].
    #[arg(long, value_name = "wall|event", env = "FUNNELSTREAM_CLOCK")]
    pub clock: Option<String>,
    /// How far `ts` may lie ahead of the wall clock [default: 5m].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_MAX_FUTURE_SKEW")]
    pub max_future_skew: Option<String>,
    /// Extra age past the longest window before an event counts as late [default: 0].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_ALLOWED_LATENESS")]
    pub allowed_lateness: Option<String>,
    /// Event-time horizon of deduplication by `id` [default: 1h].
    #[arg(long, value_name = "DURATION", env = "FUNNELSTREAM_DEDUP_HORIZON")]
    pub dedup_horizon: Option<String>,
    /// Event ids remembered per partition at most [default: 1000000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_DEDUP_CAPACITY")]
    pub dedup_capacity: Option<String>,
    /// Distinct `channel` values before folding into __overflow__ [default: 100].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_CHANNELS")]
    pub max_channels: Option<String>,
    /// Distinct `campaign` values before folding into __overflow__ [default: 10000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_CAMPAIGNS")]
    pub max_campaigns: Option<String>,
    /// Deals remembered per partition for open-pipeline matching [default: 1000000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_TRACKED_DEALS")]
    pub max_tracked_deals: Option<String>,
    /// Longest accepted event, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES", env = "FUNNELSTREAM_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<String>,
    /// Gross margin for LTV and CAC payback, 0 < gm <= 1 [default: 1].
    #[arg(long, value_name = "GM", env = "FUNNELSTREAM_GROSS_MARGIN")]
    pub gross_margin: Option<String>,
    /// `channel=origin` pairs overriding the default origin of a deal's
    /// channel (outbound=sales, partner=partner, unknown=other, else
    /// marketing).
    #[arg(
        long,
        value_name = "CHANNEL=ORIGIN,..",
        env = "FUNNELSTREAM_CHANNEL_ORIGINS"
    )]
    pub channel_origins: Option<String>,
    /// Distinct conversion `action` values before folding into __overflow__ [default: 50].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_ACTIONS")]
    pub max_actions: Option<String>,
    /// Business series published at most; whole (channel, campaign) keys past it fold into __overflow__ [default: 200000].
    #[arg(long, value_name = "N", env = "FUNNELSTREAM_MAX_SERIES")]
    pub max_series: Option<String>,
}

/// `channel_origins` in the TOML file: a table `{ outbound = "marketing" }`
/// or the flag's string form.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ChannelOriginsToml {
    Table(std::collections::BTreeMap<String, String>),
    Text(String),
}

/// Parses `channel=origin` pairs (the `channel_origins` setting).
pub fn parse_channel_origins(
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

fn gross_margin(v: &str) -> Result<f64, ConfigError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(ConfigError::invalid(
            "gross_margin",
            format!("`{v}` is not a number with 0 < gross_margin <= 1"),
        )),
    }
}

/// The TOML file: every key optional, unknown keys are an error.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub brokers: Option<String>,
    pub topics: Option<Vec<String>>,
    pub group: Option<String>,
    pub listen: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub checkpoint_topic: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub checkpoint_policy: Option<String>,
    pub checkpoint_topic_create: Option<bool>,
    pub workers: Option<u64>,
    pub max_stream_clients: Option<u64>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub web_config_file: Option<PathBuf>,
    pub probe_listen: Option<String>,
    /// librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`.
    pub kafka: Option<std::collections::BTreeMap<String, String>>,
    pub windows: Option<String>,
    pub clock: Option<String>,
    pub max_future_skew: Option<String>,
    pub allowed_lateness: Option<String>,
    pub dedup_horizon: Option<String>,
    pub dedup_capacity: Option<u64>,
    pub max_channels: Option<u64>,
    pub max_campaigns: Option<u64>,
    pub max_tracked_deals: Option<u64>,
    pub max_event_bytes: Option<u64>,
    pub gross_margin: Option<f64>,
    pub channel_origins: Option<ChannelOriginsToml>,
    pub max_actions: Option<u64>,
    pub max_series: Option<u64>,
}

pub fn load_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid("config", format!("cannot read {}: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        // toml's message names the unknown or mistyped key and its line.
        ConfigError::invalid(
            "config",
            format!("{}: {}", path.display(), e.to_string().trim()),
        )
    })
}

fn duration(key: &str, v: &str) -> Result<i64, ConfigError> {
    parse_duration_ms(v).map_err(|p| ConfigError::invalid(key, p))
}

fn positive(key: &str, v: &str) -> Result<usize, ConfigError> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::invalid(
            key,
            format!("`{v}` is not a positive whole number"),
        )),
    }
}

impl EngineArgs {
    pub fn file(&self) -> Result<FileConfig, ConfigError> {
        match &self.config {
            Some(p) => load_file(p),
            None => Ok(FileConfig::default()),
        }
    }

    /// Resolves flag > env (both via clap) > file > default.
    pub fn resolve(&self) -> Result<EngineConfig, ConfigError> {
        let file = self.file()?;
        self.resolve_with(&file)
    }

    pub fn resolve_with(&self, file: &FileConfig) -> Result<EngineConfig, ConfigError> {
        let pick_s = |cli: &Option<String>, f: &Option<String>| cli.clone().or_else(|| f.clone());
        let pick_n =
            |cli: &Option<String>, f: Option<u64>| cli.clone().or_else(|| f.map(|n| n.to_string()));
        let mut c = EngineConfig::default();
        if let Some(v) = pick_s(&self.windows, &file.windows) {
            c.windows = parse_windows(&v).map_err(|p| ConfigError::invalid("windows", p))?;
        }
        if let Some(v) = pick_s(&self.clock, &file.clock) {
            c.clock = v
                .parse::<ClockMode>()
                .map_err(|p| ConfigError::invalid("clock", p))?;
        }
        if let Some(v) = pick_s(&self.max_future_skew, &file.max_future_skew) {
            c.max_future_skew_ms = duration("max_future_skew", &v)?;
        }
        if let Some(v) = pick_s(&self.allowed_lateness, &file.allowed_lateness) {
            c.allowed_lateness_ms = duration("allowed_lateness", &v)?;
        }
        if let Some(v) = pick_s(&self.dedup_horizon, &file.dedup_horizon) {
            c.dedup_horizon_ms = duration("dedup_horizon", &v)?;
        }
        if let Some(v) = pick_n(&self.dedup_capacity, file.dedup_capacity) {
            c.dedup_capacity = positive("dedup_capacity", &v)?;
        }
        if let Some(v) = pick_n(&self.max_channels, file.max_channels) {
            c.max_channels = positive("max_channels", &v)?;
        }
        if let Some(v) = pick_n(&self.max_campaigns, file.max_campaigns) {
            c.max_campaigns = positive("max_campaigns", &v)?;
        }
        if let Some(v) = pick_n(&self.max_tracked_deals, file.max_tracked_deals) {
            c.max_tracked_deals = positive("max_tracked_deals", &v)?;
        }
        if let Some(v) = pick_n(&self.max_event_bytes, file.max_event_bytes) {
            c.max_event_bytes = positive("max_event_bytes", &v)?;
        }
        let gm = (self.gross_margin.clone()).or_else(|| file.gross_margin.map(|x| x.to_string()));
        if let Some(v) = gm {
            c.gross_margin = gross_margin(&v)?;
        }
        let pairs = match (&self.channel_origins, &file.channel_origins) {
            (Some(s), _) | (None, Some(ChannelOriginsToml::Text(s))) => {
                Some(channel_origin_pairs(s)?)
            }
            (None, Some(ChannelOriginsToml::Table(t))) => {
                Some(t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            (None, None) => None,
        };
        if let Some(pairs) = pairs {
            c.channel_origins = parse_channel_origins(&pairs)?;
        }
        if let Some(v) = pick_n(&self.max_actions, file.max_actions) {
            c.max_actions = positive("max_actions", &v)?;
        }
        if let Some(v) = pick_n(&self.max_series, file.max_series) {
            c.max_series = positive("max_series", &v)?;
        }
        Ok(c)
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Run(args) => crate::run::run(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Produce(args) => crate::produce::run(&args),
        Command::Replay(args) => crate::replay::run(&args),
        Command::Tail(args) => crate::tail::run(&args),
        Command::CheckConfig(args) => check_config(&args),
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
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
    fn checkpoint_settings(
        &self,
        file: &FileConfig,
    ) -> Result<Option<crate::source::checkpoint::CheckpointSettings>, ConfigError> {
        let pick = |cli: &Option<String>, f: &Option<String>| cli.clone().or_else(|| f.clone());
        let topic = pick(&self.checkpoint_topic, &file.checkpoint_topic);
        let interval = pick(&self.checkpoint_interval, &file.checkpoint_interval);
        let policy = pick(&self.checkpoint_policy, &file.checkpoint_policy);
        let create = match &self.checkpoint_topic_create {
            Some(v) => Some(match v.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ConfigError::invalid(
                        "checkpoint_topic_create",
                        format!("`{v}` is not a boolean: use true or false"),
                    ))
                }
            }),
            None => file.checkpoint_topic_create,
        };
        let Some(topic) = topic else {
            for (key, v) in [
                ("checkpoint_interval", &interval),
                ("checkpoint_policy", &policy),
                ("checkpoint_topic_create", &create.map(|c| c.to_string())),
            ] {
                if v.is_some() {
                    return Err(ConfigError::invalid(key, "needs checkpoint_topic"));
                }
            }
            return Ok(None);
        };
        if topic.trim().is_empty() {
            return Err(ConfigError::invalid("checkpoint_topic", "empty topic name"));
        }
        let interval_ms = match interval {
            Some(v) => crate::config::parse_duration_ms(&v)
                .map_err(|e| ConfigError::invalid("checkpoint_interval", e))?,
            None => 30_000,
        };
        if !(100..=86_400_000).contains(&interval_ms) {
            return Err(ConfigError::invalid(
                "checkpoint_interval",
                "must be between 100ms and 1d",
            ));
        }
        let policy = match policy {
            Some(v) => v
                .parse()
                .map_err(|e: String| ConfigError::invalid("checkpoint_policy", e))?,
            None => crate::source::checkpoint::Policy::Rebuild,
        };
        Ok(Some(crate::source::checkpoint::CheckpointSettings {
            topic,
            interval: std::time::Duration::from_millis(interval_ms as u64),
            policy,
            create: create.unwrap_or(true),
        }))
    }

    pub fn resolve(&self, default_listen: &str) -> Result<RunConfig, ConfigError> {
        let file = self.engine.file()?;
        let engine = self.engine.resolve_with(&file)?;
        let pick = |cli: &Option<String>, f: &Option<String>| cli.clone().or_else(|| f.clone());
        let dead_letter_topic = pick(&self.dead_letter_topic, &file.dead_letter_topic);
        if dead_letter_topic
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(ConfigError::invalid(
                "dead_letter_topic",
                "empty topic name",
            ));
        }
        let checkpoint = self.checkpoint_settings(&file)?;
        let brokers = pick(&self.brokers, &file.brokers).unwrap_or_else(|| "127.0.0.1:9092".into());
        if brokers.trim().is_empty() {
            return Err(ConfigError::invalid("brokers", "empty broker list"));
        }
        let topics = match (&self.topics, &file.topics) {
            (Some(t), _) => split_list(t),
            (None, Some(t)) => t.clone(),
            (None, None) => vec!["funnel-events".into()],
        };
        if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "topics",
                "at least one non-empty topic name is needed",
            ));
        }
        // The engine must not read its own output back as events.
        for (key, t) in [
            ("dead_letter_topic", dead_letter_topic.as_ref()),
            ("checkpoint_topic", checkpoint.as_ref().map(|c| &c.topic)),
        ] {
            if let Some(t) = t.filter(|t| topics.contains(t)) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{t}` is also one of the consumed topics"),
                ));
            }
        }
        if let (Some(d), Some(c)) = (&dead_letter_topic, &checkpoint) {
            if *d == c.topic {
                return Err(ConfigError::invalid(
                    "checkpoint_topic",
                    "must differ from dead_letter_topic",
                ));
            }
        }
        let group = pick(&self.group, &file.group).unwrap_or_else(|| "funnelstream".into());
        if group.trim().is_empty() {
            return Err(ConfigError::invalid("group", "empty group id"));
        }
        let listen_s = pick(&self.listen, &file.listen).unwrap_or_else(|| default_listen.into());
        let listen = listen_addr("listen", &listen_s)?;
        let mut http = crate::export::http::HttpLimits::default();
        match (&self.max_stream_clients, file.max_stream_clients) {
            (Some(n), _) => http.streams.max_clients = positive("max_stream_clients", n)?,
            (None, Some(n)) => {
                http.streams.max_clients = positive("max_stream_clients", &n.to_string())?
            }
            (None, None) => {}
        }
        let workers = match (&self.workers, file.workers) {
            (Some(w), _) => positive("workers", w)?,
            (None, Some(w)) => positive("workers", &w.to_string())?,
            (None, None) => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1),
        };
        let mut properties: Vec<(String, String)> =
            file.kafka.clone().unwrap_or_default().into_iter().collect();
        for kv in &self.kafka_property {
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
        let log_format = match pick(&self.log_format, &file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "log_format",
                    format!("`{other}`: use text or json"),
                ))
            }
        };
        let log_level = pick(&self.log_level, &file.log_level)
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::invalid(
                "log_level",
                format!("`{log_level}` is not a log filter"),
            ));
        }
        let web_config_file = self
            .web_config_file
            .clone()
            .or_else(|| file.web_config_file.clone());
        let security = match &web_config_file {
            Some(p) => crate::export::security::load(p)?,
            None => Default::default(),
        };
        let probe_listen = match pick(&self.probe_listen, &file.probe_listen) {
            Some(v) => Some(listen_addr("probe_listen", &v)?),
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
            web_config_file,
            security,
        })
    }
}

/// Property names whose values are secrets: never printed or logged.
pub fn is_secret(key: &str) -> bool {
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

fn check_config(args: &RunArgs) -> i32 {
    let cfg = match args.resolve("0.0.0.0:9490") {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    // Let librdkafka validate the properties (names and values).
    match crate::source::client_config(&cfg.kafka) {
        Ok(c) => {
            if let Err(e) = c.create::<rdkafka::consumer::BaseConsumer>() {
                eprintln!("funnelstream: invalid configuration: kafka: {e}");
                return 2;
            }
        }
        Err(e) => {
            eprintln!("funnelstream: invalid configuration: {e}");
            return 2;
        }
    }
    print!("{}", effective_settings(&cfg));
    0
}

/// The effective settings as TOML, secrets masked.
pub fn effective_settings(cfg: &RunConfig) -> String {
    use crate::config::format_duration_ms;
    let q = |s: &str| format!("{s:?}");
    let e = &cfg.engine;
    let mut out = String::new();
    out.push_str(&format!("brokers = {}\n", q(&cfg.kafka.brokers)));
    out.push_str(&format!(
        "topics = [{}]\n",
        cfg.kafka
            .topics
            .iter()
            .map(|t| q(t))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!("group = {}\n", q(&cfg.kafka.group)));
    if let Some(t) = &cfg.kafka.dead_letter_topic {
        out.push_str(&format!("dead_letter_topic = {}\n", q(t)));
    }
    if let Some(c) = &cfg.kafka.checkpoint {
        out.push_str(&format!("checkpoint_topic = {}\n", q(&c.topic)));
        out.push_str(&format!(
            "checkpoint_interval = {}\n",
            q(&crate::config::format_duration_ms(
                c.interval.as_millis() as i64
            ))
        ));
        out.push_str(&format!(
            "checkpoint_policy = {}\n",
            q(&c.policy.to_string())
        ));
        out.push_str(&format!("checkpoint_topic_create = {}\n", c.create));
    }
    out.push_str(&format!("listen = {}\n", q(&cfg.listen.to_string())));
    out.push_str(&format!("workers = {}\n", cfg.kafka.workers));
    out.push_str(&format!(
        "max_stream_clients = {}\n",
        cfg.http.streams.max_clients
    ));
    if let Some(p) = &cfg.probe_listen {
        out.push_str(&format!("probe_listen = {}\n", q(&p.to_string())));
    }
    if let Some(p) = &cfg.web_config_file {
        out.push_str(&format!(
            "web_config_file = {}  # tls: {}, basic auth users: {}\n",
            q(&p.display().to_string()),
            cfg.security.tls.is_some(),
            cfg.security.auth.is_some()
        ));
    }
    out.push_str(&format!(
        "log_format = {}\nlog_level = {}\n",
        q(if cfg.log_format == LogFormat::Json {
            "json"
        } else {
            "text"
        }),
        q(&cfg.log_level)
    ));
    out.push_str(&format!(
        "windows = {}\n",
        q(&e.windows
            .iter()
            .map(|w| w.label.clone())
            .collect::<Vec<_>>()
            .join(","))
    ));
    out.push_str(&format!("clock = {}\n", q(&e.clock.to_string())));
    out.push_str(&format!(
        "max_future_skew = {}\n",
        q(&format_duration_ms(e.max_future_skew_ms))
    ));
    out.push_str(&format!(
        "allowed_lateness = {}\n",
        q(&format_duration_ms(e.allowed_lateness_ms))
    ));
    out.push_str(&format!(
        "dedup_horizon = {}\n",
        q(&format_duration_ms(e.dedup_horizon_ms))
    ));
    out.push_str(&format!("dedup_capacity = {}\n", e.dedup_capacity));
    out.push_str(&format!("max_channels = {}\n", e.max_channels));
    out.push_str(&format!("max_campaigns = {}\n", e.max_campaigns));
    out.push_str(&format!("max_tracked_deals = {}\n", e.max_tracked_deals));
    out.push_str(&format!("max_event_bytes = {}\n", e.max_event_bytes));
    out.push_str(&format!("gross_margin = {:?}\n", e.gross_margin));
    out.push_str(&format!("max_actions = {}\n", e.max_actions));
    out.push_str(&format!("max_series = {}\n", e.max_series));
    out.push_str(&format!(
        "channel_origins = {}\n",
        q(&e.channel_origins
            .iter()
            .map(|(c, o)| format!("{c}={}", o.as_str()))
            .collect::<Vec<_>>()
            .join(","))
    ));
    if !cfg.kafka.properties.is_empty() {
        out.push_str("\n[kafka]\n");
        for (k, v) in &cfg.kafka.properties {
            let v = if is_secret(k) {
                "***".to_string()
            } else {
                v.clone()
            };
            out.push_str(&format!("{} = {}\n", q(k), q(&v)));
        }
    }
    out
}

/// Installs the tracing subscriber (stderr, text or JSON).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Prints a configuration error the way every command does; exit code 2.
pub fn config_error(e: &ConfigError) -> i32 {
    eprintln!("funnelstream: invalid configuration: {e}");
    2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Origin;

    fn toml(text: &str) -> FileConfig {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn v2_settings_resolve_from_flags_and_file() {
        let d = EngineArgs::default()
            .resolve_with(&FileConfig::default())
            .unwrap();
        assert_eq!(d.gross_margin, 1.0);
        assert_eq!(d.max_actions, 50);
        assert!(d.channel_origins.is_empty());
        let file = toml(
            "gross_margin = 0.75\nmax_actions = 7\n[channel_origins]\noutbound = \"marketing\"\n",
        );
        let c = EngineArgs::default().resolve_with(&file).unwrap();
        assert_eq!(c.gross_margin, 0.75);
        assert_eq!(c.max_actions, 7);
        assert_eq!(
            c.channel_origins,
            vec![("outbound".into(), Origin::Marketing)]
        );
        // The string form in the file, and an integer margin.
        let file =
            toml("gross_margin = 1\nchannel_origins = \"events=partner, paid_social=other\"\n");
        let c = EngineArgs::default().resolve_with(&file).unwrap();
        assert_eq!(c.gross_margin, 1.0);
        assert_eq!(
            c.channel_origins,
            vec![
                ("events".into(), Origin::Partner),
                ("paid_social".into(), Origin::Other)
            ]
        );
        // Flags win over the file.
        let args = EngineArgs {
            gross_margin: Some("0.5".into()),
            channel_origins: Some("partner=sales".into()),
            max_actions: Some("3".into()),
            ..EngineArgs::default()
        };
        let c = args.resolve_with(&file).unwrap();
        assert_eq!(c.gross_margin, 0.5);
        assert_eq!(c.max_actions, 3);
        assert_eq!(c.channel_origins, vec![("partner".into(), Origin::Sales)]);
    }

    #[test]
    fn bad_v2_settings_name_the_key() {
        let bad = |args: EngineArgs, key: &str| {
            let e = args.resolve_with(&FileConfig::default()).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
        };
        for gm in ["0", "-0.5", "1.01", "NaN", "inf", "x", ""] {
            bad(
                EngineArgs {
                    gross_margin: Some(gm.into()),
                    ..EngineArgs::default()
                },
                "gross_margin",
            );
        }
        for co in ["outbound", "outbound=ads", "=sales", "a=sales,a=other"] {
            bad(
                EngineArgs {
                    channel_origins: Some(co.into()),
                    ..EngineArgs::default()
                },
                "channel_origins",
            );
        }
        for n in ["0", "-1", "x"] {
            bad(
                EngineArgs {
                    max_actions: Some(n.into()),
                    ..EngineArgs::default()
                },
                "max_actions",
            );
        }
        let file = toml("gross_margin = 2.0\n");
        let e = EngineArgs::default().resolve_with(&file).unwrap_err();
        assert!(e.to_string().starts_with("gross_margin: "), "{e}");
    }
}
