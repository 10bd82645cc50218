//! The memory floor under the engine's per-event cost at many keys: what a
//! random cache line costs on this machine when the hardware overlaps as
//! many misses as it can (independent loads from a 400 MiB array, beyond
//! every cache and the TLB's reach). Printed, not asserted. With `L` such
//! lines per event, an event cannot cost less than `L` times this figure
//! more than it does with everything in cache.
//! Run: `cargo bench --bench cache_lines`.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n = (400usize << 20) / 8;
    let v: Vec<u64> = (0..n as u64).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let idx: Vec<usize> = (0..20_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as usize) % n
        })
        .collect();
    for per_event in [1usize, 4, 12] {
        let t = Instant::now();
        let mut sum = 0u64;
        for chunk in idx.chunks_exact(per_event) {
            for &i in chunk {
                sum = sum.wrapping_add(v[i]);
            }
        }
        black_box(sum);
        let ns = t.elapsed().as_nanos() as f64 / idx.len() as f64;
        println!(
            "{per_event:2} random cache lines per event: {ns:.1} ns per line, {:.0} ns per event",
            ns * per_event as f64
        );
    }
}
