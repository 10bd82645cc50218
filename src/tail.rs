//! `funnelstream tail`: follows a running engine's KPIs in the terminal,
//! through `/api/v1/kpis` (`--once`: one table) and `/api/v1/kpis/stream`
//! (server-sent events: a table, then one line per changed series). Colour
//! only when stdout is a terminal.

use crate::export::api::{KpiSeries, Snapshot};
use clap::Args;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args, Debug, Clone)]
pub struct TailArgs {
    /// The engine's HTTP address.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9490",
        env = "FUNNELSTREAM_URL"
    )]
    pub url: String,
    /// Print the current table and exit.
    #[arg(long)]
    pub once: bool,
    /// Only this metric (e.g. funnel_cac).
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// Only this window (e.g. 1d).
    #[arg(long, value_name = "W")]
    pub window: Option<String>,
    #[arg(long, value_name = "C")]
    pub channel: Option<String>,
    #[arg(long, value_name = "C")]
    pub campaign: Option<String>,
    /// Seconds between updates when following.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub interval: f64,
    /// Basic-auth user (the password from FUNNELSTREAM_PASSWORD).
    #[arg(long, value_name = "USER", env = "FUNNELSTREAM_USER")]
    pub user: Option<String>,
    /// PEM file of the CA that signed the engine's certificate (https://
    /// URLs with a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

fn agent(args: &TailArgs) -> Result<ureq::Agent, String> {
    let Some(ca) = &args.ca_cert else {
        return Ok(ureq::agent());
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = std::fs::read(ca).map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &data[..]) {
        let c = c.map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .tls_config(std::sync::Arc::new(cfg))
        .build())
}

fn query(args: &TailArgs) -> String {
    let mut q = vec![format!("interval={}", args.interval)];
    for (k, v) in [
        ("metric", &args.metric),
        ("window", &args.window),
        ("channel", &args.channel),
        ("campaign", &args.campaign),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    q.join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn request(args: &TailArgs, path: &str) -> Result<ureq::Response, String> {
    let url = format!("{}{path}?{}", args.url.trim_end_matches('/'), query(args));
    let mut req = agent(args)?.get(&url);
    if let Some(user) = &args.user {
        use base64::Engine as _;
        let password = std::env::var("FUNNELSTREAM_PASSWORD").unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.set("Authorization", &format!("Basic {token}"));
    }
    req.call().map_err(|e| match e {
        ureq::Error::Status(401, _) => {
            format!("{url}: 401 unauthorized (check --user and FUNNELSTREAM_PASSWORD)")
        }
        ureq::Error::Status(code, r) => format!("{url}: HTTP {code} {}", r.status_text()),
        other => format!("{url}: {other}"),
    })
}

/// `metric{channel="..",campaign="..",window=".."}`
pub fn series_name(s: &KpiSeries) -> String {
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

pub fn format_value(v: Option<f64>) -> String {
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

pub fn run(args: &TailArgs) -> i32 {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        return crate::cli::config_error(&crate::config::ConfigError::invalid(
            "interval",
            "must be a positive number of seconds",
        ));
    }
    let colour = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    if args.once {
        return match request(args, "/api/v1/kpis").and_then(|r| {
            serde_json::from_reader::<_, Snapshot>(r.into_reader()).map_err(|e| e.to_string())
        }) {
            Ok(s) => {
                let _ = out.write_all(table(&s).as_bytes());
                0
            }
            Err(e) => {
                eprintln!("funnelstream tail: {e}");
                1
            }
        };
    }
    let resp = match request(args, "/api/v1/kpis/stream") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("funnelstream tail: {e}");
            return 1;
        }
    };
    let reader = std::io::BufReader::new(resp.into_reader());
    let mut last: HashMap<String, Option<f64>> = HashMap::new();
    let mut event = String::new();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            let Ok(snap) = serde_json::from_str::<Snapshot>(data.trim()) else {
                continue;
            };
            let text = if event == "snapshot" {
                table(&snap)
            } else {
                let time = crate::decode::time::format_rfc3339_ms(snap.now);
                let hms = time.get(11..19).unwrap_or("").to_string();
                let mut t = String::new();
                for s in &snap.series {
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
            };
            for s in &snap.series {
                last.insert(s.id(), s.value);
            }
            if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return 0; // stdout closed (e.g. piped into head)
            }
        }
    }
    eprintln!("funnelstream tail: the engine closed the stream");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_compactly() {
        assert_eq!(format_value(Some(12.0)), "12");
        assert_eq!(format_value(Some(0.125)), "0.125");
        assert_eq!(format_value(Some(1.0 / 3.0)), "0.333333");
        assert_eq!(format_value(None), "gone");
    }
}
