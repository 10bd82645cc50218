//! LEB128 varints and the zigzag mapping: the one encoder of the
//! checkpoint codec ([`super::codec`]) and of the packed ring buckets
//! (`aggregate::ring`).

/// Most bytes one `u64` varint takes.
pub(crate) const MAX_LEN: usize = 10;

/// Writes `v` as a varint into `buf` at `at`, returning the end. `buf`
/// must have [`MAX_LEN`] bytes from `at` (or as many as `v` needs).
#[inline]
pub(crate) fn put_uvar_at(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = v as u8 | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn put_uvar(out: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; MAX_LEN];
    let n = put_uvar_at(&mut b, 0, v);
    out.extend_from_slice(&b[..n]);
}

/// Reads a varint written by [`put_uvar_at`] from trusted bytes (the
/// process's own: panics past the end of `b`).
#[inline]
pub(crate) fn get_uvar(b: &[u8], p: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let x = b[*p];
        *p += 1;
        v |= u64::from(x & 0x7f).wrapping_shl(shift);
        if x < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Maps signed to unsigned so that small magnitudes make short varints.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_length() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_uvar(&mut out, v);
            assert!(out.len() <= MAX_LEN);
            let mut p = 0;
            assert_eq!(get_uvar(&out, &mut p), v);
            assert_eq!(p, out.len());
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
    }
}
