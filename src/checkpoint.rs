//! The checkpoint format: one partition's whole processing state (windows,
//! all-time totals, current-state gauges, open deals, dedup memory, health
//! counters) and the offset it covers, as bytes. Pure: no I/O; the source
//! stage stores the bytes in Kafka (`source::checkpoint`).
//!
//! Layout (all integers little-endian):
//!
//! ```text
//!   magic     8 bytes  "FNLSTCKP"
//!   version   u16      FORMAT_VERSION
//!   flags     u16      0 (anything else is from a newer writer)
//!   body_len  u64
//!   checksum  u64      XXH3-64 of the body
//!   body      varint-encoded, see `encode`
//! ```
//!
//! Decoding never panics and never allocates more than the input could
//! hold: every count is checked against the bytes left. A bad magic,
//! length or checksum is [`CheckpointError::Corrupt`]; a format version
//! this engine cannot read, or a window set other than the configured one,
//! is [`CheckpointError::Incompatible`].
//!
//! Versions: 1 remembered dedup ids by event time; 2 by acceptance time
//! (EVENTS.md v2); 3 (current) adds the v2 event types' counters, the
//! `action` label overflow and ignored-field counters, and per key the
//! groups seen and the v2 block (`aggregate::v2`). Versions 1 and 2 are
//! still read: version 1's remembered ids are taken as accepted at its
//! engine time (`decode::dedup`); their keys have no v2 state (a key that
//! counted deal or subscription events is marked as having received
//! those groups), so an upgrade restores every partition instead of
//! rebuilding it.

use crate::config::WindowSpec;
use crate::engine::{Engine, Partition};

pub const MAGIC: [u8; 8] = *b"FNLSTCKP";
/// Bump on any change of the body layout, and keep reading the previous
/// versions ([`OLDEST_READ_VERSION`]..=`FORMAT_VERSION`).
pub const FORMAT_VERSION: u16 = 3;
/// The oldest format version [`decode`] still reads.
pub const OLDEST_READ_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 8 + 2 + 2 + 8 + 8;

/// Why a partition starts from empty state though checkpoints are on
/// (label values of `funnel_checkpoint_rebuilds_total`).
pub const REBUILD_REASONS: [&str; 3] = ["missing", "corrupt", "incompatible"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    #[error("incompatible checkpoint: {0}")]
    Incompatible(String),
}

/// What a checkpoint is about, besides the state itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub topic: String,
    pub partition: i32,
    /// The next offset to apply: the state covers every offset below it.
    pub next_offset: i64,
    /// Wall-clock time the snapshot was taken (ms since the epoch).
    pub written_at_ms: i64,
    /// Engine time at the snapshot.
    pub engine_now_ms: i64,
}

/// Appends `v` as a LEB128 varint.
#[inline]
fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Maps signed to unsigned so that small magnitudes make short varints
/// (also in the packed ring buckets).
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Appends varint-encoded values.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    #[inline]
    pub fn u64_fixed(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn uvar(&mut self, v: u64) {
        put_uvar(&mut self.buf, v);
    }
    #[inline]
    pub fn ivar(&mut self, v: i64) {
        self.uvar(zigzag(v));
    }
    pub fn i128var(&mut self, v: i128) {
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
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub type ReadResult<T> = Result<T, CheckpointError>;

fn truncated<T>(what: &str) -> ReadResult<T> {
    Err(CheckpointError::Corrupt(format!(
        "truncated or malformed {what}"
    )))
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
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

    pub fn u64_fixed(&mut self) -> ReadResult<u64> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return truncated("u64");
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    #[inline]
    pub fn uvar(&mut self) -> ReadResult<u64> {
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
    pub fn ivar(&mut self) -> ReadResult<i64> {
        Ok(unzigzag(self.uvar()?))
    }

    pub fn i128var(&mut self) -> ReadResult<i128> {
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

/// Writes the windows' fingerprint: a checkpoint only fits an engine with
/// the same windows and bucket widths, in the same order.
fn encode_windows(w: &mut Writer, specs: &[WindowSpec]) {
    w.uvar(specs.len() as u64);
    for s in specs {
        w.ivar(s.len_ms);
        w.ivar(s.width_ms);
    }
}

fn check_windows(r: &mut Reader<'_>, specs: &[WindowSpec]) -> ReadResult<()> {
    let n = r.count(2)?;
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push((r.ivar()?, r.ivar()?));
    }
    let want: Vec<(i64, i64)> = specs.iter().map(|s| (s.len_ms, s.width_ms)).collect();
    if got != want {
        let fmt = |v: &[(i64, i64)]| {
            v.iter()
                .map(|(l, _)| crate::config::format_duration_ms(*l))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(CheckpointError::Incompatible(format!(
            "it was written with windows {} but the engine is configured with {}",
            fmt(&got),
            fmt(&want)
        )));
    }
    Ok(())
}

/// Serializes a partition's state with its metadata (first settling its
/// pending sums and logs into the rings at the snapshot's engine time,
/// which changes no value).
pub fn encode(part: &mut Partition, meta: &CheckpointMeta) -> Vec<u8> {
    part.agg.settle(meta.engine_now_ms);
    let mut w = Writer {
        buf: Vec::with_capacity(HEADER_LEN + 4096),
    };
    w.buf.extend_from_slice(&MAGIC);
    w.buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    w.buf.extend_from_slice(&0u16.to_le_bytes());
    w.buf.extend_from_slice(&[0; 16]);
    encode_windows(&mut w, part.agg.windows());
    w.str(&meta.topic);
    w.ivar(i64::from(meta.partition));
    w.ivar(meta.next_offset);
    w.ivar(meta.written_at_ms);
    w.ivar(meta.engine_now_ms);
    part.encode_into(&mut w);
    let body_len = (w.buf.len() - HEADER_LEN) as u64;
    let sum = xxhash_rust::xxh3::xxh3_64(&w.buf[HEADER_LEN..]);
    w.buf[12..20].copy_from_slice(&body_len.to_le_bytes());
    w.buf[20..28].copy_from_slice(&sum.to_le_bytes());
    w.buf
}

/// Reads only the metadata (after checking magic, version and checksum).
pub fn read_meta(bytes: &[u8]) -> Result<CheckpointMeta, CheckpointError> {
    let (mut r, _) = open(bytes)?;
    let n = r.count(2)?;
    for _ in 0..n {
        r.ivar()?;
        r.ivar()?;
    }
    read_meta_fields(&mut r)
}

fn read_meta_fields(r: &mut Reader<'_>) -> ReadResult<CheckpointMeta> {
    Ok(CheckpointMeta {
        topic: r.str()?.to_string(),
        partition: r.i32()?,
        next_offset: r.ivar()?,
        written_at_ms: r.ivar()?,
        engine_now_ms: r.ivar()?,
    })
}

/// Checks the header and returns a reader over the body and the body's
/// format version.
fn open(bytes: &[u8]) -> Result<(Reader<'_>, u16), CheckpointError> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err(CheckpointError::Corrupt(
            "not a funnelstream checkpoint (bad magic)".into(),
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CheckpointError::Incompatible(format!(
            "format version {version}, this engine reads versions \
             {OLDEST_READ_VERSION} to {FORMAT_VERSION}"
        )));
    }
    let reserved = u16::from_le_bytes([bytes[10], bytes[11]]);
    if reserved != 0 {
        return Err(CheckpointError::Incompatible(format!(
            "unknown format flags {reserved:#06x}"
        )));
    }
    let body_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let sum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != body_len {
        return Err(CheckpointError::Corrupt(format!(
            "body is {} bytes, header says {body_len}",
            body.len()
        )));
    }
    let actual = xxhash_rust::xxh3::xxh3_64(body);
    if actual != sum {
        return Err(CheckpointError::Corrupt(format!(
            "checksum mismatch (stored {sum:016x}, computed {actual:016x})"
        )));
    }
    Ok((Reader::new(body), version))
}

/// Rebuilds a partition of `engine` from a checkpoint, advancing the
/// engine clock to the checkpoint's engine time. Labels are interned into
/// the engine's label table (keys folded into `__overflow__` by a smaller
/// limit are merged).
pub fn decode(
    bytes: &[u8],
    engine: &Engine,
    live: bool,
) -> Result<(Partition, CheckpointMeta), CheckpointError> {
    let (mut r, version) = open(bytes)?;
    check_windows(&mut r, &engine.config.windows)?;
    let meta = read_meta_fields(&mut r)?;
    let mut part = if live {
        engine.live_partition()
    } else {
        engine.partition()
    };
    part.decode_from(&mut r, version, meta.engine_now_ms)?;
    if r.remaining() != 0 {
        return Err(CheckpointError::Corrupt(format!(
            "{} unexpected bytes after the state",
            r.remaining()
        )));
    }
    engine.clock.restore(meta.engine_now_ms);
    Ok((part, meta))
}

#[cfg(test)]
mod tests;
