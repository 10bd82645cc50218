//! Window slots and views: where a key's rings keep their buckets, and which
//! buckets each published window sums.
//!
//! A **slot** is one ring per group of a key, on one bucket grid: one slot
//! per rolling window (buckets of `W/60` of UTC time), and one per calendar
//! grid when calendar windows are on (METRICS.md v2, "Calendar windows"):
//! a *month* grid of 6 hours and a *day* grid of 1 day, both in the local
//! wall-clock time of `calendar_timezone`. Local midnights are bucket edges
//! on both, so every month, fiscal quarter and fiscal year is a whole run of
//! buckets: calendar windows are exact at period edges.
//!
//! A **view** is one published `window` value: a slot and the bucket ranges
//! of its current sums, of its previous window (METRICS.md v2, "Growth
//! against the previous window") and, for a closed period (`last_month`,
//! `last_quarter`), of the time after it (the starting stock of a window
//! that does not end now is the current stock minus everything since the
//! window's start). Views depend on `now` only, so periods roll over at
//! midnight of the zone with no event needed, as rolling windows slide.
//!
//! The growth groups (leads, deals, customers_new, pipeline_created,
//! sessions, conversions) keep two window lengths of buckets in their
//! rolling slots, the other groups one; calendar slots keep, for every
//! group, back to the start of the previous period of the oldest calendar
//! window (a fixed count of buckets that covers it at any `now`).
//!
//! Local time is naive wall-clock milliseconds (`utc + offset`): the time
//! zone's offsets come from jiff's bundled tz database, looked up in a table
//! of its transitions. In the hour a clock falls back, local times repeat:
//! both passes fall in the same local bucket, as both belong to that local
//! day; no period edge lies inside such an hour in any zone at midnight
//! rules the tz database has (and if one did, the event would still be
//! counted in exactly one bucket, the one its local time names).

use crate::config::{CalWindow, CalendarConfig, WindowSpec, BUCKETS_PER_WINDOW};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::sync::Arc;

/// Width of the month grid's buckets: 6 hours, at most 1/60 of the
/// shortest month (28 days / 60 = 11.2 h), so the end of a to-date previous
/// window is within the contract's tolerance.
pub(crate) const MONTH_GRID_MS: i64 = 6 * 3_600_000;
/// Width of the day grid's buckets (quarters and years: 1 day is under
/// 1/60 of a quarter).
pub(crate) const DAY_GRID_MS: i64 = 86_400_000;
const DAY_MS: i64 = 86_400_000;

/// A time zone's UTC offsets as a table of transitions: `(from, offset)`,
/// both in ms, sorted by `from`, the first from `i64::MIN`. Covers
/// 1900..2200; outside, the nearest offset of the table holds.
#[derive(Debug)]
pub(crate) struct Zone {
    pub name: String,
    tz: TimeZone,
    table: Box<[(i64, i64)]>,
}

impl PartialEq for Zone {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}

impl Zone {
    pub fn new(name: &str, tz: TimeZone) -> Zone {
        let first = Timestamp::from_second(-2_208_988_800).expect("1900 is in range");
        let last = Timestamp::from_second(7_258_118_400).expect("2200 is in range");
        let mut table = vec![(i64::MIN, i64::from(tz.to_offset(first).seconds()) * 1000)];
        for t in tz.following(first) {
            if t.timestamp() >= last {
                break;
            }
            let off = i64::from(t.offset().seconds()) * 1000;
            if table.last().is_some_and(|e| e.1 == off) {
                continue;
            }
            table.push((t.timestamp().as_millisecond(), off));
        }
        Zone {
            name: name.to_string(),
            tz,
            table: table.into_boxed_slice(),
        }
    }

    /// The offset at `ts` and the UTC range `[from, until)` it holds over.
    #[inline]
    pub fn offset(&self, ts: i64) -> (i64, i64, i64) {
        let i = self.table.partition_point(|e| e.0 <= ts).max(1) - 1;
        let until = self.table.get(i + 1).map_or(i64::MAX, |e| e.0);
        (self.table[i].1, self.table[i].0, until)
    }

    /// Local wall-clock ms of the UTC instant `ts`.
    #[inline]
    pub fn local(&self, ts: i64) -> i64 {
        ts.saturating_add(self.offset(ts).0)
    }

    /// The first UTC instant whose local time is at or after the local
    /// wall-clock time `local` (a time skipped by a clock moving forward
    /// starts when the clock has moved).
    pub fn utc(&self, local: i64) -> i64 {
        let dt = naive(local);
        let t = self
            .tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map_or(local, |t| t.as_millisecond());
        if self.local(t) == local {
            // A time that exists (the first of two in a fold).
            t
        } else {
            // A time in a gap: the clock jumped past it at the transition.
            self.offset(t).1
        }
    }
}

/// The civil date-time of local wall-clock ms.
fn naive(local: i64) -> DateTime {
    Timestamp::from_millisecond(local)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC)
        .datetime()
}

/// Local wall-clock ms of a civil date's midnight.
fn date_ms(d: Date) -> i64 {
    d.to_zoned(TimeZone::UTC)
        .map_or(0, |z| z.timestamp().as_millisecond())
}

/// The first day of absolute month `am` (`year * 12 + month - 1`).
fn month_start(am: i64) -> Date {
    let y = am.div_euclid(12);
    let m = am.rem_euclid(12) + 1;
    Date::new(y as i16, m as i8, 1).unwrap_or(Date::MIN)
}

/// Which grid a slot's buckets lie on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// A rolling window's: `W/60` of UTC time.
    Rolling,
    Month,
    Day,
}

/// One slot: its bucket grid and how many buckets its rings keep.
#[derive(Debug, Clone)]
pub struct Slot {
    pub(crate) width: i64,
    /// Buckets kept by the groups without a previous window...
    keep: i64,
    /// ... and by the growth groups.
    keep_growth: i64,
    pub grid: Grid,
    /// The calendar zone (calendar grids only).
    zone: Option<Arc<Zone>>,
}

impl Slot {
    pub fn rolling(spec: &WindowSpec) -> Slot {
        Slot {
            width: spec.width_ms,
            keep: BUCKETS_PER_WINDOW,
            keep_growth: 2 * BUCKETS_PER_WINDOW,
            grid: Grid::Rolling,
            zone: None,
        }
    }

    /// The bucket index of UTC time `ts`.
    #[inline]
    pub fn bucket(&self, ts: i64) -> i64 {
        match &self.zone {
            None => ts.div_euclid(self.width),
            Some(z) => z.local(ts).div_euclid(self.width),
        }
    }

    /// The bucket of `ts` and the UTC range `[lo, hi)` around `ts` that
    /// lies in it (all of it on a rolling grid; on a calendar grid, within
    /// the range the zone's offset at `ts` holds over).
    #[inline]
    pub fn span(&self, ts: i64) -> (i64, i64, i64) {
        let w = self.width;
        match &self.zone {
            None => {
                let b = ts.div_euclid(w);
                let lo = b.saturating_mul(w);
                (b, lo, lo.saturating_add(w))
            }
            Some(z) => {
                let (off, from, until) = z.offset(ts);
                let b = ts.saturating_add(off).div_euclid(w);
                let lo = b.saturating_mul(w).saturating_sub(off);
                (b, lo.max(from), lo.saturating_add(w).min(until))
            }
        }
    }

    /// The oldest bucket the rings keep at engine time `now`: of the growth
    /// groups (`growth`) or the others.
    #[inline]
    pub fn oldest(&self, now: i64, growth: bool) -> i64 {
        let keep = if growth { self.keep_growth } else { self.keep };
        self.bucket(now) - (keep - 1)
    }
}

/// One published `window` value at one engine time.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub label: Arc<str>,
    pub slot: usize,
    /// Bucket ranges `[lo, hi)` on the slot's grid: the window itself...
    pub cur: (i64, i64),
    /// ... its previous window (growth groups only)...
    pub prev: (i64, i64),
    /// ... and the time from its end until now (empty when it ends now;
    /// subscription sums only).
    pub after: (i64, i64),
    /// `W` for the per-day and per-month rates: the window's length, or the
    /// span a calendar window covers.
    pub window_ms: i64,
}

impl View {
    /// A rolling window's view of slot `slot` at `now`.
    pub fn rolling(spec: &WindowSpec, slot: usize, now: i64) -> View {
        let oldest = now.div_euclid(spec.width_ms) - (BUCKETS_PER_WINDOW - 1);
        View {
            label: Arc::from(spec.label.as_str()),
            slot,
            cur: (oldest, i64::MAX),
            prev: (oldest - BUCKETS_PER_WINDOW, oldest),
            after: (0, 0),
            window_ms: spec.len_ms,
        }
    }
}

/// Is bucket `b` in `[r.0, r.1)`?
#[inline]
pub fn within(b: i64, r: (i64, i64)) -> bool {
    b >= r.0 && b < r.1
}

/// The calendar windows of one engine: their zone, grids and periods.
#[derive(Debug, Clone)]
pub struct Calendar {
    windows: Vec<CalWindow>,
    zone: Arc<Zone>,
    fiscal_start: i64,
    /// Slot index of the month grid and of the day grid, when used.
    month_slot: Option<usize>,
    day_slot: Option<usize>,
}

/// The periods around one instant: absolute months (`year * 12 + month -
/// 1`) of the current month, fiscal quarter and fiscal year, and the local
/// time of day of `now`.
struct Periods {
    month: i64,
    quarter: i64,
    year: i64,
    /// Local wall-clock ms of `now`.
    local: i64,
    day: i8,
}

impl Calendar {
    /// The calendar of `cfg` (`None` when no calendar window is on), with
    /// its grids appended after `first_slot` rolling slots; the slots to
    /// add are pushed to `slots`.
    pub fn new(cfg: &CalendarConfig, slots: &mut Vec<Slot>) -> Option<Calendar> {
        if cfg.windows.is_empty() {
            return None;
        }
        let zone = Arc::new(Zone::new(&cfg.timezone, cfg.tz.clone()));
        let has = |w: CalWindow| cfg.windows.contains(&w);
        let mut month_slot = None;
        let mut day_slot = None;
        if has(CalWindow::Mtd) || has(CalWindow::LastMonth) {
            month_slot = Some(slots.len());
            // Back to the start of the month before last: at most 3 months
            // of 31 days (and a day for the bucket of `now`).
            let keep = 94 * (DAY_MS / MONTH_GRID_MS);
            slots.push(Slot {
                width: MONTH_GRID_MS,
                keep,
                keep_growth: keep,
                grid: Grid::Month,
                zone: Some(zone.clone()),
            });
        }
        if has(CalWindow::Qtd) || has(CalWindow::Ytd) || has(CalWindow::LastQuarter) {
            day_slot = Some(slots.len());
            // Back to the start of the previous fiscal year (at most 2 x 366
            // days), or of the quarter before last (3 x 92 days).
            let keep = if has(CalWindow::Ytd) { 733 } else { 277 };
            slots.push(Slot {
                width: DAY_GRID_MS,
                keep,
                keep_growth: keep,
                grid: Grid::Day,
                zone: Some(zone.clone()),
            });
        }
        Some(Calendar {
            windows: cfg.windows.clone(),
            zone,
            fiscal_start: i64::from(cfg.fiscal_year_start_month),
            month_slot,
            day_slot,
        })
    }

    fn periods(&self, now: i64) -> Periods {
        let local = self.zone.local(now);
        let dt = naive(local);
        let month = i64::from(dt.year()) * 12 + i64::from(dt.month()) - 1;
        // Months since the fiscal year started.
        let into_year = (i64::from(dt.month()) - self.fiscal_start).rem_euclid(12);
        Periods {
            month,
            quarter: month - into_year % 3,
            year: month - into_year,
            local,
            day: dt.day(),
        }
    }

    /// Local ms of the start of absolute month `am`.
    fn start(am: i64) -> i64 {
        date_ms(month_start(am))
    }

    /// The end of a to-date window's previous window: the same local
    /// calendar point `months` months before `now`'s (same day of month
    /// and time of day), or the end of that previous period when the day
    /// does not exist there (METRICS.md v2).
    fn same_point(p: &Periods, period_start: i64, months: i64) -> i64 {
        let now_month_start = Self::start(p.month);
        let day_start = p.local - (p.local - now_month_start).rem_euclid(DAY_MS);
        let time_of_day = p.local - day_start;
        let target = month_start(p.month - months);
        if p.day > target.days_in_month() {
            return Self::start(period_start);
        }
        date_ms(target) + (i64::from(p.day) - 1) * DAY_MS + time_of_day
    }

    /// The views of every calendar window at `now`, in the contract's
    /// order (mtd, qtd, ytd, last_month, last_quarter).
    pub fn views(&self, now: i64) -> Vec<View> {
        let p = self.periods(now);
        let z = &self.zone;
        let mut out = Vec::with_capacity(self.windows.len());
        for &w in &self.windows {
            let (slot, width) = match w {
                CalWindow::Mtd | CalWindow::LastMonth => (self.month_slot, MONTH_GRID_MS),
                _ => (self.day_slot, DAY_GRID_MS),
            };
            let Some(slot) = slot else { continue };
            let b = |local: i64| local.div_euclid(width);
            let b_ceil = |local: i64| -(-local).div_euclid(width);
            let (len, start) = match w {
                CalWindow::Mtd | CalWindow::LastMonth => (1, p.month),
                CalWindow::Qtd | CalWindow::LastQuarter => (3, p.quarter),
                CalWindow::Ytd => (12, p.year),
            };
            let view = match w {
                CalWindow::Mtd | CalWindow::Qtd | CalWindow::Ytd => {
                    let from = Self::start(start);
                    let end = Self::same_point(&p, start, len);
                    View {
                        label: Arc::from(w.label()),
                        slot,
                        cur: (b(from), i64::MAX),
                        prev: (b(Self::start(start - len)), b_ceil(end)),
                        after: (0, 0),
                        window_ms: now.saturating_sub(z.utc(from)),
                    }
                }
                CalWindow::LastMonth | CalWindow::LastQuarter => {
                    let (from, to) = (Self::start(start - len), Self::start(start));
                    View {
                        label: Arc::from(w.label()),
                        slot,
                        cur: (b(from), b(to)),
                        prev: (b(Self::start(start - 2 * len)), b(from)),
                        after: (b(to), i64::MAX),
                        window_ms: z.utc(to).saturating_sub(z.utc(from)),
                    }
                }
            };
            out.push(view);
        }
        out
    }

    /// The UTC start of the oldest span any calendar window covers at
    /// `now` (its previous period included), and the UTC range of `now`'s
    /// local day, over which that start holds.
    pub(crate) fn oldest_start(&self, now: i64) -> (i64, (i64, i64)) {
        let p = self.periods(now);
        let oldest = self
            .windows
            .iter()
            .map(|w| match w {
                CalWindow::Mtd => p.month - 1,
                CalWindow::LastMonth => p.month - 2,
                CalWindow::Qtd => p.quarter - 3,
                CalWindow::LastQuarter => p.quarter - 6,
                CalWindow::Ytd => p.year - 12,
            })
            .min()
            .unwrap_or(p.month);
        let day = p.local - (p.local - Self::start(p.month)).rem_euclid(DAY_MS);
        let valid = (self.zone.utc(day), self.zone.utc(day + DAY_MS));
        (self.zone.utc(Self::start(oldest)), valid)
    }
}

#[cfg(test)]
mod tests;
