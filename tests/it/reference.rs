//! The golden test's oracle stays honest: `expected.prom` must be exactly
//! what the independent Python reference computes from `events.ndjson`, and
//! the JSON Schema must agree with the reference on which lines are valid.
//! Needs `python3`, and its `jsonschema` package for the schema checks
//! (scripts/test installs both).

use crate::support::{manifest, python};

/// The checked-in `expected` is exactly what reference.py computes from
/// `events`.
fn assert_reference_output(events: &str, expected: &str) {
    assert_reference_output_with(&[], events, expected);
}

/// The same, with engine settings (`--calendar-windows ...`) passed to
/// reference.py as they are to `funnelstream replay`.
fn assert_reference_output_with(settings: &[&str], events: &str, expected: &str) {
    let mut args = vec!["tests/golden/reference.py"];
    args.extend_from_slice(settings);
    args.push(events);
    let out = python(&args);
    assert!(
        out.status.success(),
        "reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked_in = std::fs::read(manifest(expected)).unwrap();
    let settings = settings.join(" ");
    assert!(
        out.stdout == checked_in,
        "{expected} is stale: regenerate it with \
         `python3 tests/golden/reference.py {settings} {events} > {expected}`"
    );
}

/// The calendar golden (issue 19): `events-calendar.ndjson` read with all
/// five calendar windows in Europe/Berlin and a fiscal year from April
/// (`expected-calendar.prom`), and with `mtd,last_quarter` only, which moves
/// the late edge (`expected-calendar-mtd-lq.prom`). The same settings as
/// tests/it/golden.rs passes to the engine.
pub const CALENDAR_EVENTS: &str = "tests/golden/events-calendar.ndjson";
pub const CALENDAR_RUNS: [(&[&str], &str); 2] = [
    (
        &[
            "--calendar-windows",
            "mtd,qtd,ytd,last_month,last_quarter",
            "--calendar-timezone",
            "Europe/Berlin",
            "--fiscal-year-start-month",
            "4",
        ],
        "tests/golden/expected-calendar.prom",
    ),
    (
        &[
            "--calendar-windows",
            "mtd,last_quarter",
            "--calendar-timezone",
            "Europe/Berlin",
            "--fiscal-year-start-month",
            "4",
        ],
        "tests/golden/expected-calendar-mtd-lq.prom",
    ),
];

#[test]
#[ignore = "needs python3 with time-zone data (tzdata): run scripts/test"]
fn expected_calendar_expositions_are_the_reference_output() {
    for (settings, expected) in CALENDAR_RUNS {
        assert_reference_output_with(settings, CALENDAR_EVENTS, expected);
    }
}

#[test]
#[ignore = "needs python3 with jsonschema: run scripts/test"]
fn golden_calendar_events_stay_clear_of_window_edges_and_agree_with_the_schema() {
    let generated = python(&["tests/golden/gen_calendar.py"]);
    assert!(
        generated.status.success()
            && generated.stdout == std::fs::read(manifest(CALENDAR_EVENTS)).unwrap(),
        "{CALENDAR_EVENTS} is not what tests/golden/gen_calendar.py writes: regenerate it"
    );
    let mut runs: Vec<Vec<&str>> = CALENDAR_RUNS
        .iter()
        .map(|(settings, _)| {
            let mut args = vec!["tests/golden/reference.py", "--check-margins"];
            args.extend_from_slice(settings);
            args.push(CALENDAR_EVENTS);
            args
        })
        .collect();
    runs.push(vec!["tests/golden/check_schema.py", CALENDAR_EVENTS]);
    for args in runs {
        let out = python(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs python3: run scripts/test"]
fn expected_exposition_is_the_reference_output() {
    assert_reference_output("tests/golden/events.ndjson", "tests/golden/expected.prom");
}

#[test]
#[ignore = "needs python3: run scripts/test"]
fn golden_events_stay_clear_of_window_edges() {
    let out = python(&[
        "tests/golden/reference.py",
        "--check-margins",
        "tests/golden/events.ndjson",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs python3 with jsonschema: run scripts/test"]
fn schema_agrees_with_the_reference() {
    let out = python(&["tests/golden/check_schema.py"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "check_schema.py failed (is the `jsonschema` package installed? `pip install jsonschema`):\n{text}"
    );
}

#[test]
#[ignore = "needs python3: run scripts/test"]
fn expected_v2_exposition_is_the_reference_output() {
    assert_reference_output(
        "tests/golden/events-v2.ndjson",
        "tests/golden/expected-v2.prom",
    );
}

#[test]
#[ignore = "needs python3 with jsonschema: run scripts/test"]
fn golden_v2_events_stay_clear_of_window_edges_and_agree_with_the_schema() {
    for args in [
        &[
            "tests/golden/reference.py",
            "--check-margins",
            "tests/golden/events-v2.ndjson",
        ][..],
        &[
            "tests/golden/check_schema.py",
            "tests/golden/events-v2.ndjson",
        ][..],
    ] {
        let out = python(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
