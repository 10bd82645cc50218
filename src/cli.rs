//! Command line (CLI.md): argument parsing, settings resolution
//! (flag > `FUNNELSTREAM_*` env > `--config` TOML file > default) and the
//! commands. `main.rs` only calls [`main`].

use crate::config::{parse_duration_ms, parse_windows, ClockMode, ConfigError, EngineConfig};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::path::PathBuf;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser, Debug)]
#[command(name = "funnelstream", version, about = "Exact rolling-window marketing and sales KPIs, from Kafka to Prometheus")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read events from a file (one JSON event a line; `-` for stdin), apply
    /// them exactly as `run` would, and print the /metrics exposition.
    Replay(ReplayArgs),
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
}

/// The TOML file: every key optional, unknown keys are an error.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
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
}

pub fn load_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        // toml's message names the unknown or mistyped key and its line.
        ConfigError::invalid("config", format!("{}: {}", path.display(), e.to_string().trim()))
    })
}

fn duration(key: &str, v: &str) -> Result<i64, ConfigError> {
    parse_duration_ms(v).map_err(|p| ConfigError::invalid(key, p))
}

fn positive(key: &str, v: &str) -> Result<usize, ConfigError> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::invalid(key, format!("`{v}` is not a positive whole number"))),
    }
}

impl EngineArgs {
    /// Resolves flag > env (both via clap) > file > default.
    pub fn resolve(&self) -> Result<EngineConfig, ConfigError> {
        let file = match &self.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let pick_s = |cli: &Option<String>, f: &Option<String>| cli.clone().or_else(|| f.clone());
        let pick_n = |cli: &Option<String>, f: Option<u64>| cli.clone().or_else(|| f.map(|n| n.to_string()));
        let mut c = EngineConfig::default();
        if let Some(v) = pick_s(&self.windows, &file.windows) {
            c.windows = parse_windows(&v).map_err(|p| ConfigError::invalid("windows", p))?;
        }
        if let Some(v) = pick_s(&self.clock, &file.clock) {
            c.clock = v.parse::<ClockMode>().map_err(|p| ConfigError::invalid("clock", p))?;
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
        Command::Replay(args) => crate::replay::run(&args),
    }
}

/// Prints a configuration error the way every command does; exit code 2.
pub fn config_error(e: &ConfigError) -> i32 {
    eprintln!("funnelstream: invalid configuration: {e}");
    2
}
