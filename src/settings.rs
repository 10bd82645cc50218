//! The settings of `run` (and the engine settings of `replay`) as one
//! typed struct, [`Settings`]: what the TOML file may say (unknown keys are
//! an error), what the flags and `FUNNELSTREAM_*` variables say (clap
//! parses them into the same types), layered flag > env > file by
//! [`layer`], and what `check-config` prints back ([`Settings::to_toml`],
//! the effective values serialized). Defaults are not in here: a missing
//! value takes `EngineConfig::default()` or `cli::defaults` when resolved.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every key of the TOML file, in the order `check-config` prints them.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_topic_create: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stream_clients: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_config_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_future_skew: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) allowed_lateness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dedup_horizon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dedup_capacity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_channels: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_campaigns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tracked_deals: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gross_margin: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_actions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_series: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) calendar_windows: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) calendar_timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiscal_year_start_month: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_origins: Option<ChannelOrigins>,
    /// librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Properties>,
}

/// librdkafka properties in order (a file's sorted by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties(pub Vec<(String, String)>);

impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sorted = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(Properties(sorted.into_iter().collect()))
    }
}

/// `channel_origins`: a table `{ outbound = "marketing" }` in the file, or
/// the flag's `channel=origin,..` text (also accepted in the file).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum ChannelOrigins {
    Table(std::collections::BTreeMap<String, String>),
    Text(String),
}

impl Settings {
    /// The settings of a TOML file, without the keys `foreign` says belong
    /// to other commands (one file can serve every command).
    pub fn load(path: &Path, foreign: impl Fn(&str) -> bool) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("config", format!("cannot read {}: {e}", path.display()))
        })?;
        // toml's message names the unknown or mistyped key and its line.
        let invalid = |e: &dyn std::fmt::Display| {
            ConfigError::invalid(
                "config",
                format!("{}: {}", path.display(), e.to_string().trim()),
            )
        };
        toml::from_str(&text).or_else(|e| {
            let mut table: toml::Table = toml::from_str(&text).map_err(|_| invalid(&e))?;
            let before = table.len();
            table.retain(|k, _| !foreign(k));
            if table.len() == before {
                return Err(invalid(&e));
            }
            table.try_into().map_err(|e| invalid(&e))
        })
    }

    /// The settings as TOML, in field order, with `comments` after the
    /// values of their keys (`check-config`).
    pub(crate) fn to_toml(&self, comments: &[(&str, String)]) -> Result<String, ConfigError> {
        let table = toml::Table::try_from(self).map_err(internal)?;
        let mut out = String::new();
        let mut tables = String::new();
        for (k, v) in &table {
            if let toml::Value::Table(t) = v {
                tables.push_str(&format!("\n[{k}]\n"));
                for (k, v) in t {
                    tables.push_str(&format!("{:?} = {}\n", k, value(v)));
                }
                continue;
            }
            out.push_str(&format!("{k} = {}", value(v)));
            if let Some((_, c)) = comments.iter().find(|(key, _)| key == k) {
                out.push_str(&format!("  # {c}"));
            }
            out.push('\n');
        }
        Ok(out + &tables)
    }
}

fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => format!("{x:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => {
            format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

fn internal(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid("config", e.to_string())
}

/// flag > env (both through clap) > file: every value the flags set (a
/// struct with the file's key names and types) replaces the file's.
pub(crate) fn layer(flags: &impl Serialize, file: Settings) -> Result<Settings, ConfigError> {
    let mut table = toml::Table::try_from(file).map_err(internal)?;
    table.extend(toml::Table::try_from(flags).map_err(internal)?);
    table.try_into().map_err(internal)
}
