//! Golden end-to-end tests of `funnelstream replay`.
//!
//! `tests/golden/events.ndjson` is replayed with `--clock event` and the
//! exposition is compared with `tests/golden/expected.prom`, written by the
//! independent Python reference `tests/golden/reference.py` (see
//! `tests/golden/README.md`). To regenerate the expectation after a deliberate
//! change of the events or of docs/SEMANTICS.md:
//!
//! ```text
//! python3 tests/golden/reference.py tests/golden/events.ndjson > tests/golden/expected.prom
//! ```

use crate::reference::{CALENDAR_EVENTS, CALENDAR_RUNS};
use crate::support::{self, funnelstream, manifest, promtool_check, ALLOWED_EXTRA, NON_BUSINESS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const EVENTS: &str = "tests/golden/events.ndjson";
const EXPECTED: &str = "tests/golden/expected.prom";
const EVENTS_V2: &str = "tests/golden/events-v2.ndjson";
const EXPECTED_V2: &str = "tests/golden/expected-v2.prom";

/// How many entries of each problem list a failure message shows.
const SHOW: usize = 30;

/// A series: metric name and its labels sorted by label name.
type SeriesKey = (String, Vec<(String, String)>);

/// Parsed exposition: series -> (value, the line it came from).
type Exposition = BTreeMap<SeriesKey, (f64, String)>;

/// `funnelstream replay --clock event --from EVENTS` (a path in the
/// repository), which must exit 0; its stdout.
fn replay_file(events: &str) -> String {
    support::replay(Path::new(events))
}

/// The same with engine settings (`--calendar-windows ...`).
fn replay_file_with(events: &str, settings: &[&str]) -> String {
    support::replay_with(Path::new(events), settings)
}

fn replay_golden() -> String {
    replay_file(EVENTS)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses one sample line `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Result<(SeriesKey, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        let end;
        loop {
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let (start, c) = chars.next().ok_or("unterminated label set")?;
            if c == '}' {
                end = start + 1;
                break;
            }
            let mut label = String::from(c);
            loop {
                match chars.next() {
                    Some((_, '=')) => break,
                    Some((_, c)) => label.push(c),
                    None => return Err("label without value".into()),
                }
            }
            let label = label.trim().to_string();
            match chars.next() {
                Some((_, '"')) => {}
                _ => return Err(format!("label {label} value is not quoted")),
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.push((label, value));
        }
        rest = &after_brace[end..];
    }
    let value = rest.split_ascii_whitespace().next().ok_or("no value")?;
    let value = parse_value(value)?;
    labels.sort();
    let names: BTreeSet<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() != labels.len() {
        return Err("repeated label name".into());
    }
    Ok(((name, labels), value))
}

/// Parses an exposition, skipping blank and `#` lines. Unparseable lines and
/// repeated series are returned as problems.
fn parse_exposition(text: &str) -> (Exposition, Vec<String>) {
    let mut series = Exposition::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Ok((key, value)) => {
                if let Some((_, first)) = series.insert(key, (value, line.to_string())) {
                    problems.push(format!(
                        "line {}: series repeated: {line} (first: {first})",
                        i + 1
                    ));
                }
            }
            Err(e) => problems.push(format!("line {}: {e}: {line}", i + 1)),
        }
    }
    (series, problems)
}

fn show(key: &SeriesKey) -> String {
    let labels: Vec<String> = key.1.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{}{{{}}}", key.0, labels.join(","))
}

fn is_business(name: &str) -> bool {
    !name.starts_with("funnel_events_") && !NON_BUSINESS.contains(&name)
}

/// Whether `actual` is acceptable for `expected` under the series' rule:
/// quantiles within 1%, other floating-point KPIs (the growth ratios of
/// METRICS.md v2 included) within 1e-9 relative, counts and money exactly.
fn value_matches(name: &str, expected: f64, actual: f64) -> bool {
    let rel = if name.ends_with("_p50_seconds") || name.ends_with("_p90_seconds") {
        0.01
    } else if support::is_float_kpi(name) || name.ends_with("_growth_ratio") {
        1e-9
    } else {
        return expected == actual;
    };
    if expected == actual {
        return true;
    }
    (actual - expected).abs() <= rel * expected.abs()
}

fn section(report: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    report.push_str(&format!("\n{} ({}):\n", title, items.len()));
    for item in items.iter().take(SHOW) {
        report.push_str("  ");
        report.push_str(item);
        report.push('\n');
    }
    if items.len() > SHOW {
        report.push_str(&format!("  ... and {} more\n", items.len() - SHOW));
    }
}

#[test]
fn golden_replay_matches_reference() {
    matches_reference(EVENTS, EXPECTED);
}

/// The v2 event types and fields (EVENTS.md v2): `events-v2.ndjson`
/// against `expected-v2.prom`, written by the same reference.
#[test]
fn golden_v2_replay_matches_reference() {
    matches_reference(EVENTS_V2, EXPECTED_V2);
}

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn golden_v2_replay_passes_promtool() {
    promtool_check(&replay_file(EVENTS_V2));
}

/// Calendar windows and growth against the previous period (issue 19):
/// `events-calendar.ndjson` replayed with `--calendar-windows
/// mtd,qtd,ytd,last_month,last_quarter --calendar-timezone Europe/Berlin
/// --fiscal-year-start-month 4` against `expected-calendar.prom`, and with
/// `mtd,last_quarter` only (a later late edge) against
/// `expected-calendar-mtd-lq.prom`. DST changes, a fiscal year from April,
/// 29 February, events exactly on period edges, a month rollover with no
/// event: see tests/golden/gen_calendar.py.
#[test]
fn golden_calendar_replay_matches_reference() {
    for (settings, expected) in CALENDAR_RUNS {
        matches_reference_with(CALENDAR_EVENTS, settings, expected);
    }
}

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn golden_calendar_replay_passes_promtool() {
    let (settings, _) = CALENDAR_RUNS[0];
    promtool_check(&replay_file_with(CALENDAR_EVENTS, settings));
}

fn matches_reference(events: &str, expected_path: &str) {
    matches_reference_with(events, &[], expected_path);
}

fn matches_reference_with(events: &str, settings: &[&str], expected_path: &str) {
    let expected_text = std::fs::read_to_string(manifest(expected_path))
        .unwrap_or_else(|e| panic!("cannot read {expected_path}: {e}"));
    matches_expectation(events, settings, &expected_text, expected_path);
}

/// The realistic stream of tests/realistic/gen.py (backfill, out-of-order
/// tail, duplicates, late and invalid events) with calendar windows in zones
/// with daylight saving and fiscal years not starting in January, against
/// the reference run on the same stream with the same settings. The stream
/// is built for rolling windows, so the events whose outcome the contract
/// leaves open under these settings (near the end point of a to-date
/// window's previous window) are dropped first, by id.
#[test]
#[ignore = "needs python3 with time-zone data (tzdata): run scripts/test"]
fn realistic_stream_with_calendar_windows_matches_reference() {
    let generated = support::python(&[
        "tests/realistic/gen.py",
        "--seed",
        "19",
        "--events",
        "20000",
    ]);
    assert!(generated.status.success(), "gen.py failed");
    let calendar = "mtd,qtd,ytd,last_month,last_quarter";
    for (zone, fiscal) in [("America/New_York", "10"), ("Australia/Lord_Howe", "7")] {
        let settings = [
            "--calendar-windows",
            calendar,
            "--calendar-timezone",
            zone,
            "--fiscal-year-start-month",
            fiscal,
        ];
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let file = dir.join(format!(
            "realistic-calendar-{}.ndjson",
            zone.replace('/', "-")
        ));
        let file_arg = file.to_str().unwrap();
        std::fs::write(&file, &generated.stdout).unwrap();
        let reference_with = |first: &str| {
            let mut args = vec!["tests/golden/reference.py"];
            if !first.is_empty() {
                args.push(first);
            }
            args.extend_from_slice(&settings);
            args.push(file_arg);
            support::python(&args)
        };
        // Events near an open edge: "near ... edge: (key) ID ts_eff=..." lines.
        let margins = reference_with("--check-margins");
        let open: BTreeSet<String> = String::from_utf8_lossy(&margins.stderr)
            .lines()
            .filter(|l| l.starts_with("near "))
            .filter_map(|l| {
                l.split(" ts_eff=")
                    .next()?
                    .rsplit(' ')
                    .next()
                    .map(String::from)
            })
            .collect();
        let kept: Vec<&[u8]> = generated
            .stdout
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| {
                let id = line
                    .strip_prefix(b"{\"id\":\"")
                    .and_then(|rest| rest.split(|&b| b == b'"').next());
                !id.is_some_and(|id| open.contains(String::from_utf8_lossy(id).as_ref()))
            })
            .collect();
        assert!(
            kept.len() > 15_000,
            "{zone}: {} of the stream's lines dropped as open",
            open.len()
        );
        std::fs::write(&file, kept.concat()).unwrap();
        let margins = reference_with("--check-margins");
        assert!(
            margins.status.success(),
            "{zone}: still open after dropping {} events:\n{}",
            open.len(),
            String::from_utf8_lossy(&margins.stderr)
        );
        let expected = reference_with("");
        assert!(expected.status.success(), "reference.py failed for {zone}");
        let expected = String::from_utf8(expected.stdout).unwrap();
        matches_expectation(file_arg, &settings, &expected, "reference.py's output");
    }
}

/// Compares `funnelstream replay --clock event SETTINGS --from EVENTS` with
/// `expected_text` (the reference's output, from `what`).
fn matches_expectation(events: &str, settings: &[&str], expected_text: &str, expected_path: &str) {
    let (expected, expected_problems) = parse_exposition(expected_text);
    assert!(
        expected_problems.is_empty() && !expected.is_empty(),
        "{expected_path} is malformed: {expected_problems:?}"
    );

    let actual_text = replay_file_with(events, settings);
    let (actual, parse_problems) = parse_exposition(&actual_text);

    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (key, (want, line)) in &expected {
        match actual.get(key) {
            None => missing.push(line.clone()),
            Some((got, got_line)) => {
                if !value_matches(&key.0, *want, *got) {
                    mismatched.push(format!(
                        "{}: expected {want}, got {got}  [{got_line}]",
                        show(key)
                    ));
                }
            }
        }
    }
    let extra: Vec<String> = actual
        .iter()
        .filter(|(key, _)| !expected.contains_key(*key) && !ALLOWED_EXTRA.contains(&key.0.as_str()))
        .map(|(_, (_, line))| line.clone())
        .collect();

    // funnel_series = number of business series in this exposition.
    let mut series_problems = Vec::new();
    let business_actual = actual.keys().filter(|k| is_business(&k.0)).count();
    let business_expected = expected.keys().filter(|k| is_business(&k.0)).count();
    let series_gauges: Vec<_> = actual
        .iter()
        .filter(|(k, _)| k.0 == "funnel_series")
        .collect();
    match series_gauges.as_slice() {
        [(key, (value, _))] if key.1.is_empty() => {
            if *value != business_actual as f64 {
                series_problems.push(format!(
                    "funnel_series is {value}, but the exposition has {business_actual} business series \
                     (the reference expects {business_expected})"
                ));
            }
        }
        [] => series_problems.push("funnel_series is missing".to_string()),
        other => series_problems.push(format!(
            "expected one unlabelled funnel_series, found: {:?}",
            other.iter().map(|(_, (_, line))| line).collect::<Vec<_>>()
        )),
    }

    let mut report = String::new();
    section(
        &mut report,
        "unparseable or repeated lines in the replay output",
        &parse_problems,
    );
    section(
        &mut report,
        "missing series (expected, not published)",
        &missing,
    );
    section(
        &mut report,
        "extra series (published, not expected)",
        &extra,
    );
    section(&mut report, "mismatched values", &mismatched);
    section(&mut report, "funnel_series", &series_problems);
    assert!(
        report.is_empty(),
        "replay of {events} {} differs from {expected_path} ({} expected series, {} published):{report}",
        settings.join(" "),
        expected.len(),
        actual.len()
    );
}

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn golden_replay_passes_promtool() {
    promtool_check(&replay_golden());
}

#[test]
fn replay_with_bad_clock_is_bad_usage() {
    let out = funnelstream(&["replay", "--clock", "sideways", "--from", EVENTS]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "`funnelstream replay --clock sideways` must exit 2 (bad usage)\n--- stderr ---\n{stderr}"
    );
    assert!(
        stderr.contains("clock"),
        "the error message must name the `clock` flag; stderr was:\n{stderr}"
    );
}

#[test]
fn replay_with_bad_v2_settings_is_bad_usage() {
    for (flag, value, key) in [
        ("--gross-margin", "1.5", "gross_margin"),
        ("--channel-origins", "outbound=ads", "channel_origins"),
        ("--max-actions", "0", "max_actions"),
    ] {
        let out = funnelstream(&["replay", "--clock", "event", flag, value, "--from", EVENTS]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(key), "{flag} {value}: {stderr}");
    }
}
