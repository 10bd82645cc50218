//! The golden test's oracle stays honest: `expected.prom` must be exactly
//! what the independent Python reference computes from `events.ndjson`, and
//! the JSON Schema must agree with the reference on which lines are valid.
//! Needs `python3`, and its `jsonschema` package for the schema checks
//! (scripts/test installs both).

use crate::support::{manifest, python};

/// The checked-in `expected` is exactly what reference.py computes from
/// `events`.
fn assert_reference_output(events: &str, expected: &str) {
    let out = python(&["tests/golden/reference.py", events]);
    assert!(
        out.status.success(),
        "reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked_in = std::fs::read(manifest(expected)).unwrap();
    assert!(
        out.stdout == checked_in,
        "{expected} is stale: regenerate it with \
         `python3 tests/golden/reference.py {events} > {expected}`"
    );
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
