//! The fast path of the raw parse: one pass over a flat JSON object, the
//! shape nearly every event has. Measured on the engine bench's mixed
//! stream, serde_json's general parser took about two thirds of all the
//! instructions an event costs, most of it in its string reader and its
//! visitor glue; this path does the same work for flat objects with plain
//! strings and numbers in a fraction of that.
//!
//! It reads bytes, not a validated `&str`: a message that is valid JSON
//! is ASCII outside its strings, and the scan that finds strings' ends
//! (64 bytes at a time, see `Flat::string`) sees whether any byte is not
//! ASCII; once one is, each string is checked for UTF-8 (a separate
//! whole-message check cost as much as finding every string's end).
//! Anything else that is not ASCII is not JSON here.
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
    let mut p = Flat::new(b);
    p.object(raw).is_some()
}

struct Flat<'a> {
    b: &'a [u8],
    i: usize,
    /// The message offset (a multiple of [`BLOCK`]) of the block `mask`
    /// describes; `usize::MAX` before the first.
    block: usize,
    /// A bit for each byte of that block that can end a plain string (see
    /// [`specials`]), and for each position past the message's end.
    mask: u64,
    /// Whether a byte of any block described so far is not ASCII.
    wide: bool,
}

impl<'a> Flat<'a> {
    fn new(b: &'a [u8]) -> Self {
        Flat {
            b,
            i: 0,
            block: usize::MAX,
            mask: 0,
            wide: false,
        }
    }
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
        let hit = _mm_movemask_epi8(special_lanes(v)) as u32;
        (hit, _mm_movemask_epi8(v) != 0)
    }
}

/// The lanes of `v` that can end a plain string (all ones), the rest
/// zero: the one definition [`specials`] and [`block_specials`] share.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn special_lanes(v: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: the build enables SSE2; these touch registers only.
    unsafe {
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `v <= 0x1f`: the larger of the two is 0x1f.
        let ctrl = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        _mm_or_si128(_mm_or_si128(quote, backslash), ctrl)
    }
}

/// The same eight bytes at a time in a `u64` (SWAR) on other targets.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn specials(chunk: &[u8; 16]) -> (u32, bool) {
    (specials_swar(chunk), !chunk.is_ascii())
}

/// Every bit exact, as the block masks of [`Flat::special_from`] need (a
/// false bit after a true one would end a later string early).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn specials_swar(chunk: &[u8; 16]) -> u32 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The top bit of each byte that is zero: adding 0x7f to its low seven
    // bits sets bit 7 unless they are all zero, and never carries into
    // the next byte.
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x) & HI;
    let bits = |h: &[u8]| {
        let w = u64::from_le_bytes(h.try_into().unwrap_or_default());
        // Below 0x20: top bit clear, and adding 0x60 to the low seven
        // bits leaves bit 7 clear.
        let ctrl = !(((w & LOW7).wrapping_add(LO * 0x60)) | w) & HI;
        let m = zero(w ^ (LO * b'"' as u64)) | zero(w ^ (LO * b'\\' as u64)) | ctrl;
        // One bit per byte, at the byte's position.
        let mut out = 0u32;
        for k in 0..8 {
            out |= (((m >> (8 * k + 7)) & 1) as u32) << k;
        }
        out
    };
    bits(&chunk[..8]) | bits(&chunk[8..]) << 8
}

/// Bytes one mask of [`Flat::special_from`] covers.
const BLOCK: usize = 64;

/// [`specials`] of a whole block: a bit for each of its bytes that can end
/// a plain string, and whether any of them is not ASCII.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn block_specials(block: &[u8; BLOCK]) -> (u64, bool) {
    use std::arch::x86_64::*;
    // SAFETY: as in `specials`; each load reads 16 of the 64 bytes
    // `block` borrows.
    unsafe {
        let p = block.as_ptr();
        let mut mask = 0u64;
        let mut any = _mm_setzero_si128();
        for k in 0..BLOCK / 16 {
            let v = _mm_loadu_si128(p.add(16 * k).cast());
            let hit = _mm_movemask_epi8(special_lanes(v)) as u32;
            mask |= u64::from(hit & 0xffff) << (16 * k);
            any = _mm_or_si128(any, v);
        }
        (mask, _mm_movemask_epi8(any) != 0)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn block_specials(block: &[u8; BLOCK]) -> (u64, bool) {
    let mut mask = 0u64;
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        let (hit, _) = specials(chunk.try_into().unwrap_or(&[0; 16]));
        mask |= u64::from(hit) << (16 * k);
    }
    (mask, !block.is_ascii())
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
    ///
    /// Its end is the first special byte from its start on, found in
    /// masks of 64 bytes at a time: a message's bytes (nearly all of them
    /// in strings) are scanned once, 16 at a time, for all its strings
    /// together, instead of each string's own scan starting over with
    /// checks of its own. Those scans took 850 of the 4,740 instructions
    /// an event of the engine bench's 100k-key mixed row; the blocks and
    /// the shorter reading take 194 fewer in all (docs/PERFORMANCE.md).
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = self.special_from(start);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        let s = &self.b[start..end];
        if self.wide {
            return std::str::from_utf8(s).ok();
        }
        debug_assert!(s.is_ascii());
        // SAFETY: `wide` is false, so no byte of a block described so far
        // is 0x80 or above, and every block from `start`'s to `end`'s has
        // been described (`special_from` goes block by block): `s` is
        // ASCII, which is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(s) })
    }

    /// The position of the first special byte at or after `from`, or a
    /// position at or past the message's end if there is none.
    #[inline]
    fn special_from(&mut self, mut from: usize) -> usize {
        loop {
            let base = from & !(BLOCK - 1);
            if base != self.block {
                self.describe(base);
            }
            let m = self.mask >> (from - base);
            if m != 0 {
                return from + m.trailing_zeros() as usize;
            }
            from = base + BLOCK;
        }
    }

    /// Makes `mask` describe the block at `base`: positions past the end
    /// of the message count as special, so that every search ends. Not
    /// inlined: inlined, its set-up was hoisted into every `string`,
    /// most of which find their end in the block already described.
    #[inline(never)]
    fn describe(&mut self, base: usize) {
        let (mask, wide) = match self.b.get(base..base + BLOCK) {
            Some(block) => block_specials(block.try_into().unwrap_or(&[0; BLOCK])),
            // The last block of a message of a block or more: the message's
            // last 64 bytes (overlapping some already described; their bits
            // are shifted out), and every position past the end.
            None if self.b.len() >= BLOCK && base < self.b.len() => {
                let last = self.b.len() - BLOCK;
                let tail = &self.b[last..];
                let (mask, wide) = block_specials(tail.try_into().unwrap_or(&[0; BLOCK]));
                let live = self.b.len() - base;
                ((mask >> (base - last)) | (!0 << live), wide)
            }
            None => self.partial_block(base),
        };
        self.block = base;
        self.mask = mask;
        self.wide |= wide;
    }

    /// [`block_specials`] of a block that runs past the end of a message
    /// shorter than a block, or lies past its end.
    fn partial_block(&self, base: usize) -> (u64, bool) {
        let b = self.b;
        let len = b.len();
        let mut mask = 0u64;
        let mut wide = false;
        for k in 0..BLOCK / 16 {
            let at = base + 16 * k;
            let bits = if let Some(chunk) = b.get(at..at + 16).and_then(|c| c.try_into().ok()) {
                let (hit, w) = specials(chunk);
                wide |= w;
                hit
            } else if at < len {
                // The chunk runs past the end: the message's last 16 bytes
                // (overlapping ones already seen; their bits are shifted
                // out), or, in a message shorter than that, its bytes
                // padded with zeros.
                let (hit, w) = match len.checked_sub(16) {
                    Some(last) => {
                        let (hit, w) = specials(b[last..].try_into().unwrap_or(&[0; 16]));
                        (hit >> (at - last), w)
                    }
                    None => {
                        let mut pad = [0u8; 16];
                        pad[..len - at].copy_from_slice(&b[at..]);
                        specials(&pad)
                    }
                };
                wide |= w;
                hit | (0xffff << (len - at))
            } else {
                0xffff
            };
            mask |= u64::from(bits & 0xffff) << (16 * k);
        }
        (mask, wide)
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
            let mut p = Flat::new(text.as_bytes());
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
            let mut p = Flat::new(text.as_bytes());
            let want: f64 = text.parse().unwrap();
            assert!(
                matches!(p.number(), Some(Scalar::F64(x)) if x.to_bits() == want.to_bits()),
                "{text}"
            );
        }
    }

    /// Both ways of finding the special bytes agree, bit for bit (the
    /// SWAR one is what targets without SSE2 use), and with a byte-by-byte
    /// reading of the rule.
    #[test]
    fn swar_and_sse2_find_the_same_special_bytes() {
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
            let want = chunk
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c == b'"' || c == b'\\' || c < 0x20)
                .fold(0u32, |m, (k, _)| m | 1 << k);
            let (hit, wide) = specials(&chunk);
            assert_eq!(hit, want, "{chunk:?}");
            assert_eq!(wide, chunk.iter().any(|&c| c >= 0x80), "{chunk:?}");
            assert_eq!(specials_swar(&chunk), want, "{chunk:?}");
        }
    }

    /// The block search finds each string's end wherever it lies: inside
    /// a block, on a block's or chunk's edge, past several blocks, in the
    /// message's last chunk, and at or past the end of messages of every
    /// length from 0 to 200 bytes.
    #[test]
    fn strings_end_at_their_first_special_byte_wherever_it_lies() {
        let mut rng = Rng::new(5);
        for len in 0..=200usize {
            for _ in 0..40 {
                let mut b: Vec<u8> = (0..len)
                    .map(|_| match rng.below(12) {
                        0 => b'"',
                        1 => 0x01,
                        2 => 0xc3,
                        _ => b'a' + rng.below(26) as u8,
                    })
                    .collect();
                if rng.below(3) == 0 {
                    for c in &mut b {
                        if *c >= 0x80 {
                            *c = b'z';
                        }
                    }
                }
                let mut p = Flat::new(&b);
                let mut from = 0;
                while from <= len {
                    let want = b[from..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .map(|k| from + k);
                    p.i = from;
                    let got = p.string();
                    match want {
                        Some(end) if b[end] == b'"' => {
                            let s = &b[from..end];
                            assert_eq!(
                                got.map(str::as_bytes),
                                std::str::from_utf8(s).ok().map(str::as_bytes),
                                "{b:?} from {from}"
                            );
                            if got.is_some() {
                                assert_eq!(p.i, end + 1);
                            }
                        }
                        _ => assert_eq!(got, None, "{b:?} from {from}"),
                    }
                    from += 1 + rng.below(30) as usize;
                }
            }
        }
    }
}
