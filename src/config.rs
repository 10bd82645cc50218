//! Typed engine settings and the small parsers they need (Prometheus-style
//! durations, window lists). Settings are plain data: the CLI (flags, env,
//! TOML file) builds them, the stages read them.

use std::fmt;
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    /// A value of setting `key` that does not parse.
    #[error("{key}: {source}")]
    Parse { key: String, source: ParseError },
}

impl ConfigError {
    pub fn invalid(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    pub fn parse(key: &str, source: ParseError) -> Self {
        ConfigError::Parse {
            key: key.to_string(),
            source,
        }
    }

    /// The setting's key.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::Parse { key, .. } => key,
        }
    }

    /// The problem, without the key.
    pub fn problem(&self) -> String {
        match self {
            ConfigError::Invalid { problem, .. } => problem.clone(),
            ConfigError::Parse { source, .. } => source.to_string(),
        }
    }

    /// The same error, its key followed by where the value was given
    /// (`max_series (--max-series)`, `(FUNNELSTREAM_MAX_SERIES)` or
    /// `(the file's path)`), so the message names what to fix.
    pub fn given_by(mut self, route: &str) -> Self {
        let (ConfigError::Invalid { key, .. } | ConfigError::Parse { key, .. }) = &mut self;
        if !key.contains(" (") {
            // After the setting, before a part inside it
            // (`web_config_file: tls_server_config`).
            let (setting, inside) = key
                .split_once(": ")
                .map_or((key.as_str(), ""), |(s, i)| (s, i));
            let sep = if inside.is_empty() { "" } else { ": " };
            *key = format!("{setting} ({route}){sep}{inside}");
        }
        self
    }
}

/// Why a value does not parse as a duration, a window list or a clock
/// (the parsers below know the value, not the setting's key:
/// [`ConfigError::parse`] adds it).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty duration")]
    EmptyDuration,
    #[error("`{0}` is not a duration like 5m, 1h30m or 90d")]
    NotADuration(String),
    #[error("`{0}`: number too large")]
    NumberTooLarge(String),
    #[error("`{value}`: unknown unit `{unit}` (use ms, s, m, h, d, w or y)")]
    UnknownUnit { value: String, unit: String },
    #[error("`{0}`: units must go from largest to smallest")]
    UnitOrder(String),
    #[error("`{0}`: duration too large")]
    DurationTooLarge(String),
    #[error("window {0} is shorter than the 1m minimum")]
    WindowTooShort(String),
    #[error("windows longer than 10y are not supported")]
    WindowTooLong,
    #[error("empty entry in the window list")]
    EmptyWindowEntry,
    #[error("window {0} is listed twice")]
    WindowTwice(String),
    #[error("at least one window is needed")]
    NoWindow,
    #[error("at most {MAX_WINDOWS} windows are supported")]
    TooManyWindows,
    #[error("`{0}` is not a clock: use wall or event")]
    NotAClock(String),
    #[error("`{0}` is not a calendar window: use mtd, qtd, ytd, last_month or last_quarter")]
    NotACalendarWindow(String),
    #[error("calendar window {0} is listed twice")]
    CalendarWindowTwice(String),
    #[error("empty time zone name")]
    EmptyTimeZone,
    #[error("`{0}` is not an IANA time zone (like UTC, Europe/Berlin or America/New_York)")]
    NotATimeZone(String),
}

const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration (`5m`, `1h30m`, `90d`, `500ms`, `0`) into
/// milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, ParseError> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(ParseError::EmptyDuration);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(ParseError::NotADuration(s.to_string()));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| ParseError::NumberTooLarge(s.to_string()))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(ParseError::UnknownUnit {
                value: s.to_string(),
                unit: unit.to_string(),
            });
        };
        if last_unit != usize::MAX && pos <= last_unit {
            return Err(ParseError::UnitOrder(s.to_string()));
        }
        last_unit = pos;
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| ParseError::DurationTooLarge(s.to_string()))?;
    }
    Ok(total)
}

/// Formats milliseconds as a Prometheus duration using d, h, m, s and ms
/// (`7d`, `90d`, `1h30m`), as the contract's `window` label wants.
pub(crate) fn format_duration_ms(mut ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (u, n) in UNITS.iter().skip(2) {
        if ms >= *n {
            out.push_str(&(ms / n).to_string());
            out.push_str(u);
            ms %= n;
        }
    }
    out
}

/// One rolling window: its length, bucket width and `window` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub len_ms: i64,
    /// `len_ms / 60`: buckets per window are [`BUCKETS_PER_WINDOW`].
    pub width_ms: i64,
    pub label: String,
}

/// Buckets per window: a bucket is at most `W / 60` wide (METRICS.md).
pub(crate) const BUCKETS_PER_WINDOW: i64 = 60;
pub(crate) const MAX_WINDOWS: usize = 16;

impl WindowSpec {
    pub fn new(len_ms: i64) -> Result<Self, ParseError> {
        if len_ms < 60_000 {
            return Err(ParseError::WindowTooShort(format_duration_ms(len_ms)));
        }
        if len_ms > 10 * 365 * 86_400_000 {
            return Err(ParseError::WindowTooLong);
        }
        Ok(WindowSpec {
            len_ms,
            width_ms: len_ms / BUCKETS_PER_WINDOW,
            label: format_duration_ms(len_ms),
        })
    }
}

/// Parses `5m,1h,1d` into window specs, in the given order.
pub fn parse_windows(s: &str) -> Result<Vec<WindowSpec>, ParseError> {
    let mut out: Vec<WindowSpec> = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(ParseError::EmptyWindowEntry);
        }
        let w = WindowSpec::new(parse_duration_ms(part)?)?;
        if out.iter().any(|o| o.len_ms == w.len_ms) {
            return Err(ParseError::WindowTwice(w.label));
        }
        out.push(w);
    }
    if out.is_empty() {
        return Err(ParseError::NoWindow);
    }
    if out.len() > MAX_WINDOWS {
        return Err(ParseError::TooManyWindows);
    }
    Ok(out)
}

pub(crate) const DEFAULT_WINDOWS: &str = "5m,1h,1d,7d,30d,90d";

/// Which clock drives engine time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The wall clock (live use).
    Wall,
    /// The greatest event time seen so far (replays, backfills, tests).
    Event,
}

impl std::str::FromStr for ClockMode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "wall" => Ok(ClockMode::Wall),
            "event" => Ok(ClockMode::Event),
            _ => Err(ParseError::NotAClock(s.to_string())),
        }
    }
}

impl fmt::Display for ClockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockMode::Wall => "wall",
            ClockMode::Event => "event",
        })
    }
}

/// A calendar window (METRICS.md v2, "Calendar windows"), in the
/// contract's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CalWindow {
    Mtd,
    Qtd,
    Ytd,
    LastMonth,
    LastQuarter,
}

impl CalWindow {
    pub const ALL: [CalWindow; 5] = [
        CalWindow::Mtd,
        CalWindow::Qtd,
        CalWindow::Ytd,
        CalWindow::LastMonth,
        CalWindow::LastQuarter,
    ];

    /// The `window` label value.
    pub fn label(self) -> &'static str {
        match self {
            CalWindow::Mtd => "mtd",
            CalWindow::Qtd => "qtd",
            CalWindow::Ytd => "ytd",
            CalWindow::LastMonth => "last_month",
            CalWindow::LastQuarter => "last_quarter",
        }
    }
}

/// Parses `mtd,qtd` (any subset of the calendar windows, `none` or empty
/// for none) into the contract's order.
pub fn parse_calendar_windows(s: &str) -> Result<Vec<CalWindow>, ParseError> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let Some(w) = CalWindow::ALL.into_iter().find(|w| w.label() == part) else {
            return Err(ParseError::NotACalendarWindow(part.to_string()));
        };
        if out.contains(&w) {
            return Err(ParseError::CalendarWindowTwice(part.to_string()));
        }
        out.push(w);
    }
    out.sort();
    Ok(out)
}

/// The calendar windows' settings.
#[derive(Debug, Clone)]
pub struct CalendarConfig {
    /// In the contract's order; empty: calendar windows off.
    pub windows: Vec<CalWindow>,
    /// IANA name, as given.
    pub timezone: String,
    pub tz: jiff::tz::TimeZone,
    /// 1..=12.
    pub fiscal_year_start_month: u8,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            windows: Vec::new(),
            timezone: "UTC".into(),
            tz: jiff::tz::TimeZone::UTC,
            fiscal_year_start_month: 1,
        }
    }
}

/// Looks an IANA time zone up in the bundled tz database.
pub fn parse_timezone(s: &str) -> Result<jiff::tz::TimeZone, ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::EmptyTimeZone);
    }
    jiff::tz::TimeZone::get(s).map_err(|_| ParseError::NotATimeZone(s.to_string()))
}

/// Everything the engine core (decode, dedup, aggregate) needs to know.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub windows: Vec<WindowSpec>,
    pub clock: ClockMode,
    pub max_future_skew_ms: i64,
    pub allowed_lateness_ms: i64,
    pub dedup_horizon_ms: i64,
    pub dedup_capacity: usize,
    pub max_channels: usize,
    pub max_campaigns: usize,
    pub max_tracked_deals: usize,
    pub max_event_bytes: usize,
    /// Conversion `action` cardinality limit (v2).
    pub max_actions: usize,
    /// `gross_margin`, 0 < gm <= 1 (v2): LTV and CAC payback.
    pub gross_margin: f64,
    /// `channel_origins` (v2): channels whose deals default to another
    /// origin than EVENTS.md's mapping.
    pub channel_origins: Vec<(String, crate::decode::Origin)>,
    /// `max_series`: the series budget (whole keys past it fold into
    /// `__overflow__`; see `aggregate::labels::KeyBudget`).
    pub max_series: usize,
    /// Calendar windows (v2, opt-in).
    pub calendar: CalendarConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            windows: parse_windows(DEFAULT_WINDOWS).expect("default windows parse"),
            clock: ClockMode::Wall,
            max_future_skew_ms: 5 * 60_000,
            allowed_lateness_ms: 0,
            dedup_horizon_ms: 86_400_000,
            dedup_capacity: 1_000_000,
            max_channels: 100,
            max_campaigns: 10_000,
            max_tracked_deals: 1_000_000,
            max_event_bytes: 1 << 20,
            max_actions: 50,
            gross_margin: 1.0,
            channel_origins: Vec::new(),
            max_series: 200_000,
            calendar: CalendarConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Values of the `window` label: rolling and calendar windows.
    pub(crate) fn published_windows(&self) -> usize {
        self.windows.len() + self.calendar.windows.len()
    }

    pub fn longest_window_ms(&self) -> i64 {
        self.windows.iter().map(|w| w.len_ms).max().unwrap_or(0)
    }

    pub fn decode_config(&self) -> crate::decode::DecodeConfig {
        crate::decode::DecodeConfig {
            max_future_skew_ms: self.max_future_skew_ms,
            max_event_bytes: self.max_event_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_duration_ms("1w"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "1m1h",
            "5m5m",
            "99999999999999999999d",
            "-5m",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_follow_the_contract() {
        let w = parse_windows(DEFAULT_WINDOWS).unwrap();
        let labels: Vec<_> = w.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, ["5m", "1h", "1d", "7d", "30d", "90d"]);
        assert_eq!(w[0].width_ms, 5000);
        assert_eq!(w[5].width_ms, 129_600_000);
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(parse_windows("1w").unwrap()[0].label, "7d");
    }

    #[test]
    fn window_list_errors() {
        assert!(parse_windows("5m,5m").is_err());
        assert!(parse_windows("30s").is_err());
        assert!(parse_windows("5m,,1h").is_err());
    }
}
