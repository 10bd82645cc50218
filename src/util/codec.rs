//! The varint codec of persisted state: [`Writer`] appends LEB128 and
//! zigzag varints, [`Reader`] reads them back with every read
//! bounds-checked, so corrupt bytes are an error, never a panic nor a
//! huge allocation. The state types (`decode::dedup`, `aggregate`,
//! `engine`) write and read themselves with these; `checkpoint` wraps
//! the result in its versioned, checksummed container.

use super::varint::{put_uvar, unzigzag, zigzag};

/// Why persisted state cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    #[error("incompatible checkpoint: {0}")]
    Incompatible(String),
}

/// Appends varint-encoded values.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    #[inline]
    pub(crate) fn u64_fixed(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub(crate) fn uvar(&mut self, v: u64) {
        put_uvar(&mut self.buf, v);
    }
    #[inline]
    pub(crate) fn ivar(&mut self, v: i64) {
        self.uvar(zigzag(v));
    }
    pub(crate) fn i128var(&mut self, v: i128) {
        let mut z = ((v << 1) ^ (v >> 127)) as u128;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }
    pub fn str(&mut self, s: &str) {
        self.uvar(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(crate) type ReadResult<T> = Result<T, CheckpointError>;

fn truncated<T>(what: &str) -> ReadResult<T> {
    Err(CheckpointError::Corrupt(format!(
        "truncated or malformed {what}"
    )))
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn u8(&mut self) -> ReadResult<u8> {
        let Some(&b) = self.buf.get(self.pos) else {
            return truncated("byte");
        };
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u64_fixed(&mut self) -> ReadResult<u64> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return truncated("u64");
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    #[inline]
    pub(crate) fn uvar(&mut self) -> ReadResult<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return truncated("varint");
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        truncated("varint")
    }

    #[inline]
    pub(crate) fn ivar(&mut self) -> ReadResult<i64> {
        Ok(unzigzag(self.uvar()?))
    }

    pub(crate) fn i128var(&mut self) -> ReadResult<i128> {
        let mut z: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.u8()?;
            if shift == 126 && b > 3 {
                return truncated("varint");
            }
            z |= u128::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i128) ^ -((z & 1) as i128));
            }
        }
        truncated("varint")
    }

    pub fn i32(&mut self) -> ReadResult<i32> {
        i32::try_from(self.ivar()?).or_else(|_| truncated("i32"))
    }

    pub fn u32(&mut self) -> ReadResult<u32> {
        u32::try_from(self.uvar()?).or_else(|_| truncated("u32"))
    }

    /// A count of items that each take at least `min_bytes`: refused when
    /// the input cannot hold that many, so a corrupt count cannot make the
    /// decoder allocate.
    pub fn count(&mut self, min_bytes: usize) -> ReadResult<usize> {
        let n = self.uvar()?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return truncated("count");
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> ReadResult<&'a str> {
        let n = self.count(1)?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        std::str::from_utf8(b).or_else(|_| truncated("string"))
    }
}
