//! The fast path of the raw parse: one pass over a flat JSON object, the
//! shape nearly every event has. Measured on the engine bench's mixed
//! stream, serde_json's general parser took about two thirds of all the
//! instructions an event costs, most of it in its string reader and its
//! visitor glue; this path does the same work for flat objects with plain
//! strings and numbers in a fraction of that.
//!
//! It reads bytes, not a validated `&str`: a message that is valid JSON
//! is ASCII outside its strings, and the scan that finds a string's end
//! sees whether any of its bytes is not ASCII, so only such strings are
//! checked for UTF-8 (the whole-message check cost as much as finding
//! every string's end). Anything else that is not ASCII is not JSON here.
//!
//! It never decides anything on its own: it either fills [`Raw`] exactly
//! as the general parser would, or gives up (returns `false`) and the
//! caller runs serde_json on the message from the start. It gives up on
//! whatever it does not handle: escapes and control characters in
//! strings, nested values, `-`, exponents, integers of 20 digits or more,
//! and anything that is not valid JSON (the general parser then names the
//! error). The differential tests in `tests.rs` and the fuzz target check
//! that both paths agree on every message.

use super::{Field, Raw, Scalar};
use std::borrow::Cow;

/// Fills `raw` from `b` if it is a flat object this path handles (and so
/// valid UTF-8).
pub(super) fn parse<'a>(b: &'a [u8], raw: &mut Raw<'a>) -> bool {
    let mut p = Flat { b, i: 0 };
    p.object(raw).is_some()
}

struct Flat<'a> {
    b: &'a [u8],
    i: usize,
}

/// JSON's insignificant whitespace.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Longest decimal this path reads (money has at most 13 integer digits;
/// longer decimals go to serde_json).
const MAX_DECIMAL: usize = 40;

/// 10^0 to 10^15, each an exact double.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A bit for each byte of `chunk` that can end a plain string: `"`, `\\`
/// or a control character (below 0x20); and whether any byte is not
/// ASCII (0x80 or above).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn specials(chunk: &[u8; 16]) -> (u32, bool) {
    use std::arch::x86_64::*;
    // SAFETY: the build enables SSE2 (every x86_64 has it), and the
    // unaligned load reads exactly the 16 bytes `chunk` borrows.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `v <= 0x1f`: the larger of the two is 0x1f.
        let ctrl = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        let hit = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), ctrl)) as u32;
        (hit, _mm_movemask_epi8(v) != 0)
    }
}

/// The same eight bytes at a time in a `u64` (SWAR) on other targets.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn specials(chunk: &[u8; 16]) -> (u32, bool) {
    (specials_swar(chunk), !chunk.is_ascii())
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn specials_swar(chunk: &[u8; 16]) -> u32 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each mask is exact (higher ones may be
    // false positives after it; only the first special byte matters).
    let eq = |w: u64, c: u8| {
        let x = w ^ (LO * c as u64);
        x.wrapping_sub(LO) & !x & HI
    };
    let bits = |h: &[u8]| {
        let w = u64::from_le_bytes(h.try_into().unwrap_or_default());
        let m = eq(w, b'"') | eq(w, b'\\') | (w.wrapping_sub(LO * 0x20) & !w & HI);
        // One bit per byte, at the byte's position.
        let mut out = 0u32;
        for k in 0..8 {
            out |= (((m >> (8 * k + 7)) & 1) as u32) << k;
        }
        out
    };
    let lo = bits(&chunk[..8]);
    if lo != 0 {
        lo & lo.wrapping_neg()
    } else {
        bits(&chunk[8..]) << 8
    }
}

impl<'a> Flat<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            // Whitespace is at most b' ': compact JSON takes one test.
            if c > b' ' || !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next_token(&mut self) -> Option<u8> {
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            if c > b' ' || !is_ws(c) {
                return Some(c);
            }
        }
    }

    fn object(&mut self, raw: &mut Raw<'a>) -> Option<()> {
        if self.next_token()? != b'{' {
            return None;
        }
        match self.next_token()? {
            b'}' => return self.end(),
            b'"' => {}
            _ => return None,
        }
        loop {
            let key = self.string()?;
            if self.next_token()? != b':' {
                return None;
            }
            self.skip_ws();
            let value = self.scalar()?;
            if let Some(slot) = raw.slot(Field::from_name(key)) {
                *slot = Some(value);
            }
            match self.next_token()? {
                b',' => {
                    if self.next_token()? != b'"' {
                        return None;
                    }
                }
                b'}' => return self.end(),
                _ => return None,
            }
        }
    }

    /// Nothing but whitespace after the object.
    fn end(&mut self) -> Option<()> {
        self.skip_ws();
        (self.i == self.b.len()).then_some(())
    }

    /// A string without escapes or control characters, its opening quote
    /// consumed.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i;
        let mut i = start;
        // Whether a byte scanned so far (the string's, or past its end) is
        // not ASCII.
        let mut wide = false;
        while let Some(chunk) = self.b.get(i..i + 16) {
            let (hit, w) = specials(chunk.try_into().ok()?);
            wide |= w;
            if hit != 0 {
                return self.close(start, i + hit.trailing_zeros() as usize, wide);
            }
            i += 16;
        }
        let len = self.b.len();
        if len >= 16 {
            // The message's last 16 bytes, overlapping those already
            // scanned, whose bits are shifted out (`i - base` <= 16).
            let base = len - 16;
            let (hit, w) = specials(self.b[base..].try_into().ok()?);
            let hit = hit >> (i - base);
            return (hit != 0)
                .then(|| i + hit.trailing_zeros() as usize)
                .and_then(|end| self.close(start, end, wide | w));
        }
        while let Some(&c) = self.b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return self.close(start, i, wide);
            }
            wide |= c >= 0x80;
            i += 1;
        }
        None
    }

    /// Ends a string at `i` if the byte there is its closing quote. `wide`
    /// is false only if every byte of `start..i` was seen to be ASCII.
    fn close(&mut self, start: usize, i: usize, wide: bool) -> Option<&'a str> {
        if self.b[i] != b'"' {
            return None;
        }
        self.i = i + 1;
        let s = &self.b[start..i];
        if wide {
            return std::str::from_utf8(s).ok();
        }
        debug_assert!(s.is_ascii());
        // SAFETY: `wide` is false, so the scans of `string` saw every byte
        // of `s` below 0x80: ASCII, which is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(s) })
    }

    /// A value, as the general parser's [`Scalar`] would read it.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                Some(Scalar::Str(Cow::Borrowed(self.string()?)))
            }
            b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Scalar::Bool(true)),
            b'f' => self.literal(b"false", Scalar::Bool(false)),
            b'n' => self.literal(b"null", Scalar::Other),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], v: Scalar<'a>) -> Option<Scalar<'a>> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(v)
    }

    /// A non-negative number without exponent: an integer of at most 19
    /// digits (it fits a `u64`, as serde_json reports it) or a decimal,
    /// read as the nearest double like serde_json's `float_roundtrip`.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            n = n.wrapping_mul(10).wrapping_add((c - b'0') as u64);
            self.i += 1;
        }
        let digits = self.i - start;
        if digits > 19 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        match self.peek() {
            Some(b'.') => {
                self.i += 1;
                let frac = self.i;
                // All the digits, as one integer (exact while there are at
                // most 19 of them).
                let mut m = n;
                while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
                    m = m.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                    self.i += 1;
                }
                let scale = self.i - frac;
                if scale == 0
                    || self.i - start > MAX_DECIMAL
                    || matches!(self.peek(), Some(b'e' | b'E'))
                {
                    return None;
                }
                // Clinger's fast path: with at most 15 digits the integer
                // is below 2^53 and so is 10^scale, both exact doubles, and
                // one IEEE division rounds their quotient correctly: the
                // nearest double to the decimal, as the full reader gives.
                if digits + scale <= 15 {
                    return Some(Scalar::F64(m as f64 / POW10[scale]));
                }
                let digits = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                let x: f64 = digits.parse().ok()?;
                Some(Scalar::F64(x))
            }
            Some(b'e' | b'E') => None,
            _ => Some(Scalar::U64(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Rng;

    /// Decimals of up to 15 digits, which take the exact division, give
    /// the bits the standard library's correctly rounded reader gives.
    #[test]
    fn short_decimals_read_as_the_nearest_double() {
        let mut rng = Rng::new(11);
        let mut seen = 0;
        for _ in 0..300_000 {
            let int_digits = 1 + rng.below(14) as usize;
            let frac_digits = 1 + rng.below(15 - int_digits as u64) as usize;
            let mut text = String::new();
            for k in 0..int_digits {
                let first = k == 0 && int_digits > 1;
                text.push((b'0' + (first as u8) + rng.below(10 - first as u64) as u8) as char);
            }
            text.push('.');
            for _ in 0..frac_digits {
                text.push((b'0' + rng.below(10) as u8) as char);
            }
            let mut p = Flat {
                b: text.as_bytes(),
                i: 0,
            };
            let want: f64 = text.parse().unwrap();
            match p.number() {
                Some(Scalar::F64(x)) => assert_eq!(x.to_bits(), want.to_bits(), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
            assert_eq!(p.i, text.len());
            seen += 1;
        }
        assert_eq!(seen, 300_000);
        // The edges: the largest exact integer part, the smallest scale.
        for text in [
            "999999999999999.0",
            "0.000000000000001",
            "0.1",
            "1.7976931348623",
        ] {
            let mut p = Flat {
                b: text.as_bytes(),
                i: 0,
            };
            let want: f64 = text.parse().unwrap();
            assert!(
                matches!(p.number(), Some(Scalar::F64(x)) if x.to_bits() == want.to_bits()),
                "{text}"
            );
        }
    }

    /// Both ways of finding the first special byte agree (the SWAR one is
    /// what targets without SSE2 use), byte by byte and position by position.
    #[test]
    fn swar_and_sse2_find_the_same_first_special_byte() {
        let mut rng = Rng::new(7);
        let interesting = [
            0u8, 0x1f, 0x20, b'"', b'\\', b'!', b'#', b'[', b']', 0x7f, 0x80, 0x9f, 0xa2, 0xdc,
            0xff,
        ];
        for _ in 0..200_000 {
            let mut chunk = [0u8; 16];
            for b in &mut chunk {
                *b = if rng.below(4) == 0 {
                    interesting[rng.below(interesting.len() as u64) as usize]
                } else {
                    b'a' + rng.below(26) as u8
                };
            }
            let first = chunk
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            let lowest = |m: u32| (m != 0).then(|| m.trailing_zeros() as usize);
            let (hit, wide) = specials(&chunk);
            assert_eq!(lowest(hit), first, "{chunk:?}");
            assert_eq!(wide, chunk.iter().any(|&c| c >= 0x80), "{chunk:?}");
            assert_eq!(lowest(specials_swar(&chunk)), first, "{chunk:?}");
        }
    }
}
