//! `funnelstream demo`: the embedded default. An in-process Kafka-protocol
//! broker (librdkafka's mock cluster), a believable B2B SaaS company
//! written into it (src/company.rs: 179 days of history first, then live
//! traffic in real time at the same pace, ~1% duplicates and ~0.3%
//! malformed events), and the engine consuming it through exactly the code
//! path of `run`.

use crate::cli::{defaults, DemoArgs, RunConfig};
use crate::clock::wall_clock_ms;
use crate::company::{Company, CompanyConfig};
use crate::config::{ClockMode, ConfigError, EngineConfig};
use crate::error::Error;
use crate::logging::{init_logging, LogFormat};
use crate::source::mock::MockBroker;
use crate::source::producer::{producer, send, EventProducer};
use crate::source::KafkaSettings;
use crate::synth::{Synth, SynthConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const TOPIC: &str = defaults::TOPIC;
/// Share of v2 events (sessions, conversions, email, surveys) in
/// `produce`'s synthetic stream.
pub(crate) const DEMO_V2_RATIO: f64 = 0.25;
const DAY_MS: f64 = 86_400_000.0;
/// Partitions of the demo topic: librdkafka's mock broker keeps at most
/// 5 MB a partition, and the whole history (about 19 MB, keyed by
/// campaign, so unevenly spread: the busiest partition holds about
/// 3.4 MB) must fit before the engine reads it.
const PARTITIONS: i32 = 12;
/// The longest history the demo writes (`--history`, in days): just
/// under twice the longest default window, so that the previous 90d
/// window (growth) and the previous quarter (`qtd`'s growth) have data,
/// and no history event is late (older than 2 x 90d).
pub(crate) const MAX_HISTORY_DAYS: u64 = crate::cli::defaults::MAX_HISTORY_DAYS;
/// Live traffic is simulated in slots of this length (ad platforms and
/// analytics tools report in batches).
pub(crate) const LIVE_SLOT_MS: i64 = 10_000;

pub fn run(args: &DemoArgs) -> Result<(), Error> {
    init_logging(LogFormat::Text, "info,librdkafka=error");
    crate::cli::check_rate(args.rate)?;
    let listen = listen_addr(args)?;
    let calendar = calendar_config(args)?;
    let engine = engine_settings(args)?;
    let cluster = start_broker()?;
    let bootstrap = cluster.bootstrap_servers();
    let stop = Arc::new(AtomicBool::new(false));
    // The engine starts once the history is in the broker, so that
    // /readyz (caught up with the offsets found at start) means the whole
    // history is counted.
    let (written_tx, written) = std::sync::mpsc::channel::<()>();
    let gen = spawn_generator(args, &bootstrap, &stop, written_tx);
    if args.duration > 0 {
        stop_after(Duration::from_secs(args.duration), &stop);
    }
    let cfg = run_config(args, &bootstrap, listen, calendar, engine);
    // Dropped without a message if the generator fails: start anyway.
    let _ = written.recv_timeout(Duration::from_secs(300));
    let result = crate::serve::serve(cfg, Some(stop.clone()), |addr| {
        print_banner(addr, &bootstrap)
    });
    stop.store(true, Ordering::Release);
    let _ = gen.join();
    drop(cluster);
    result
}

/// `--listen`, or the demo's default address.
fn listen_addr(args: &DemoArgs) -> Result<std::net::SocketAddr, Error> {
    let listen_s = args
        .listen
        .clone()
        .unwrap_or_else(|| defaults::DEMO_LISTEN.into());
    Ok(listen_s
        .parse()
        .map_err(|_| ConfigError::invalid("listen", format!("`{listen_s}` is not an ADDR:PORT")))?)
}

/// The calendar windows, time zone and fiscal year of the arguments.
fn calendar_config(args: &DemoArgs) -> Result<crate::config::CalendarConfig, Error> {
    let calendar = crate::config::CalendarConfig {
        windows: crate::config::parse_calendar_windows(&args.calendar_windows)
            .map_err(|p| ConfigError::parse("calendar_windows", p))?,
        tz: crate::config::parse_timezone(&args.calendar_timezone)
            .map_err(|p| ConfigError::parse("calendar_timezone", p))?,
        timezone: args.calendar_timezone.trim().to_string(),
        fiscal_year_start_month: args.fiscal_year_start_month,
    };
    if !(1..=12).contains(&calendar.fiscal_year_start_month) {
        return Err(ConfigError::invalid(
            "fiscal_year_start_month",
            format!(
                "`{}` is not a month: use 1 (January) to 12 (December)",
                calendar.fiscal_year_start_month
            ),
        )
        .into());
    }
    Ok(calendar)
}

/// The embedded broker, with the demo topic created.
fn start_broker() -> Result<MockBroker, Error> {
    let cluster = MockBroker::start()
        .map_err(|e| Error::Runtime(format!("cannot start the embedded broker: {e}")))?;
    cluster
        .create_topic(TOPIC, PARTITIONS)
        .map_err(|e| Error::Runtime(format!("cannot create the demo topic: {e}")))?;
    Ok(cluster)
}

/// The generator thread: the company ([`generate`]) or, with
/// `--firehose`, the benchmark stream ([`firehose`]); `written` gets a
/// message once the history is in the broker.
fn spawn_generator(
    args: &DemoArgs,
    bootstrap: &str,
    stop: &Arc<AtomicBool>,
    written: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    let (stop, bootstrap, rate, history, firehose_mode, keys, events) = (
        stop.clone(),
        bootstrap.to_string(),
        args.rate,
        args.history,
        args.firehose,
        args.keys.max(1),
        args.events,
    );
    std::thread::Builder::new()
        .name("funnel-demo-gen".into())
        .spawn(move || {
            if firehose_mode {
                firehose(&bootstrap, events, rate, keys, &stop, written)
            } else {
                generate(&bootstrap, history, rate, &stop, written)
            }
        })
        .expect("spawn generator")
}

/// Sets `stop` after `duration` (`--duration`).
fn stop_after(duration: Duration, stop: &Arc<AtomicBool>) {
    let stop = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        stop.store(true, Ordering::Release);
    });
}

/// The engine's configuration: the demo topic of the embedded broker at
/// `bootstrap`, served on `listen`.
fn run_config(
    args: &DemoArgs,
    bootstrap: &str,
    listen: std::net::SocketAddr,
    calendar: crate::config::CalendarConfig,
    engine: EngineConfig,
) -> RunConfig {
    RunConfig {
        engine: EngineConfig {
            clock: ClockMode::Wall,
            max_series: args.max_series.max(1),
            max_tracked_deals: args.max_tracked_deals.max(1),
            calendar,
            dedup_capacity: args.dedup_capacity.max(1),
            ..engine
        },
        kafka: KafkaSettings {
            brokers: bootstrap.to_string(),
            topics: vec![TOPIC.into()],
            group: "funnelstream-demo".into(),
            properties: vec![],
            workers: 1,
            dead_letter_topic: None,
            checkpoint: None,
        },
        listen,
        log_format: LogFormat::Text,
        log_level: "info".into(),
        web_config_file: None,
        security: Default::default(),
        probe_listen: None,
        http: Default::default(),
    }
}

/// The engine settings CLI.md v2 gives `demo` as well as `run` and
/// `replay` (`--dedup-horizon`, `--gross-margin`, `--channel-origins`,
/// `--max-actions`), validated as `run` validates them.
fn engine_settings(args: &DemoArgs) -> Result<EngineConfig, ConfigError> {
    crate::cli::engine_config(&crate::settings::Settings {
        dedup_horizon: args.dedup_horizon.clone(),
        gross_margin: args.gross_margin,
        channel_origins: args.channel_origins.clone(),
        max_actions: args.max_actions,
        ..Default::default()
    })
}

/// Where to look, printed once the engine listens on `addr`.
fn print_banner(addr: std::net::SocketAddr, bootstrap: &str) {
    println!(
        "funnelstream demo is running\n\
         \x20 metrics:       http://{addr}/metrics\n\
         \x20 KPI board:     http://{addr}/\n\
         \x20 in a terminal: funnelstream tail --url http://{addr}\n\
         \x20 Kafka broker:  {bootstrap} (topic {TOPIC}, {PARTITIONS} partitions)\n\
         \x20 add events:    funnelstream produce --brokers {bootstrap} --topic {TOPIC} --from FILE\n\
         Press Ctrl-C to stop."
    );
}

/// The generator's producer (`None`, logged, when it cannot be made).
fn demo_producer(bootstrap: &str) -> Option<EventProducer> {
    producer(bootstrap, &[])
        .map(|(p, _acks)| p)
        .map_err(|e| tracing::error!("demo generator: {e}"))
        .ok()
}

/// History, then live traffic until `stop`: the demo company
/// ([`Company`]) over its last `history_days` days (at most 179), then in
/// real time, a slot every [`LIVE_SLOT_MS`], at most `rate` messages a
/// second (0: no live traffic).
fn generate(
    bootstrap: &str,
    history_days: u64,
    rate: f64,
    stop: &AtomicBool,
    written: std::sync::mpsc::Sender<()>,
) {
    let Some(p) = demo_producer(bootstrap) else {
        return;
    };
    let now = wall_clock_ms();
    let mut company = Company::new(CompanyConfig {
        seed: now as u64,
        ..CompanyConfig::default()
    });
    let days = history_days.min(MAX_HISTORY_DAYS) as i64;
    let started = Instant::now();
    let mut stopped = false;
    let history = company.history(now, days, &mut |line| {
        if !stopped && stop.load(Ordering::Acquire) {
            stopped = true;
        }
        if !stopped {
            let _ = send(&p, TOPIC, line.as_bytes());
        }
    });
    if stopped {
        return;
    }
    let _ = p.flush(Duration::from_secs(30));
    let _ = written.send(());
    tracing::info!(
        days,
        secs = started.elapsed().as_secs_f64(),
        "demo history written; live traffic follows events={history}"
    );
    // Live: the company goes on in real time, at its own pace, and no
    // message goes out before 1/rate seconds after the previous one (the
    // cap; a company behind it catches up at `rate`).
    let mut next_due = Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        let t = wall_clock_ms();
        if rate == 0.0 || t - company.time_ms() < LIVE_SLOT_MS {
            continue;
        }
        // At most a day between messages (`check_rate`).
        let gap = Duration::from_secs_f64(1.0 / rate);
        company.advance(t, &mut |line| {
            // Waits in short steps, so that a stop is not held up by a
            // slow rate; after a stop nothing more is sent.
            loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let now = Instant::now();
                if next_due <= now {
                    break;
                }
                std::thread::sleep((next_due - now).min(Duration::from_millis(100)));
            }
            next_due = next_due.max(Instant::now()) + gap;
            let _ = send(&p, TOPIC, line.as_bytes());
        });
    }
    let _ = p.flush(Duration::from_secs(5));
}

/// `--firehose`: src/synth.rs's benchmark stream instead of the company,
/// `history` events spread over the last 178 days, then `rate` events a
/// second until `stop`, random keys with every event: KPIs that change
/// all the time, for tests of slow stream clients and scrapes under load.
fn firehose(
    bootstrap: &str,
    history: u64,
    rate: f64,
    keys: u64,
    stop: &AtomicBool,
    written: std::sync::mpsc::Sender<()>,
) {
    let Some(p) = demo_producer(bootstrap) else {
        return;
    };
    let now = wall_clock_ms();
    // Like the company's history: the previous 90d window and the previous
    // quarter have events too.
    let span = 178.0 * DAY_MS;
    let mut g = Synth::new(SynthConfig {
        seed: now as u64,
        keys,
        start_ms: now - span as i64,
        // Duplicates and malformed events do not advance event time: spread
        // the valid ones over the whole span, up to now.
        step_ms: if history > 0 {
            span / (history as f64 * (1.0 - 0.01 - 0.005))
        } else {
            0.0
        },
        duplicate_ratio: 0.01,
        invalid_ratio: 0.005,
        // Every v2 family has values within seconds (issue 18).
        v2_ratio: DEMO_V2_RATIO,
        ..SynthConfig::default()
    });
    for _ in 0..history {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let _ = send(&p, TOPIC, g.next_line().as_bytes());
    }
    let _ = p.flush(Duration::from_secs(30));
    let _ = written.send(());
    tracing::info!(
        events = history,
        "demo history written; live traffic follows"
    );
    g.set_step_ms(0.0);
    let start = Instant::now();
    let mut sent = 0f64;
    while !stop.load(Ordering::Acquire) {
        // A daily rhythm: busiest mid-afternoon UTC, quietest at night.
        let t = wall_clock_ms();
        let day_frac = (t as f64 % DAY_MS) / DAY_MS;
        let factor = 1.0 + 0.6 * (std::f64::consts::TAU * (day_frac - 0.375)).sin();
        let target = rate * factor * start.elapsed().as_secs_f64();
        while sent < target {
            g.set_time_ms(wall_clock_ms());
            let _ = send(&p, TOPIC, g.next_line().as_bytes());
            sent += 1.0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = p.flush(Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::decode::Origin;
    use clap::Parser;

    fn demo_args(flags: &[&str]) -> DemoArgs {
        let argv = ["funnelstream", "demo"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("demo flags parse").command {
            Command::Demo(a) => a,
            other => panic!("not demo: {other:?}"),
        }
    }

    #[test]
    fn demo_takes_the_v2_engine_settings_of_cli_md() {
        let e = engine_settings(&demo_args(&[
            "--dedup-horizon",
            "2h",
            "--gross-margin",
            "0.8",
            "--channel-origins",
            "events=sales",
            "--max-actions",
            "7",
        ]))
        .unwrap();
        assert_eq!(e.dedup_horizon_ms, 2 * 3_600_000);
        assert_eq!(e.gross_margin, 0.8);
        assert_eq!(e.channel_origins, [("events".to_string(), Origin::Sales)]);
        assert_eq!(e.max_actions, 7);

        // Without them, CLI.md's defaults (24h, 1, none, 50).
        let d = engine_settings(&demo_args(&[])).unwrap();
        assert_eq!(d.dedup_horizon_ms, 86_400_000);
        assert_eq!(d.gross_margin, 1.0);
        assert!(d.channel_origins.is_empty());
        assert_eq!(d.max_actions, 50);

        // Validated as `run` validates them: the error names the key.
        for (flag, value, key) in [
            ("--gross-margin", "1.5", "gross_margin"),
            ("--dedup-horizon", "soon", "dedup_horizon"),
            ("--channel-origins", "events=press", "channel_origins"),
            ("--max-actions", "0", "max_actions"),
        ] {
            let err = engine_settings(&demo_args(&[flag, value])).unwrap_err();
            assert!(err.to_string().contains(key), "{flag} {value}: {err}");
        }
    }
}
