//! Bad input on the command-line surface (CLI.md: "Exit codes: ... 2 bad
//! usage or invalid config (message on stderr names the key and the
//! problem)"): every value-taking flag of every command, through each of
//! its three routes — the flag, its `FUNNELSTREAM_*` variable and its
//! `--config` TOML key — with values that make no sense, must exit 2,
//! naming the key and where it was given (`max_series (--max-series)`,
//! `max_series (FUNNELSTREAM_MAX_SERIES)`, `max_series (FILE)`), without a
//! panic, and before connecting to anything (`run` is given no broker;
//! anything still running after a few seconds failed the check).
//!
//! The flags come from clap's own definition (`Cli::command()`), so a new
//! flag without a line in [`BAD`] fails [`every_flag_has_bad_values`]:
//! extend the table with values it must refuse.
//!
//! Also: broken config files, and the KPI API's query parameters (4xx with
//! a message, never 5xx).

use crate::support::{command, try_http_get, wait_until, Engine, Scratch};
use clap::CommandFactory;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Values each setting must refuse, by the flag's long name (the same
/// meaning in every command having it). `""` is skipped for variables
/// (clap takes an empty variable as unset). The values are bad for
/// every command with the flag.
const BAD: &[(&str, &[&str])] = &[
    // run / check-config
    (
        "brokers",
        &["", ",", "k:1,,k:2", "host", "h:0", "h:99999", ":9092"],
    ),
    ("topics", &["", ",", "a,,b", "a,a", "a b", "x/y", "."]),
    ("group", &["", " "]),
    (
        "listen",
        &["", "x", "127.0.0.1", "127.0.0.1:99999", "localhost:9490"],
    ),
    ("probe-listen", &["x", "127.0.0.1", "0.0.0.0:70000"]),
    ("dead-letter-topic", &["", "funnel-events", "a b"]),
    ("checkpoint-topic", &["", "funnel-events", "ü"]),
    ("checkpoint-interval", &["0s", "10ms", "2d", "5x", "-1m"]),
    ("checkpoint-policy", &["ignore", ""]),
    ("checkpoint-topic-create", &["yes", "1", "TRUE"]),
    (
        "workers",
        &["0", "-1", "x", "1.5", "18446744073709551616", "100000"],
    ),
    (
        "max-stream-clients",
        &["0", "-1", "x", "9223372036854775807"],
    ),
    (
        "kafka-property",
        &[
            "x",
            "=1",
            "bootstrap.servers=k:1",
            // Refused by librdkafka: a name it does not know, values its
            // types do not take.
            "no.such.prop=1",
            "fetch.max.bytes=abc",
            "enable.idempotence=maybe",
        ],
    ),
    ("web-config-file", &["/nonexistent/web.yml"]),
    ("log-format", &["xml", ""]),
    ("log-level", &["", "=["]),
    // engine settings (run, check-config, replay; some also demo)
    ("windows", &["", "5m,,1h", "5m,5m", "30s", "11y", "5x"]),
    ("clock", &["sideways", "WALL", ""]),
    (
        "max-future-skew",
        &["5x", "-1m", "99999999999d", "1e400", "5"],
    ),
    ("allowed-lateness", &["5x", "-1m", "99999999999d", "NaN"]),
    ("dedup-horizon", &["0s", "0", "5x", "-1m", "99999999999d"]),
    (
        "dedup-capacity",
        &[
            "0",
            "-1",
            "x",
            "18446744073709551616",
            "9223372036854775808",
        ],
    ),
    ("max-channels", &["0", "-1", "x", "1e400"]),
    ("max-campaigns", &["0", "-1", "lots"]),
    ("max-tracked-deals", &["0", "-1", "x"]),
    ("max-event-bytes", &["0", "-1", "x"]),
    ("gross-margin", &["0", "1.5", "-0.5", "NaN", "inf", "x", ""]),
    (
        "channel-origins",
        &["outbound", "outbound=ads", "=sales", "a=sales,a=other"],
    ),
    ("max-actions", &["0", "-1", "x", "9223372036854775807"]),
    (
        "max-series",
        &[
            "0",
            "-1",
            "x",
            "18446744073709551616",
            "9223372036854775808",
        ],
    ),
    ("calendar-windows", &["wtd", "mtd,mtd", "MTD", "mtd,,qtd"]),
    ("calendar-timezone", &["Europe/Nowhere", "", "CET+1"]),
    ("fiscal-year-start-month", &["0", "13", "x", "-1"]),
    // demo
    ("rate", &["x", "-1", "NaN", "inf", "1e400", "1e-300"]),
    ("history", &["180", "x", "-1"]),
    ("events", &["x", "-1"]),
    ("duration", &["x", "-1"]),
    ("keys", &["0", "-1", "x"]),
    ("firehose", &["maybe"]),
    // produce, replay
    ("topic", &["", " ", "a b", ".."]),
    ("from", &["/nonexistent/events.ndjson", "/"]),
    ("count", &["x", "-1"]),
    ("seed", &["x", "-1"]),
    // tail
    (
        "url",
        &[
            "",
            "x",
            "127.0.0.1:9490",
            "ftp://h:1",
            "http://h:99999",
            "http://h:1/?q=1",
        ],
    ),
    ("once", &["maybe"]),
    ("changes", &["maybe"]),
    ("follow", &["maybe"]),
    // Not a metric name (a name the engine does not publish is the
    // engine's to refuse: `tail_says_which_metric_the_engine_does_not_publish`).
    (
        "metric",
        &[
            "",
            "funnel clicks",
            "funnel-clicks",
            "9lives",
            " funnel_clicks",
        ],
    ),
    ("window", &[""]),
    ("channel", &[""]),
    ("campaign", &[""]),
    ("by", &["nonsense"]),
    ("sort", &["nonsense"]),
    ("interval", &["0", "-1", "NaN", "61", "x"]),
    ("user", &[""]),
    ("ca-cert", &["/nonexistent/ca.pem"]),
];

/// Flags a setting needs to be read at all (`--checkpoint-interval`
/// means nothing without `--checkpoint-topic`, `--events` needs
/// `--firehose`).
const NEEDS: &[(&str, &[&str])] = &[
    ("checkpoint-interval", &["--checkpoint-topic=c"]),
    ("checkpoint-policy", &["--checkpoint-topic=c"]),
    ("checkpoint-topic-create", &["--checkpoint-topic=c"]),
    ("events", &["--firehose"]),
];

/// Flags that keep a command from doing anything lasting when a bad value
/// is wrongly accepted (no broker, a port of its own, a short demo); the
/// flag under test is left out of them.
fn harmless(cmd: &str) -> Vec<String> {
    let list: &[&str] = match cmd {
        "run" => &["--brokers=127.0.0.1:1", "--listen=127.0.0.1:0"],
        "demo" => &[
            "--listen=127.0.0.1:0",
            "--duration=1",
            "--history=0",
            "--rate=0",
        ],
        "produce" => &["--brokers=127.0.0.1:1", "--count=1"],
        "replay" => &["--from=/dev/null", "--clock=event"],
        "tail" => &["--url=http://127.0.0.1:1", "--once"],
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// How a value reaches the setting.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    Flag,
    Env,
    File,
}

/// One bad input: the command, the setting and the value, and the route.
struct Case<'a> {
    cmd: &'a str,
    long: &'a str,
    key: String,
    env: Option<String>,
    value: &'a str,
    route: Route,
}

/// The exit status, stderr and whether it had to be killed, of
/// `funnelstream ARGS` with `env` set, given `secs` to end.
fn run_bounded(
    dir: &Path,
    args: &[String],
    env: &[(String, String)],
    secs: u64,
) -> (Option<ExitStatus>, String) {
    let err = tempfile::NamedTempFile::new_in(dir).unwrap();
    let mut c = command();
    c.args(args)
        .envs(env.iter().cloned())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap());
    let mut child = c.spawn().expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        std::fs::read_to_string(err.path()).unwrap_or_default(),
    )
}

/// A TOML value for `v`: a number or boolean as such (the file's natural
/// spelling of a bad count or margin), anything else as a string.
fn toml_value(v: &str) -> String {
    let number = v.parse::<i64>().is_ok()
        || (v.parse::<f64>().is_ok_and(f64::is_finite) && !v.contains(['N', 'i']));
    if number || v == "true" || v == "false" {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

/// Runs one case; `Err` says what was wrong.
fn check(dir: &Path, case: &Case) -> Result<(), String> {
    let mut args = vec![case.cmd.to_string()];
    let flag = format!("--{}", case.long);
    args.extend(
        harmless(case.cmd)
            .into_iter()
            .filter(|a| a != &flag && !a.starts_with(&format!("{flag}="))),
    );
    if let Some((_, needs)) = NEEDS.iter().find(|(l, _)| *l == case.long) {
        args.extend(needs.iter().map(|s| s.to_string()));
    }
    let mut env = Vec::new();
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("{}-{}-{n}.toml", case.cmd, case.key));
    let want = match case.route {
        Route::Flag => {
            args.push(format!("{flag}={}", case.value));
            format!("{} ({flag})", case.key)
        }
        Route::Env => {
            let var = case.env.clone().expect("a variable");
            env.push((var.clone(), case.value.to_string()));
            format!("{} ({var})", case.key)
        }
        Route::File => {
            let text = format!("{} = {}\n", case.key, toml_value(case.value));
            std::fs::write(&file, text).unwrap();
            args.push(format!("--config={}", file.display()));
            // A value of the wrong TOML type is told by the TOML parser,
            // showing the key's line.
            case.key.clone()
        }
    };
    let (status, stderr) = run_bounded(dir, &args, &env, 20);
    let shown = format!(
        "`{}` {:?} {}={:?}: ",
        args.join(" "),
        case.route,
        case.key,
        case.value
    );
    let Some(status) = status else {
        return Err(format!(
            "{shown}still running after 20 s (the value was accepted)\n{stderr}"
        ));
    };
    if stderr.contains("panicked") || status.code() == Some(101) {
        return Err(format!("{shown}panicked\n{stderr}"));
    }
    if status.code() != Some(2) {
        return Err(format!("{shown}exit {status}, not 2\n{stderr}"));
    }
    if !stderr.contains(&want) {
        return Err(format!("{shown}stderr does not name `{want}`\n{stderr}"));
    }
    if case.route == Route::File && !stderr.contains(&file.display().to_string()) {
        return Err(format!("{shown}stderr does not name the file\n{stderr}"));
    }
    Ok(())
}

/// The cases of `cmd` (`routes` of them), from clap's definition.
fn cases<'a>(cmd: &'a clap::Command, routes: &[Route], all_values: bool) -> Vec<Case<'a>> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if matches!(long, "help" | "version" | "config") {
            continue;
        }
        let Some((_, values)) = BAD.iter().find(|(l, _)| *l == long) else {
            continue; // every_flag_has_bad_values fails on it
        };
        let switch = !arg.get_action().takes_values();
        let values = if all_values { values } else { &values[..1] };
        for &route in routes {
            // A variable goes through the flag's parser: two values do.
            let n = if route == Route::Env { 2 } else { values.len() };
            for value in values.iter().take(n) {
                let skip = match route {
                    Route::Flag => switch,
                    Route::Env => value.is_empty() || arg.get_env().is_none(),
                    // `run`'s `--kafka-property` is its file's `[kafka]`
                    // table (tested in `broken_config_files`).
                    Route::File => {
                        long == "kafka-property" && matches!(cmd.get_name(), "run" | "check-config")
                    }
                };
                if skip {
                    continue;
                }
                out.push(Case {
                    cmd: cmd.get_name(),
                    long,
                    key: id.to_string(),
                    env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                    value,
                    route,
                });
            }
        }
    }
    out
}

/// Runs the cases of command `name` on 4 threads; panics listing every
/// failure.
fn audit(name: &str, routes: &[Route], all_values: bool) {
    let cli = funnelstream::Cli::command();
    let cmd = cli.find_subcommand(name).expect("a command");
    let cases = cases(cmd, routes, all_values);
    assert!(!cases.is_empty(), "{name}: no cases");
    let dir = Scratch::new(&format!("cli-{name}"));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                if let Err(e) = check(&dir, case) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs of `{name}` not refused as they should be:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const ALL: &[Route] = &[Route::Flag, Route::Env, Route::File];

#[test]
fn every_flag_has_bad_values() {
    let cli = funnelstream::Cli::command();
    let mut missing = Vec::new();
    for cmd in cli.get_subcommands() {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version" | "config") {
                continue;
            }
            if !BAD.iter().any(|(l, _)| *l == long) {
                missing.push(format!("{} --{long}", cmd.get_name()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without bad values in tests/it/cli.rs's BAD (add values they must refuse): {}",
        missing.join(", ")
    );
}

#[test]
fn check_config_refuses_bad_values_on_every_route() {
    audit("check-config", ALL, true);
}

/// `run` validates everything before it connects (no broker here).
#[test]
fn run_refuses_bad_values_before_connecting() {
    audit("run", &[Route::Flag], false);
}

#[test]
fn replay_refuses_bad_values() {
    audit("replay", ALL, false);
}

/// `replay` reads its input from the config file too (CLI.md: every flag
/// also reads from the file), and says so when it has none.
#[test]
fn replay_reads_from_in_the_config_file() {
    let dir = Scratch::new("cli-replay-from");
    let events = dir.join("events.ndjson");
    std::fs::write(&events, "").unwrap();
    let cfg = dir.join("replay.toml");
    let text = format!(
        "from = {}\nclock = \"event\"\n",
        toml_value(&events.display().to_string())
    );
    std::fs::write(&cfg, text).unwrap();
    let (status, stderr) = run_bounded(
        &dir,
        &["replay".into(), format!("--config={}", cfg.display())],
        &[],
        20,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(stderr.contains("replayed 0 events"), "{stderr}");
    let (status, stderr) = run_bounded(&dir, &["replay".into()], &[], 20);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    assert!(stderr.contains("from: an input is needed"), "{stderr}");
}

#[test]
fn demo_refuses_bad_values_on_every_route() {
    audit("demo", ALL, true);
}

#[test]
fn produce_refuses_bad_values_before_connecting() {
    audit("produce", ALL, true);
}

#[test]
fn tail_refuses_bad_values_before_connecting() {
    audit("tail", ALL, true);
}

/// Kafka client properties librdkafka refuses (a name it does not know, a
/// value its type does not take), by flag, variable and config file, for
/// every command passing them on: exit 2 naming `kafka_property`, where it
/// was given, the property and librdkafka's reason, before connecting (no
/// broker here). Properties of only the producer or only the consumer,
/// with values librdkafka takes, are not refused.
#[test]
fn kafka_properties_librdkafka_refuses_name_their_route() {
    let dir = Scratch::new("cli-kafka-properties");
    const REFUSED: &[(&str, &str, &str)] = &[
        ("no.such.prop", "1", "No such configuration property"),
        ("fetch.max.bytes", "abc", "Invalid value"),
        ("enable.idempotence", "maybe", "true or false"),
    ];
    let mut failures = Vec::new();
    let mut n = 0;
    for cmd in ["check-config", "run", "produce"] {
        for &(key, value, why) in REFUSED {
            for &route in ALL {
                let mut args = vec![cmd.to_string()];
                args.extend(harmless(cmd));
                let mut env = Vec::new();
                let route_name = match route {
                    Route::Flag => {
                        args.push(format!("--kafka-property={key}={value}"));
                        "--kafka-property".to_string()
                    }
                    Route::Env => {
                        env.push((
                            "FUNNELSTREAM_KAFKA_PROPERTY".to_string(),
                            format!("{key}={value}"),
                        ));
                        "FUNNELSTREAM_KAFKA_PROPERTY".to_string()
                    }
                    Route::File => {
                        n += 1;
                        let file = dir.join(format!("kafka-{n}.toml"));
                        std::fs::write(&file, format!("[kafka]\n\"{key}\" = \"{value}\"\n"))
                            .unwrap();
                        args.push(format!("--config={}", file.display()));
                        file.display().to_string()
                    }
                };
                let (status, stderr) = run_bounded(&dir, &args, &env, 20);
                let want = format!("kafka_property ({route_name}): `{key}={value}`");
                let ok = status.is_some_and(|s| s.code() == Some(2))
                    && stderr.contains(&want)
                    && stderr.contains(why)
                    && !stderr.contains("panicked");
                if !ok {
                    failures.push(format!(
                        "`{}` {route:?} {key}={value}: {status:?}, want `{want}` and `{why}`\n{stderr}",
                        args.join(" ")
                    ));
                }
            }
        }
    }
    for kv in [
        "linger.ms=5",
        "acks=all",
        "fetch.max.bytes=1000000",
        "client.id=x",
    ] {
        let args = ["check-config".to_string(), format!("--kafka-property={kv}")];
        let (status, stderr) = run_bounded(&dir, &args, &[], 20);
        if !status.is_some_and(|s| s.success()) {
            failures.push(format!("check-config {kv}: {status:?}\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Properties librdkafka takes one by one but not together (here on the
/// dead-letter producer, which the consumer's check alone would miss):
/// exit 2 before connecting, naming the client and every route the
/// conflicting properties came by: the file, the flag or variable, or both.
/// A property funnelstream sets itself, in the file beside a flag, names
/// the file.
#[test]
fn properties_refused_together_name_the_client_and_their_routes() {
    let dir = Scratch::new("cli-kafka-together");
    let file = |name: &str, body: &str| {
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        f.display().to_string()
    };
    let idem = file("idem.toml", "[kafka]\n\"enable.idempotence\" = \"true\"\n");
    let both = file(
        "both.toml",
        "[kafka]\n\"enable.idempotence\" = \"true\"\nacks = \"1\"\n",
    );
    let managed = file("managed.toml", "[kafka]\n\"group.id\" = \"x\"\n");
    let why = "for the dead-letter producer";
    type Case = (Vec<String>, Vec<(String, String)>, String);
    let cases: Vec<Case> = vec![
        (
            vec!["--kafka-property=acks=1".into(), "--kafka-property=enable.idempotence=true".into()],
            vec![],
            format!("kafka_property (--kafka-property): librdkafka refuses these properties together {why}: `acks`"),
        ),
        (
            vec!["--kafka-property=acks=1".into(), format!("--config={idem}")],
            vec![],
            format!("kafka_property (--kafka-property): librdkafka refuses these properties together {why} (some given in {idem}): `acks`"),
        ),
        (
            vec![format!("--config={idem}")],
            vec![("FUNNELSTREAM_KAFKA_PROPERTY".into(), "acks=1".into())],
            format!("kafka_property (FUNNELSTREAM_KAFKA_PROPERTY): librdkafka refuses these properties together {why} (some given in {idem})"),
        ),
        (
            vec!["--kafka-property=client.id=a".into(), format!("--config={both}")],
            vec![],
            format!("kafka_property ({both}): librdkafka refuses these properties together {why}: `acks`"),
        ),
        (
            vec![format!("--config={both}")],
            vec![],
            format!("kafka_property ({both}): librdkafka refuses these properties together {why}: `acks`"),
        ),
        (
            vec!["--kafka-property=client.id=a".into(), format!("--config={managed}")],
            vec![],
            format!("kafka_property ({managed}): `group.id=x`: set by funnelstream itself"),
        ),
    ];
    let mut failures = Vec::new();
    for cmd in ["check-config", "run"] {
        for (extra, env, want) in &cases {
            let mut args = vec![cmd.to_string()];
            args.extend(harmless(cmd));
            args.push("--dead-letter-topic=dead".into());
            args.extend(extra.iter().cloned());
            let (status, stderr) = run_bounded(&dir, &args, env, 20);
            if !(status.is_some_and(|s| s.code() == Some(2))
                && stderr.contains(want.as_str())
                && !stderr.contains("panicked"))
            {
                failures.push(format!(
                    "`{}` {env:?}: {status:?}, want `{want}`\n{stderr}",
                    args.join(" ")
                ));
            }
        }
    }
    // Without a dead-letter topic the same properties are no conflict:
    // the consumer has no `acks`.
    let args = [
        "check-config".to_string(),
        "--kafka-property=acks=1".into(),
        "--kafka-property=enable.idempotence=true".into(),
    ];
    let (status, stderr) = run_bounded(&dir, &args, &[], 20);
    if !status.is_some_and(|s| s.success()) {
        failures.push(format!("without a dead-letter topic: {status:?}\n{stderr}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A value that is not UTF-8, by flag and by variable: exit 2 naming it.
#[test]
fn values_not_utf8_name_their_flag() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"5m\xff");
    for args in [
        vec![b"--windows=5m\xff".as_slice()],
        vec![b"--windows", b"5m\xff"],
    ] {
        let args: Vec<std::ffi::OsString> = args
            .iter()
            .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
            .collect();
        let out = command().arg("check-config").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("windows (--windows): the value is not UTF-8"),
            "{err}"
        );
    }
    let out = command()
        .arg("check-config")
        .env("FUNNELSTREAM_WINDOWS", bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("windows (FUNNELSTREAM_WINDOWS)"), "{err}");
}

/// Config files that cannot be used, through `--config` and
/// `FUNNELSTREAM_CONFIG`, for every command reading one: exit 2 naming
/// `config` (and the key, when one is at fault).
#[test]
fn broken_config_files() {
    let dir = Scratch::new("cli-config");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    const EVERY: &[&str] = &["check-config", "run", "replay", "demo", "produce", "tail"];
    // A key of another command is ignored (one file serves them all), so
    // a setting's bad value only counts for the commands having it.
    const ENGINE: &[&str] = &["check-config", "run", "replay", "demo"];
    const KAFKA: &[&str] = &["check-config", "run"];
    let files: Vec<(String, &str, &[&str])> = vec![
        (
            dir.join("missing.toml").display().to_string(),
            "config",
            EVERY,
        ),
        (dir.display().to_string(), "config", EVERY),
        (
            write("latin1.toml", b"windows = \"5m\xff\"\n"),
            "config",
            EVERY,
        ),
        (write("not-toml.toml", b"windows: 5m\n"), "config", EVERY),
        (
            write("unknown.toml", b"windwos = \"5m\"\n"),
            "windwos",
            EVERY,
        ),
        (
            write("nested.toml", b"[engine]\nmax_series = 5\n"),
            "engine",
            EVERY,
        ),
        (
            write("twice.toml", b"clock = \"wall\"\nclock = \"event\"\n"),
            "clock",
            EVERY,
        ),
        (
            write("wrong-type.toml", b"max_series = \"many\"\n"),
            "max_series",
            ENGINE,
        ),
        (
            write("kafka.toml", b"[kafka]\n\"group.id\" = \"x\"\n"),
            "group.id",
            KAFKA,
        ),
    ];
    let mut failures = Vec::new();
    for (file, key, commands) in &files {
        for cmd in commands.iter() {
            for via_env in [false, true] {
                let mut args = vec![cmd.to_string()];
                args.extend(harmless(cmd));
                let mut env = Vec::new();
                if via_env {
                    env.push(("FUNNELSTREAM_CONFIG".to_string(), file.clone()));
                } else {
                    args.push(format!("--config={file}"));
                }
                let (status, stderr) = run_bounded(&dir, &args, &env, 20);
                let ok = status.is_some_and(|s| s.code() == Some(2))
                    && stderr.contains(key)
                    && !stderr.contains("panicked");
                if !ok {
                    failures.push(format!(
                        "`{}` (config via {}): {status:?}\n{stderr}",
                        args.join(" "),
                        if via_env { "variable" } else { "flag" }
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The KPI API's query parameters: a bad value is a 400 saying what is
/// wrong, never a 5xx; nothing quietly clamped.
#[test]
fn api_refuses_bad_query_values() {
    let engine = Engine::without_broker(&[]);
    wait_until(60, "the engine listens", || {
        try_http_get(engine.port, "/healthz", &[]).map(|_| ())
    });
    for path in ["/api/v1/kpis", "/api/v1/kpis/stream"] {
        for (q, says) in [
            ("interval=x", "interval"),
            ("interval=", "interval"),
            ("interval=0", "interval"),
            ("interval=-1", "interval"),
            ("interval=NaN", "interval"),
            ("interval=inf", "interval"),
            ("interval=1e400", "interval"),
            ("interval=61", "interval"),
            ("metric=a&metric=b", "metric"),
            // A family the engine does not publish: told, not an empty list.
            (
                "metric=funnel_nonsense",
                "`funnel_nonsense` is not a KPI family this engine publishes",
            ),
            ("metric=", "metric"),
            // A window the engine does not publish: told, not an empty list.
            ("window=bogus", "5m,1h,1d,7d,30d,90d"),
            ("window=%ff", "is not a window this engine publishes"),
            ("window=", "window"),
        ] {
            let r = try_http_get(engine.port, &format!("{path}?{q}"), &[])
                .unwrap_or_else(|e| panic!("{path}?{q}: {e}"));
            let body = String::from_utf8_lossy(&r.body);
            assert_eq!(r.status, 400, "{path}?{q}: {body}");
            assert!(body.contains(says), "{path}?{q}: {body}");
        }
    }
    // Odd but valid filters: answered, never a server error.
    for q in [
        "channel=",
        "campaign=%00",
        "unknown=1",
        "metric=funnel_clicks&window=5m&channel=a&campaign=b",
    ] {
        let r = try_http_get(engine.port, &format!("/api/v1/kpis?{q}"), &[]).unwrap();
        assert_eq!(r.status, 200, "/api/v1/kpis?{q}");
    }
    for (q, status) in [
        ("window=bogus", 400),
        ("window=%ff", 400),
        ("window=a&window=b", 400),
        ("window=30d", 200),
    ] {
        let r = try_http_get(engine.port, &format!("/api/v1/kpis/history?{q}"), &[]).unwrap();
        assert_eq!(r.status, status, "/api/v1/kpis/history?{q}");
    }
}

/// `tail --metric` takes any metric name (a `tail` older than the engine
/// follows the families added since) and lets the engine decide: one it
/// does not publish is exit 2 saying so, naming the family, the route and
/// the engine, promptly, in both modes; one it publishes but has no series
/// of yet (no broker here) is an empty table and a note, not silence.
#[test]
fn tail_says_which_metric_the_engine_does_not_publish() {
    let engine = Engine::without_broker(&[]);
    wait_until(60, "the engine listens", || {
        try_http_get(engine.port, "/healthz", &[]).map(|_| ())
    });
    let dir = Scratch::new("cli-tail-metric");
    let url = format!("--url={}", engine.url());
    for once in [true, false] {
        for by_env in [false, true] {
            let mut args = vec!["tail".to_string(), url.clone()];
            if once {
                args.push("--once".into());
            }
            let mut env = Vec::new();
            let route = if by_env {
                env.push(("FUNNELSTREAM_METRIC".into(), "funnel_nonsense".into()));
                "FUNNELSTREAM_METRIC"
            } else {
                args.push("--metric=funnel_nonsense".into());
                "--metric"
            };
            let (status, stderr) = run_bounded(&dir, &args, &env, 20);
            let shown = format!("`{}` (metric by {route})", args.join(" "));
            assert_eq!(status.and_then(|s| s.code()), Some(2), "{shown}: {stderr}");
            for want in [
                format!("metric ({route})"),
                "`funnel_nonsense` is not a KPI family this engine publishes".into(),
                engine.url(),
            ] {
                assert!(stderr.contains(&want), "{shown}: no `{want}` in\n{stderr}");
            }
        }
    }
    let args = [
        "tail".into(),
        url,
        "--once".into(),
        "--metric=funnel_clicks".into(),
    ];
    let (status, stderr) = run_bounded(&dir, &args, &[], 20);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(
        stderr.contains("has no series of funnel_clicks"),
        "{stderr}"
    );
}
