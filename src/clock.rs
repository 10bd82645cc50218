//! The one reader of the system clock. The core never reads a clock: the
//! shell reads it here and passes the time in (`Partition::process_at`,
//! `EngineClock::now`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
