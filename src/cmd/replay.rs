//! `funnelstream replay`: NDJSON in, the /metrics exposition out, through
//! exactly the stages `run` uses (one partition).

use crate::cli::ReplayArgs;
use crate::clock::wall_clock_ms;
use crate::engine::{Engine, Health, Outcome, Partition};
use crate::error::Error;
use crate::export::prometheus::render;
use crate::VERSION;
use std::io::{self, BufRead, BufReader, Read, Write};

/// One line of input, or a line longer than the limit (skipped unread).
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Event(&'a [u8]),
    TooLong,
}

/// Calls `f` for every line of `r`, without ever buffering more than
/// `max + 1` bytes of one line. `\r\n` endings are accepted; blank lines are
/// skipped.
fn for_each_line<R: Read>(r: R, max: usize, mut f: impl FnMut(Line<'_>)) -> io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut line: Vec<u8> = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, consumed, ended) = match memchr_nl(buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len() + chunk.len() > max + 1 {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        r.consume(consumed);
        if ended {
            emit(&mut line, &mut too_long, max, &mut f);
        }
    }
    emit(&mut line, &mut too_long, max, &mut f);
    Ok(())
}

fn emit(line: &mut Vec<u8>, too_long: &mut bool, max: usize, f: &mut impl FnMut(Line<'_>)) {
    if *too_long {
        f(Line::TooLong);
    } else {
        let mut l: &[u8] = line;
        if l.last() == Some(&b'\r') {
            l = &l[..l.len() - 1];
        }
        if l.len() > max {
            f(Line::TooLong);
        } else if !l.iter().all(u8::is_ascii_whitespace) {
            f(Line::Event(l));
        }
    }
    line.clear();
    *too_long = false;
}

/// The first newline of `b` (a word at a time: replay's lines are a few
/// hundred bytes).
fn memchr_nl(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Lines applied together, as a live worker applies a polled batch: the
/// partition's batch pipeline (`Partition::process_batch_at`) then hides
/// the cache misses of a large state.
const BATCH: usize = 256;

/// Lines waiting to be applied together, copied into one buffer.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    outcomes: Vec<Outcome>,
}

impl Pending {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    /// Applies the pending lines to `p`, counting their outcomes into `n`.
    fn apply(&mut self, p: &mut Partition, n: &mut [u64; 4]) {
        let mut start = 0;
        let lines: Vec<&[u8]> = self
            .ends
            .iter()
            .map(|&end| {
                let l = &self.bytes[start..end];
                start = end;
                l
            })
            .collect();
        self.outcomes.clear();
        let wall = wall_clock_ms();
        p.process_batch_at(&lines, wall, &mut self.outcomes);
        p.upkeep(wall);
        for o in &self.outcomes {
            count(*o, n);
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

fn count(o: Outcome, n: &mut [u64; 4]) {
    match o {
        Outcome::Applied { .. } => n[1] += 1,
        Outcome::Duplicate => n[2] += 1,
        Outcome::Rejected(_) => n[3] += 1,
    }
}

/// Feeds every line of `input` into `p`, in order; returns (lines, applied,
/// duplicates, rejected).
fn feed<R: Read>(p: &mut Partition, input: R, max: usize) -> io::Result<[u64; 4]> {
    let mut n = [0u64; 4];
    let mut pending = Pending::default();
    for_each_line(input, max, |line| {
        n[0] += 1;
        match line {
            Line::Event(b) => {
                pending.push(b);
                if pending.ends.len() == BATCH {
                    pending.apply(p, &mut n);
                }
            }
            // A line over the limit is handed over as is (after the lines
            // before it), so the decoder's size check rejects it as
            // too_large like any other oversized message.
            Line::TooLong => {
                pending.apply(p, &mut n);
                count(p.process_at(&vec![b' '; max + 1], wall_clock_ms()), &mut n);
            }
        }
    })?;
    pending.apply(p, &mut n);
    Ok(n)
}

/// An input file that cannot be read: an invalid `from` setting (exit 2).
fn bad_input(path: &std::path::Path, e: &dyn std::fmt::Display) -> Error {
    Error::Config(crate::config::ConfigError::invalid(
        "from",
        format!("{}: {e}", path.display()),
    ))
}

pub fn run(args: &ReplayArgs) -> Result<(), Error> {
    let cfg = args.engine.resolve()?;
    let from = args.input()?;
    let max = cfg.max_event_bytes;
    let engine = Engine::new(cfg);
    let mut part = engine.partition();
    // Progress on stderr, only on a terminal: stdout is the exposition.
    let result = if from.as_os_str() == "-" {
        let pb = crate::progress::bar(None, "replay");
        let r = feed(&mut part, pb.wrap_read(io::stdin().lock()), max);
        pb.finish_and_clear();
        r
    } else {
        match std::fs::File::open(&from) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                return Err(bad_input(&from, &"is a directory"));
            }
            Ok(f) => {
                let pb = crate::progress::bar(crate::progress::file_len(&f), "replay");
                let r = feed(&mut part, pb.wrap_read(f), max);
                pb.finish_and_clear();
                r
            }
            Err(e) => {
                return Err(bad_input(&from, &e));
            }
        }
    };
    let n = result.map_err(|e| Error::Runtime(format!("reading {}: {e}", from.display())))?;
    let now = engine.clock.now(wall_clock_ms());
    let text = render(&[&part.agg], &Health::of(&[&part]), now, VERSION);
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(Error::Runtime(format!("writing the exposition: {e}")));
        }
    }
    eprintln!(
        "funnelstream: replayed {} event{}: {} applied, {} duplicates, {} rejected",
        n[0],
        if n[0] == 1 { "" } else { "s" },
        n[1],
        n[2],
        n[3]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, max: usize) -> Vec<String> {
        let mut v = Vec::new();
        for_each_line(input.as_bytes(), max, |l| {
            v.push(match l {
                Line::Event(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLong => "<too long>".into(),
            })
        })
        .unwrap();
        v
    }

    #[test]
    fn splits_and_bounds_lines() {
        assert_eq!(lines("a\r\nbb\n\n  \nccc", 5), ["a", "bb", "ccc"]);
        assert_eq!(lines("abcdefgh\nab\n", 5), ["<too long>", "ab"]);
        assert_eq!(lines("abcde\r\n", 5), ["abcde"]);
        assert!(lines("", 5).is_empty());
    }
}
