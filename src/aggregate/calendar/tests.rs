//! Calendar windows and previous windows at the awkward edges: months and
//! daylight saving in Europe/Berlin, a fiscal year starting in April,
//! 29 February, events exactly on a period edge, events late for calendar
//! windows but not for the 90d window, and periods rolling over with no
//! event. Expected values are worked out by hand from the contract.

use super::*;
use crate::config::{parse_calendar_windows, parse_timezone, parse_windows, ClockMode};
use crate::engine::{Engine, Outcome, Partition};

fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_millisecond()
}

fn engine(windows: &str, calendar: &str, tz: &str, fiscal: u8) -> Engine {
    Engine::new(crate::config::EngineConfig {
        windows: parse_windows(windows).unwrap(),
        clock: ClockMode::Event,
        calendar: CalendarConfig {
            windows: parse_calendar_windows(calendar).unwrap(),
            timezone: tz.into(),
            tz: parse_timezone(tz).unwrap(),
            fiscal_year_start_month: fiscal,
        },
        ..crate::config::EngineConfig::default()
    })
}

/// Applies a new lead at `ts` (one key), returning whether it was late.
fn lead(p: &mut Partition, id: &str, ts: &str) -> bool {
    let line = format!(
        r#"{{"id":"{id}","ts":"{ts}","channel":"c","campaign":"k","type":"lead","lead_id":"{id}","stage":"new"}}"#
    );
    match p.process_at(line.as_bytes(), ms("2100-01-01T00:00:00Z")) {
        Outcome::Applied { late } => late,
        other => panic!("{line}: {other:?}"),
    }
}

/// `(leads, leads_previous, W)` of every window at `now`, by label.
fn leads(p: &Partition, now: &str) -> Vec<(String, i64, i64, i64)> {
    p.agg
        .sums_at(&p.agg.keys()[0], ms(now))
        .into_iter()
        .map(|(l, w)| {
            (
                l.to_string(),
                w.leads[0],
                w.prev.leads[0],
                w.params.window_ms,
            )
        })
        .collect()
}

fn get(v: &[(String, i64, i64, i64)], label: &str) -> (i64, i64, i64) {
    let x = v.iter().find(|x| x.0 == label).expect(label);
    (x.1, x.2, x.3)
}

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

#[test]
fn berlin_offsets_follow_daylight_saving() {
    let z = Zone::new("Europe/Berlin", parse_timezone("Europe/Berlin").unwrap());
    // 29 March 2026, 01:00 UTC: CET (+1) becomes CEST (+2).
    assert_eq!(z.offset(ms("2026-03-29T00:59:59Z")).0, H);
    assert_eq!(z.offset(ms("2026-03-29T01:00:00Z")).0, 2 * H);
    // 25 October 2026, 01:00 UTC: back to CET.
    assert_eq!(z.offset(ms("2026-10-25T00:59:59Z")).0, 2 * H);
    assert_eq!(z.offset(ms("2026-10-25T01:00:00Z")).0, H);
    // Local midnight of 1 April is 22:00 UTC the day before; 02:30 on the
    // day clocks spring forward does not exist and starts at 03:00 CEST.
    assert_eq!(
        z.utc(ms("2026-04-01T00:00:00Z")),
        ms("2026-03-31T22:00:00Z")
    );
    assert_eq!(
        z.utc(ms("2026-03-29T02:30:00Z")),
        ms("2026-03-29T01:00:00Z")
    );
}

#[test]
fn a_month_edge_in_berlin_across_spring_forward() {
    let e = engine("1d,90d", "mtd,last_month", "Europe/Berlin", 1);
    let mut p = e.partition();
    for (id, ts) in [
        ("a", "2026-03-29T00:30:00Z"),     // 01:30 CET, before the jump
        ("b", "2026-03-29T01:30:00Z"),     // 03:30 CEST, after it
        ("c", "2026-03-31T21:59:59.999Z"), // 31 March, 23:59:59.999 local
    ] {
        assert!(!lead(&mut p, id, ts));
    }
    let v = leads(&p, "2026-03-31T21:59:59.999Z");
    assert_eq!(get(&v, "mtd").0, 3);
    assert_eq!(get(&v, "last_month").0, 0);
    // Past local midnight, with no new event: March rolls into last_month.
    let v = leads(&p, "2026-03-31T22:00:00Z");
    assert_eq!(get(&v, "mtd"), (0, 0, 0));
    assert_eq!(get(&v, "last_month").0, 3);
    // An event exactly on the edge: 1 April, 00:00 local.
    assert!(!lead(&mut p, "d", "2026-03-31T22:00:00Z"));
    let v = leads(&p, "2026-04-01T10:00:00Z");
    let (mtd, mtd_prev, mtd_w) = get(&v, "mtd");
    assert_eq!((mtd, mtd_prev), (1, 0));
    assert_eq!(mtd_w, 12 * H, "1 April 00:00 CEST is 22:00 UTC on 31 March");
    let (last, last_prev, last_w) = get(&v, "last_month");
    assert_eq!((last, last_prev), (3, 0));
    assert_eq!(last_w, 31 * D - H, "March in Berlin is an hour short");
    // 1 May: April is last month, March its previous month.
    let v = leads(&p, "2026-05-01T12:00:00Z");
    assert_eq!(get(&v, "last_month").0, 1);
    assert_eq!(get(&v, "last_month").1, 3);
    assert_eq!(get(&v, "mtd").0, 0);
    assert_eq!(get(&v, "mtd").1, 1, "1 to 1 May 14:00 of April holds d");
}

#[test]
fn a_month_edge_in_berlin_across_fall_back() {
    let e = engine("1d", "mtd,last_month", "Europe/Berlin", 1);
    let mut p = e.partition();
    for (id, ts) in [
        ("a", "2026-10-25T00:30:00Z"), // 02:30 CEST, first pass
        ("b", "2026-10-25T01:30:00Z"), // 02:30 CET, the repeated hour
        ("c", "2026-10-31T22:59:59Z"), // 31 October, 23:59:59 CET
        ("d", "2026-10-31T23:00:00Z"), // 1 November, 00:00 CET
    ] {
        assert!(!lead(&mut p, id, ts));
    }
    let v = leads(&p, "2026-11-02T00:00:00Z");
    assert_eq!(get(&v, "mtd").0, 1);
    let (last, _, w) = get(&v, "last_month");
    assert_eq!(last, 3);
    assert_eq!(w, 31 * D + H, "October in Berlin is an hour long");
}

#[test]
fn a_fiscal_year_starting_in_april() {
    let e = engine("1d,90d", "mtd,qtd,ytd,last_month,last_quarter", "UTC", 4);
    let mut p = e.partition();
    for (id, ts) in [
        ("y1", "2025-05-01T00:00:00Z"), // in the previous fiscal year to date
        ("y2", "2025-06-01T00:00:00Z"), // in the previous fiscal year, later
        ("q1", "2026-02-10T00:00:00Z"), // previous quarter, before 15 Feb 12:00
        ("q2", "2026-02-20T00:00:00Z"), // previous quarter, after it
        ("q3", "2026-03-31T23:59:59Z"), // last second of fiscal 2025
        ("n1", "2026-04-01T00:00:00Z"), // first second of fiscal 2026: edge
        ("n2", "2026-05-10T00:00:00Z"),
    ] {
        assert!(!lead(&mut p, id, ts), "{id}");
    }
    let v = leads(&p, "2026-05-15T12:00:00Z");
    // Fiscal Q1 is April to June: quarter and year to date hold n1 and n2.
    assert_eq!(get(&v, "qtd"), (2, 1, 44 * D + 12 * H));
    assert_eq!(get(&v, "ytd"), (2, 1, 44 * D + 12 * H));
    // Last quarter: January to March; its previous one October to December.
    assert_eq!(get(&v, "last_quarter").0, 3);
    assert_eq!(get(&v, "last_quarter").1, 0);
    assert_eq!(get(&v, "last_quarter").2, 90 * D);
    // May to date against 1 to 15 April 12:00.
    assert_eq!(get(&v, "mtd"), (1, 1, 14 * D + 12 * H));
    assert_eq!(get(&v, "last_month").0, 1);
    // An event from before the previous fiscal year is late (older than
    // 2 x 90d too); one inside it is not.
    assert!(lead(&mut p, "old", "2025-03-31T12:00:00Z"));
    assert!(!lead(&mut p, "y3", "2025-04-01T00:00:00Z"));
    assert_eq!(p.agg.stats.late, 1);
}

#[test]
fn the_29th_of_february() {
    let e = engine("1d", "mtd,ytd", "UTC", 1);
    let mut p = e.partition();
    for (id, ts) in [
        ("a", "2028-02-29T10:00:00Z"),
        ("b", "2028-02-29T20:00:00Z"),
        ("c", "2027-02-28T10:00:00Z"),
        ("d", "2027-12-31T10:00:00Z"),
    ] {
        assert!(!lead(&mut p, id, ts));
    }
    // 29 March, 12:00: last month to the same point is 1 to 29 February
    // 12:00 (a, not b).
    let v = leads(&p, "2028-03-29T12:00:00Z");
    assert_eq!(get(&v, "mtd").1, 1);
    // 30 March: February has no 30th, so the whole of February.
    let v = leads(&p, "2028-03-30T12:00:00Z");
    assert_eq!(get(&v, "mtd").1, 2);
    // 29 February 2028: year to date against the whole of 2027, which has
    // no 29 February.
    let v = leads(&p, "2028-02-29T21:00:00Z");
    assert_eq!(get(&v, "ytd"), (2, 2, (31 + 28) * D + 21 * H));
    // 28 February 2028: against 2027 up to 28 February 21:00 (c only).
    let v = leads(&p, "2028-02-28T21:00:00Z");
    assert_eq!(get(&v, "ytd").1, 1);
}

#[test]
fn late_for_calendar_windows_but_not_for_90d() {
    let e = engine("90d", "mtd", "UTC", 1);
    let mut p = e.partition();
    assert!(!lead(&mut p, "now", "2026-06-15T00:00:00Z"));
    // 66 days old: before the previous month, inside 90d.
    assert!(!lead(&mut p, "apr", "2026-04-10T00:00:00Z"));
    let v = leads(&p, "2026-06-15T00:00:00Z");
    assert_eq!(get(&v, "90d").0, 2);
    assert_eq!(get(&v, "mtd"), (1, 0, 14 * D));
    // 226 days old: older than 2 x 90d and than 1 May.
    assert!(lead(&mut p, "old", "2025-11-01T00:00:00Z"));
    // 120 days old: in no window but the 90d window's previous one.
    assert!(!lead(&mut p, "feb", "2026-02-15T00:00:00Z"));
    let v = leads(&p, "2026-06-15T00:00:00Z");
    assert_eq!(get(&v, "90d"), (2, 1, 90 * D));
    assert_eq!(get(&v, "mtd"), (1, 0, 14 * D));
    assert_eq!(p.agg.stats.late, 1);
}

#[test]
fn rolling_previous_windows() {
    let e = engine("1d", "", "UTC", 1);
    let mut p = e.partition();
    for (id, ts) in [
        ("p1", "2026-06-13T12:00:00Z"), // 1.5 days before now: previous
        ("p2", "2026-06-13T13:00:00Z"),
        ("c1", "2026-06-14T12:00:00Z"), // half a day: current
        ("c2", "2026-06-15T00:00:00Z"),
        ("c3", "2026-06-15T00:00:00Z"),
    ] {
        lead(&mut p, id, ts);
    }
    let v = leads(&p, "2026-06-15T00:00:00Z");
    assert_eq!(get(&v, "1d"), (3, 2, D));
    // A day later the current window is the previous one, with no event.
    let v = leads(&p, "2026-06-16T00:00:00Z");
    assert_eq!(get(&v, "1d"), (0, 3, D));
    // An event older than 2 x 1d is late; one between 1d and 2d is not.
    assert!(lead(&mut p, "x", "2026-06-12T23:00:00Z"));
    assert!(!lead(&mut p, "y", "2026-06-13T01:00:00Z"));
}

#[test]
fn views_without_calendar_are_the_rolling_windows() {
    let e = engine("5m,1h", "", "UTC", 1);
    let p = e.partition();
    let labels: Vec<String> = p
        .agg
        .views(ms("2026-06-15T00:00:00Z"))
        .iter()
        .map(|v| v.label.to_string())
        .collect();
    assert_eq!(labels, ["5m", "1h"]);
    assert_eq!(p.agg.slots().len(), 2);
}
