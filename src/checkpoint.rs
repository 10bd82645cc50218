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
//!   checksum  u64      XXH3-64 of version, flags, body_len and body
//!                      (formats 1 to 5: of the body only)
//!   body      varint-encoded, see `encode`
//! ```
//!
//! Decoding never panics and never allocates more than the input could
//! hold: every count is checked against the bytes left. A bad magic,
//! length or checksum is [`CheckpointError::Corrupt`]; a format version
//! this engine cannot read (with a valid checksum), or a window set other
//! than the configured one, is [`CheckpointError::Incompatible`]. Since
//! format 6 the checksum covers the version too, so a damaged version
//! field is refused as corrupt instead of the body being read in another
//! format's layout (a format-6 checkpoint whose version reads 4 fails the
//! body-only checksum of format 4); later formats are to keep this
//! header, so that a newer writer's checkpoint is told from a damaged one.
//!
//! Versions: 1 remembered dedup ids by event time; 2 by acceptance time
//! (EVENTS.md v2); 3 adds the v2 event types' counters, the
//! `action` label overflow and ignored-field counters, and per key the
//! groups seen and the v2 block (`aggregate::v2`); 4 adds the calendar
//! settings after the windows (`calendar_windows`, `calendar_timezone`,
//! `fiscal_year_start_month`: a checkpoint only fits an engine with the
//! same ones, since its calendar slots' rings depend on them) and keeps the
//! growth groups' buckets for two window lengths; 5 adds the
//! partition's secret id-hashing key before the dedup memory
//! (`util::hash::IdHasher`); 6 (current) has the body of 5 and extends the
//! checksum over the header's version, flags and length. Versions 1 to 5
//! are still read; in versions 1 to 4 ids
//! were hashed unkeyed, and a partition restored from one keeps hashing
//! that way (its remembered ids cannot be hashed again); version 1's
//! remembered ids are taken as accepted at its
//! engine time (`decode::dedup`); their keys have no v2 state (a key that
//! counted deal or subscription events is marked as having received
//! those groups), so an upgrade restores every partition instead of
//! rebuilding it.

use crate::config::{CalendarConfig, WindowSpec};
use crate::engine::{Engine, Partition};
use crate::util::codec::{ReadResult, Reader, Writer};

pub use crate::util::codec::CheckpointError;

pub(crate) const MAGIC: [u8; 8] = *b"FNLSTCKP";
/// Bump on any change of the body layout, and keep reading the previous
/// versions ([`OLDEST_READ_VERSION`]..=`FORMAT_VERSION`).
pub(crate) const FORMAT_VERSION: u16 = 6;
/// The first format whose checksum covers the header's version, flags and
/// length, not only the body.
const HEADER_SUMMED_SINCE: u16 = 6;
/// The oldest format version [`decode`] still reads.
pub(crate) const OLDEST_READ_VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 8 + 2 + 2 + 8 + 8;

/// Why a partition starts from empty state though checkpoints are on
/// (label values of `funnel_checkpoint_rebuilds_total`).
pub(crate) const REBUILD_REASONS: [&str; 3] = ["missing", "corrupt", "incompatible"];

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

/// Writes the calendar settings (format 4).
fn encode_calendar(w: &mut Writer, c: &CalendarConfig) {
    w.uvar(c.windows.len() as u64);
    for cw in &c.windows {
        w.str(cw.label());
    }
    w.str(&c.timezone);
    w.u8(c.fiscal_year_start_month);
}

/// Checks the calendar settings a checkpoint was written with (none
/// before format 4) against the engine's, naming the first that differs.
fn check_calendar(r: &mut Reader<'_>, version: u16, c: &CalendarConfig) -> ReadResult<()> {
    let (windows, tz, fiscal) = if version >= 4 {
        let n = r.count(1)?;
        let mut windows = Vec::with_capacity(n);
        for _ in 0..n {
            windows.push(r.str()?.to_string());
        }
        (windows, r.str()?.to_string(), r.u8()?)
    } else {
        (Vec::new(), "UTC".to_string(), 1)
    };
    let want: Vec<String> = c.windows.iter().map(|w| w.label().to_string()).collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    };
    let differs = if windows != want {
        Some(("calendar_windows", list(&windows), list(&want)))
    } else if want.is_empty() {
        None
    } else if tz != c.timezone {
        Some(("calendar_timezone", tz, c.timezone.clone()))
    } else if fiscal != c.fiscal_year_start_month {
        Some((
            "fiscal_year_start_month",
            fiscal.to_string(),
            c.fiscal_year_start_month.to_string(),
        ))
    } else {
        None
    };
    match differs {
        Some((key, got, want)) => Err(CheckpointError::Incompatible(format!(
            "it was written with {key} = {got} but the engine is configured with {key} = {want}"
        ))),
        None => Ok(()),
    }
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
    encode_calendar(&mut w, part.agg.calendar_config());
    w.str(&meta.topic);
    w.ivar(i64::from(meta.partition));
    w.ivar(meta.next_offset);
    w.ivar(meta.written_at_ms);
    w.ivar(meta.engine_now_ms);
    part.encode_into(&mut w);
    let body_len = (w.buf.len() - HEADER_LEN) as u64;
    w.buf[12..20].copy_from_slice(&body_len.to_le_bytes());
    let sum = checksum(&w.buf, FORMAT_VERSION);
    w.buf[20..28].copy_from_slice(&sum.to_le_bytes());
    w.buf
}

/// The checksum a checkpoint of format `version` stores: XXH3-64 of the
/// version, flags, length and body (formats before
/// [`HEADER_SUMMED_SINCE`]: of the body only). `bytes` is the whole
/// checkpoint, at least [`HEADER_LEN`] long.
pub(crate) fn checksum(bytes: &[u8], version: u16) -> u64 {
    if version < HEADER_SUMMED_SINCE {
        return xxhash_rust::xxh3::xxh3_64(&bytes[HEADER_LEN..]);
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[8..20]);
    h.update(&bytes[HEADER_LEN..]);
    h.digest()
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
    if version < OLDEST_READ_VERSION {
        return Err(CheckpointError::Incompatible(format!(
            "format version {version}, this engine reads versions \
             {OLDEST_READ_VERSION} to {FORMAT_VERSION}"
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
    let actual = checksum(bytes, version);
    if actual != sum {
        return Err(CheckpointError::Corrupt(format!(
            "checksum mismatch (stored {sum:016x}, computed {actual:016x})"
        )));
    }
    // Checked after the checksum: from format 6 on it covers these, so a
    // newer format or unknown flags come from a newer writer, not damage.
    if version > FORMAT_VERSION {
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
    check_calendar(&mut r, version, &engine.config.calendar)?;
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
