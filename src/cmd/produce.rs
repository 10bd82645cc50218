//! `funnelstream produce`: synthetic or file-supplied events into a Kafka
//! topic, keyed by campaign (so a campaign's events, its retried duplicates
//! and its deals share a partition), with an optional rate limit. Exits 0
//! once every event is acknowledged by the broker.

use crate::cli::ProduceArgs;
use crate::clock::wall_clock_ms;
use crate::config::ConfigError;
use crate::error::Error;
use crate::logging::{init_logging, LogFormat};
use crate::source::producer::{producer, send, ProduceError};
use crate::synth::{Synth, SynthConfig};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `--kafka-property` pairs (or the file's `[kafka]` table): KEY=VALUE, not
/// `bootstrap.servers`, each one librdkafka takes (checked without connecting).
fn parse_props(list: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.trim() == "bootstrap.servers" => Err(ConfigError::invalid(
                "kafka_property",
                format!("`{kv}`: set by funnelstream itself (use brokers)"),
            )),
            Some((k, v)) if !k.trim().is_empty() => match crate::cli::kafka_refusal(k.trim(), v) {
                Some(refused) => Err(ConfigError::invalid("kafka_property", refused)),
                None => Ok((k.trim().to_string(), v.to_string())),
            },
            _ => Err(ConfigError::invalid(
                "kafka_property",
                format!("`{kv}` is not KEY=VALUE"),
            )),
        })
        .collect()
}

/// The `--from` file, opened before anything connects (`-`: stdin).
fn open_input(path: &Path) -> Result<Option<std::fs::File>, Error> {
    if path.as_os_str() == "-" {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| {
        Error::Config(ConfigError::invalid(
            "from",
            format!("{}: {e}", path.display()),
        ))
    };
    let f = std::fs::File::open(path).map_err(|e| bad(&e))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(bad(&"is a directory"));
    }
    Ok(Some(f))
}

pub fn run(args: &ProduceArgs) -> Result<(), Error> {
    let props = parse_props(&args.kafka_property)?;
    if let Some(r) = args.rate {
        crate::cli::check_rate(r)?;
    }
    let input = match &args.from {
        Some(path) => Some(open_input(path)?),
        None => None,
    };
    init_logging(LogFormat::Text, "warn");
    // Each property passed librdkafka's check alone (`parse_props`);
    // creating the producer checks them together, before it connects.
    let (p, acks) = producer(&args.brokers, &props).map_err(|e| match props.is_empty() {
        true => Error::Refused(format!("kafka: {e}")),
        false => Error::Config(ConfigError::invalid(
            "kafka_property",
            format!("librdkafka refuses these properties together: {e}"),
        )),
    })?;
    let rate = args
        .rate
        .unwrap_or(if args.from.is_some() { 0.0 } else { 1000.0 });
    let start = Instant::now();
    let pb = progress_bar(args.from.as_deref());
    let mut sent: u64 = 0;
    let mut last_progress = Instant::now();
    let mut emit = |line: &[u8]| -> Result<(), ProduceError> {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        send(&p, &args.topic, line)?;
        sent += 1;
        if !pb.is_hidden() {
            if sent % 1000 == 0 {
                pb.set_message(format!(
                    "{sent} events, {} acknowledged",
                    acks.ok.load(Ordering::Relaxed)
                ));
            }
        } else if last_progress.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "funnelstream: produced {sent} events ({:.0}/s), {} acknowledged",
                sent as f64 / start.elapsed().as_secs_f64(),
                acks.ok.load(Ordering::Relaxed)
            );
            last_progress = Instant::now();
        }
        Ok(())
    };
    let result = match &args.from {
        Some(path) => send_file(path, input.flatten(), &pb, &mut emit),
        None => send_synthetic(args, &mut emit),
    };
    pb.finish_and_clear();
    if let Err(e) = p.flush(Duration::from_secs(120)) {
        eprintln!("funnelstream: flushing: {e}");
    }
    let (ok, failed) = (
        acks.ok.load(Ordering::Relaxed),
        acks.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "funnelstream: produced {sent} events to {} in {:.1}s: {ok} acknowledged, {failed} failed",
        args.topic,
        start.elapsed().as_secs_f64()
    );
    result?;
    if failed > 0 || ok < sent {
        return Err(Error::NotAcknowledged {
            sent,
            unacknowledged: sent.saturating_sub(ok),
        });
    }
    Ok(())
}

/// A bar over the input file's bytes on a terminal (the periodic lines of
/// `run` otherwise, as for synthetic events).
fn progress_bar(from: Option<&Path>) -> indicatif::ProgressBar {
    match from {
        Some(path) if path.as_os_str() == "-" => crate::progress::bar(None, "produce"),
        Some(path) => crate::progress::bar(
            std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            "produce",
        ),
        None => indicatif::ProgressBar::hidden(),
    }
}

/// Sends every non-blank line of `file` (`None`: stdin) byte for byte.
fn send_file(
    path: &Path,
    file: Option<std::fs::File>,
    pb: &indicatif::ProgressBar,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), ProduceError>,
) -> Result<(), Error> {
    let reader: Box<dyn BufRead> = match file {
        None => Box::new(std::io::BufReader::new(
            pb.wrap_read(std::io::stdin().lock()),
        )),
        Some(f) => Box::new(std::io::BufReader::new(pb.wrap_read(f))),
    };
    for line in reader.split(b'\n') {
        let mut bytes =
            line.map_err(|e| Error::Runtime(format!("reading {}: {e}", path.display())))?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Sent byte for byte: invalid UTF-8 included.
        emit(&bytes).map_err(|e| Error::Runtime(e.to_string()))?;
    }
    Ok(())
}

/// Sends `--count` synthetic events at the wall clock's time.
fn send_synthetic(
    args: &ProduceArgs,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), ProduceError>,
) -> Result<(), Error> {
    let mut g = Synth::new(SynthConfig {
        seed: args.seed,
        keys: args.keys.max(1),
        step_ms: 0.0,
        v2_ratio: crate::demo::DEMO_V2_RATIO,
        ..SynthConfig::default()
    });
    for _ in 0..args.count {
        g.set_time_ms(wall_clock_ms());
        emit(g.next_line().as_bytes()).map_err(|e| Error::Runtime(e.to_string()))?;
    }
    Ok(())
}
