//! The engine as `tail` sees it, through its public HTTP endpoints only:
//! a thread reading `/api/v1/kpis/stream` (server-sent events: `snapshot`,
//! then `changes`, and `shutdown` when the engine stops), reconnecting with
//! backoff under `--follow`, and a thread polling `/readyz` and the health
//! counters of `/metrics`. Both report on one channel.

use super::{request, Fetch, TailArgs};
use crate::export::api::Snapshot;
use std::io::BufRead;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) enum Msg {
    /// The full state: the first event of every connection.
    Snapshot(Snapshot),
    /// Series changed or gone (`value: None`) since the previous event.
    Changes(Snapshot),
    /// The connection ended (`--follow`): the next attempt in `wait`.
    Retrying {
        attempt: u32,
        wait: Duration,
        reason: String,
    },
    /// The engine went away and `tail` is not following: exit 1.
    Gone(String),
    /// A request failed in a way retrying cannot fix (auth, bad URL).
    Fatal(Fetch),
    Health(Health),
}

/// Why one connection to the stream ended.
enum End {
    /// Transport trouble, end of stream, or the engine stopping.
    Gone(String),
    Fatal(Fetch),
    /// The receiver is gone: `tail` is exiting.
    Quit,
}

/// Delay before reconnection attempt `n` (1, 2, ...): 0.5 s doubling to
/// at most 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(10_000))
}

/// Reads the stream until the engine goes away; under `follow`, reconnects
/// forever (a permanent error such as a 401 still ends it).
pub fn stream(args: TailArgs, query: Vec<(&'static str, String)>, follow: bool, tx: Sender<Msg>) {
    let mut attempt = 0u32;
    loop {
        let end = connection(&args, &query, &tx, &mut attempt);
        let reason = match end {
            End::Quit => return,
            End::Fatal(e) => {
                let _ = tx.send(Msg::Fatal(e));
                return;
            }
            End::Gone(r) => r,
        };
        if !follow {
            let _ = tx.send(Msg::Gone(reason));
            return;
        }
        attempt += 1;
        let wait = backoff(attempt);
        if tx
            .send(Msg::Retrying {
                attempt,
                wait,
                reason,
            })
            .is_err()
        {
            return;
        }
        std::thread::sleep(wait);
    }
}

fn connection(
    args: &TailArgs,
    query: &[(&'static str, String)],
    tx: &Sender<Msg>,
    attempt: &mut u32,
) -> End {
    let resp = match request(args, "/api/v1/kpis/stream", query, true) {
        Ok(r) => r,
        Err(Fetch::Transport(e)) | Err(Fetch::Server(e)) => return End::Gone(e),
        Err(e) => return End::Fatal(e),
    };
    read_events(std::io::BufReader::new(resp.into_reader()), tx, attempt)
}

/// Reads server-sent events until the stream ends.
fn read_events(reader: impl BufRead, tx: &Sender<Msg>, attempt: &mut u32) -> End {
    let mut event = String::new();
    let mut data = String::new();
    for line in reader.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return End::Gone(format!("the connection dropped ({e})")),
        };
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        } else if line.is_empty() && !data.is_empty() {
            let msg = match event.as_str() {
                "shutdown" => {
                    let reason = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v.get("reason")?.as_str().map(String::from))
                        .unwrap_or_else(|| data.clone());
                    return End::Gone(format!("the engine is stopping ({reason})"));
                }
                "snapshot" | "changes" => match serde_json::from_str::<Snapshot>(&data) {
                    Ok(s) if event == "snapshot" => {
                        *attempt = 0;
                        Some(Msg::Snapshot(s))
                    }
                    Ok(s) => Some(Msg::Changes(s)),
                    Err(_) => None,
                },
                _ => None,
            };
            data.clear();
            event.clear();
            if let Some(m) = msg {
                if tx.send(m).is_err() {
                    return End::Quit;
                }
            }
        }
    }
    End::Gone("the engine closed the stream".into())
}

/// The engine's health as its public endpoints tell it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// When the counters were read.
    pub at: Option<Instant>,
    /// What `/readyz` said (`None` before the first answer).
    pub ready: Option<Readiness>,
    /// Sums over labels of `funnel_events_ingested_total`,
    /// `funnel_events_rejected_total`, `funnel_events_duplicate_total`,
    /// `funnel_events_late_total` and `funnel_consumer_lag_messages`;
    /// `None` when `/metrics` could not be read.
    pub counters: Option<[f64; 5]>,
}

/// The engine's answer to `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// Not ready, or refusing the request: why (the URL, the status and
    /// the body of `/readyz`).
    NotReady(String),
    /// No answer at all.
    Unreachable,
}

pub(crate) const COUNTERS: [&str; 5] = [
    "funnel_events_ingested_total",
    "funnel_events_rejected_total",
    "funnel_events_duplicate_total",
    "funnel_events_late_total",
    "funnel_consumer_lag_messages",
];

/// Sums the health counters of a Prometheus text exposition.
pub(crate) fn parse_counters(text: impl BufRead) -> std::io::Result<[f64; 5]> {
    let mut out = [0.0; 5];
    for line in text.lines() {
        let line = line?;
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let Some(i) = COUNTERS.iter().position(|c| *c == &line[..name_end]) else {
            continue;
        };
        // The value follows the labels (which may hold spaces).
        let rest = match line[name_end..].strip_prefix('{') {
            Some(r) => r.rsplit_once('}').map(|(_, v)| v).unwrap_or(""),
            None => &line[name_end..],
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            out[i] += v;
        }
    }
    Ok(out)
}

/// Polls `/readyz` every `every`, and `/metrics` every `metrics_every`
/// (it can be large: read line by line, never held whole), until the
/// receiver is gone.
pub fn health(args: TailArgs, every: Duration, metrics_every: Duration, tx: Sender<Msg>) {
    let mut counters: Option<[f64; 5]> = None;
    let mut at: Option<Instant> = None;
    loop {
        let ready = match request(&args, "/readyz", &[], false) {
            Ok(_) => Readiness::Ready,
            Err(Fetch::Transport(_)) => Readiness::Unreachable,
            Err(e) => Readiness::NotReady(e.to_string()),
        };
        if at.is_none_or(|t| t.elapsed() >= metrics_every) {
            let read = request(&args, "/metrics", &[], false)
                .ok()
                .and_then(|r| parse_counters(std::io::BufReader::new(r.into_reader())).ok());
            at = Some(Instant::now());
            counters = read;
        }
        let h = Health {
            at,
            ready: Some(ready),
            counters,
        };
        if tx.send(Msg::Health(h)).is_err() {
            return;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_labels() {
        let text = "# HELP funnel_events_rejected_total x\n\
            funnel_events_rejected_total{reason=\"bad json\"} 3\n\
            funnel_events_rejected_total{reason=\"missing_field\"} 4\n\
            funnel_events_duplicate_total 2\n\
            funnel_events_ingested_total{type=\"click\"} 10\n\
            funnel_events_ingested_totalx 99\n\
            funnel_consumer_lag_messages{topic=\"t\",partition=\"0\"} 5\n";
        assert_eq!(
            parse_counters(text.as_bytes()).unwrap(),
            [10.0, 7.0, 2.0, 0.0, 5.0]
        );
    }

    #[test]
    fn events_are_read_until_the_engine_says_it_stops() {
        let text = "event: snapshot\ndata: {\"now\":5,\"series\":[{\"metric\":\"funnel_clicks\",\"labels\":{},\"value\":3.0}]}\n\n\
            : keep-alive\n\n\
            event: changes\ndata: {\"now\":6,\"series\":[]}\n\n\
            event: shutdown\ndata: {\"reason\":\"engine stopping\"}\n\n\
            event: changes\ndata: {\"now\":7,\"series\":[]}\n\n";
        let (tx, rx) = std::sync::mpsc::channel();
        let mut attempt = 3;
        let end = read_events(text.as_bytes(), &tx, &mut attempt);
        assert!(matches!(end, End::Gone(ref r) if r == "the engine is stopping (engine stopping)"));
        assert_eq!(attempt, 0, "a snapshot resets the backoff");
        let got: Vec<Msg> = rx.try_iter().collect();
        assert!(
            matches!(&got[..], [Msg::Snapshot(a), Msg::Changes(b)] if a.now == 5 && a.series.len() == 1 && b.now == 6)
        );
        // A stream that just ends.
        let end = read_events("event: changes\n".as_bytes(), &tx, &mut attempt);
        assert!(matches!(end, End::Gone(ref r) if r == "the engine closed the stream"));
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(10));
        assert_eq!(backoff(60), Duration::from_secs(10));
    }
}
