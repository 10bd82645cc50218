//! Timestamp parsing: RFC 3339 strings and epoch milliseconds, to integer
//! milliseconds since the Unix epoch. Hand-written because it runs once or
//! twice per event on the hot path; it never panics on any input.

/// Largest accepted timestamp: 9999-12-31T23:59:59.999Z.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

/// Days since 1970-01-01 of a proleptic Gregorian date of the years 0 to
/// 9999, the only ones RFC 3339 names (Howard Hinnant's
/// `days_from_civil`). In unsigned arithmetic, the year moved one era
/// (400 years) on so that nothing is negative: each division by a
/// constant is then a multiplication without sign corrections, and the
/// whole took 53 instructions an event in signed arithmetic, as a call.
#[inline(always)]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    debug_assert!((0..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1);
    let (y, m, d) = (y as u64 + 400, m as u64, d as u64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe) as i64 - 719_468 - 146_097
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days of month `m` (1 to 12) of year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let days = DAYS.get((m - 1) as usize).copied().unwrap_or(0);
    // The leap test only for February.
    days + i64::from(m == 2 && is_leap(y))
}

/// Whether the fields name a real date and time (second 60: a leap
/// second).
#[inline(always)]
fn is_date_time(year: i64, month: i64, day: i64, hour: i64, min: i64, sec: i64) -> bool {
    (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && min <= 59
        && sec <= 60
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 date-time (`2026-11-25T07:54:39.123+02:00`) into epoch
/// milliseconds. Fractions beyond the millisecond are truncated; `T`, `t` or a
/// space separate date and time; `Z`, `z` or `+HH:MM` / `-HH:MM` give the
/// offset. Returns `None` for anything else.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    parse_canonical(s.as_bytes()).or_else(|| parse_general(s.as_bytes()))
}

/// The forms producers send, `2026-11-25T07:54:39Z`,
/// `2026-11-25T07:54:39.123Z` and, out of line, any other fraction length
/// or a `z`, `+HH:MM` or `-HH:MM` offset after a `T` (as Java's
/// `Instant`, Go's `RFC3339Nano` and Python's `isoformat` write them),
/// read eight bytes at a time (SWAR) with fixed offsets; `None` for
/// anything else (a `t` or space separator, a leap second), which
/// [`parse_general`] then reads. Both give the same value wherever this
/// one gives one (tested).
#[inline]
fn parse_canonical(b: &[u8]) -> Option<i64> {
    let (h, tail) = b.split_first_chunk::<19>()?;
    let (millis, offset_s) = match *tail {
        [b'Z'] => (0, 0),
        [b'.', x, y, z, b'Z'] => {
            let [x, y, z] = [x, y, z].map(|c| c.wrapping_sub(b'0'));
            if x > 9 || y > 9 || z > 9 {
                return None;
            }
            (i64::from(x) * 100 + i64::from(y) * 10 + i64::from(z), 0)
        }
        _ => fraction_and_offset(tail)?,
    };
    // `YYYY-MM-` and `DDTHH:MM`, XORed with what a valid one has where
    // its separators are and `0` where its digits are: a valid header
    // leaves each digit's value (0 to 9) and zero at each separator.
    const LO: u64 = u64::from_le_bytes(*b"0000-00-");
    const MID: u64 = u64::from_le_bytes(*b"00T00:00");
    const LO_SEP: u64 = u64::from_le_bytes([0, 0, 0, 0, 0xff, 0, 0, 0xff]);
    const MID_SEP: u64 = u64::from_le_bytes([0, 0, 0xff, 0, 0, 0xff, 0, 0]);
    let lo = u64::from_le_bytes(h[..8].try_into().ok()?) ^ LO;
    let mid = u64::from_le_bytes(h[8..16].try_into().ok()?) ^ MID;
    let [colon, s0, s1] = [h[16], h[17], h[18]];
    let (s0, s1) = (s0.wrapping_sub(b'0'), s1.wrapping_sub(b'0'));
    // A byte is at most 9 if neither it nor it plus 0x76 has its top bit
    // set (a byte of 0x80 or more may carry into the next one, but is
    // itself flagged by the first test).
    let big = |x: u64| (x | x.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080;
    if big(lo) | big(mid) | (lo & LO_SEP) | (mid & MID_SEP) != 0
        || colon != b':'
        || s0 > 9
        || s1 > 9
    {
        return None;
    }
    let d = |x: u64, i: u32| ((x >> (8 * i)) & 0xff) as i64;
    let year = d(lo, 0) * 1000 + d(lo, 1) * 100 + d(lo, 2) * 10 + d(lo, 3);
    let month = d(lo, 5) * 10 + d(lo, 6);
    let day = d(mid, 0) * 10 + d(mid, 1);
    let hour = d(mid, 3) * 10 + d(mid, 4);
    let min = d(mid, 6) * 10 + d(mid, 7);
    let sec = i64::from(s0) * 10 + i64::from(s1);
    // Leap seconds go to the general reader.
    if sec > 59 || !is_date_time(year, month, day, hour, min, sec) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    Some((secs - offset_s) * 1000 + millis)
}

/// What follows the seconds, as [`parse_general`] reads it: an optional
/// fraction of one digit or more (the first three give the
/// milliseconds), then `Z`, `z` or an offset of at most 23:59, and
/// nothing after it. Returns (milliseconds, offset in seconds).
#[inline(never)]
fn fraction_and_offset(tail: &[u8]) -> Option<(i64, i64)> {
    let mut i = 0;
    let mut millis = 0i64;
    if tail.first() == Some(&b'.') {
        i = 1;
        while let Some(&c @ b'0'..=b'9') = tail.get(i) {
            if i <= 3 {
                millis = millis * 10 + i64::from(c - b'0');
            }
            i += 1;
        }
        match i - 1 {
            0 => return None,
            n @ 1..=2 => millis *= [100, 10][n - 1],
            _ => {}
        }
    }
    match tail[i..] {
        [b'Z' | b'z'] => Some((millis, 0)),
        [sign @ (b'+' | b'-'), h0, h1, b':', m0, m1] => {
            let [h0, h1, m0, m1] = [h0, h1, m0, m1].map(|c| c.wrapping_sub(b'0'));
            if h0 > 9 || h1 > 9 || m0 > 9 || m1 > 9 {
                return None;
            }
            let (oh, om) = (i64::from(h0 * 10 + h1), i64::from(m0 * 10 + m1));
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            Some((millis, if sign == b'-' { -o } else { o }))
        }
        _ => None,
    }
}

/// Every form [`parse_rfc3339_ms`] accepts. Not inlined, so that the
/// canonical reader's callers stay small.
#[inline(never)]
fn parse_general(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let min = digits(b, 14, 2)?;
    let sec = digits(b, 17, 2)?;
    if !is_date_time(year, month, day, hour, min, sec) {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let oh = digits(b, i + 1, 2)?;
            if b.get(i + 3) != Some(&b':') {
                return None;
            }
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    if sec == 60 {
        // A leap second is read as the first millisecond of the next minute.
        millis = 0;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + millis)
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision
/// (used by the synthetic generator and in messages; not on the hot path).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract_examples() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-25T08:00:00Z"),
            Some(1_795_593_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-25T10:00:00.123456+02:00"),
            Some(1_795_593_600_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-25t03:30:00.5-04:30"),
            Some(1_795_593_600_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-25 08:00:00z"),
            Some(1_795_593_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("9999-12-31T23:59:59.999Z"),
            Some(MAX_TS_MS)
        );
        assert_eq!(
            parse_rfc3339_ms("2016-12-31T23:59:60Z"),
            parse_rfc3339_ms("2017-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2026-11-25",
            "2026-11-25T08:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T08:00:00.Z",
            "2026-11-25T08:00:00+0200",
            "2026-11-25T08:00:00+02:00x",
            "2026-11-25X08:00:00Z",
            "２０２６-11-25T08:00:00Z",
            "2026-11-25T08:00:00+24:00",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    /// Random timestamps of the canonical shape, valid or not (months to
    /// 19, days to 39, hours to 29, seconds to 69, any year), with no
    /// fraction or one of 0 to 12 digits, `Z`, `z` or an offset (hours
    /// to 29, minutes to 69), mostly a `T` (sometimes `t` or a space),
    /// and single bytes changed in them.
    fn canonical_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (
            (0u32..=9999, 0u32..20, 0u32..40),
            (0u32..30, 0u32..60, 0u32..70),
            prop::option::of(prop::collection::vec(0u8..10, 0..13)),
            (0u8..8, 0u32..30, 0u32..70),
            prop::option::of((0usize..40, any::<u8>())),
        )
            .prop_map(|((y, mo, d), (h, mi, s), frac, (form, oh, om), change)| {
                let frac = frac.map_or(String::new(), |ds| {
                    let ds: String = ds.iter().map(|d| char::from(b'0' + d)).collect();
                    format!(".{ds}")
                });
                let sep = match form {
                    6 => 't',
                    7 => ' ',
                    _ => 'T',
                };
                let zone = match form {
                    0 | 1 | 6 | 7 => "Z".to_string(),
                    2 => "z".to_string(),
                    3 | 4 => format!("+{oh:02}:{om:02}"),
                    _ => format!("-{oh:02}:{om:02}"),
                };
                let mut b = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}")
                    .into_bytes();
                if let Some((at, byte)) = change {
                    let at = at % b.len();
                    b[at] = byte;
                }
                b
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The fixed-offset reader gives what the general one gives
        /// wherever it gives anything, and takes every valid timestamp
        /// with a `T` but leap seconds; jiff, written independently,
        /// agrees on the value (the instant's millisecond, rounded down).
        #[test]
        fn canonical_reader_agrees_with_the_general_one_and_jiff(b in canonical_like()) {
            let fast = parse_canonical(&b);
            let general = parse_general(&b);
            if fast.is_some() {
                proptest::prop_assert_eq!(fast, general);
            }
            let s = String::from_utf8_lossy(&b);
            if general.is_some() && b[10] == b'T' && &s[17..19] != "60" {
                proptest::prop_assert!(fast.is_some(), "{s}");
                // jiff reads at most nine fraction digits.
                let digits = s[19..].bytes().filter(u8::is_ascii_digit).count();
                let offset_digits = if s.ends_with(['Z', 'z']) { 0 } else { 4 };
                if digits - offset_digits <= 9 {
                    let jiff: jiff::Timestamp = s.parse().expect("jiff reads it");
                    let ms = jiff.as_nanosecond().div_euclid(1_000_000);
                    proptest::prop_assert_eq!(general.map(i128::from), Some(ms), "{}", s);
                }
            }
        }
    }

    /// Every date of the years 0 to 9999 is one day after the one before
    /// it, from 0000-01-01 (719,528 days before the epoch) on, and
    /// 1970-01-01 is day 0.
    #[test]
    fn every_date_is_the_day_after_the_one_before() {
        let mut want = -719_528;
        for y in 0..=9999 {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m) {
                    assert_eq!(days_from_civil(y, m, d), want, "{y:04}-{m:02}-{d:02}");
                    want += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_in_month(2000, 2) + days_in_month(1900, 2), 29 + 28);
        assert_eq!(want, 2_932_897);
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1_795_593_600_123, MAX_TS_MS, 951_782_400_000, -1] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }
}
