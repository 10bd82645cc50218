//! Repeated client errors shown at most once per interval: with the
//! brokers unreachable, librdkafka reports the same failure several times
//! a second for as long as it retries, which buries everything else in the
//! log (`produce --brokers` with a typo printed about 300 lines a minute).

use rdkafka::config::RDKafkaLogLevel;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client errors and librdkafka warnings are shown at most this often.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Throttle {
    /// When a message was last shown.
    last_shown: Mutex<Option<Instant>>,
    /// Messages held back since then.
    held_back: AtomicU64,
}

impl Throttle {
    /// Whether to show a message now (the first one, then one every
    /// [`REPEAT_EVERY`]), with how many were held back before it.
    pub(crate) fn show(&self) -> Option<u64> {
        self.show_at(Instant::now())
    }

    fn show_at(&self, now: Instant) -> Option<u64> {
        let mut last = self.last_shown.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now.saturating_duration_since(t) < REPEAT_EVERY) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// A librdkafka log line as a `tracing` event (target `librdkafka`):
/// errors and warnings through `throttle`, with the count held back.
pub(crate) fn log(throttle: &Throttle, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            if let Some(held_back) = throttle.show() {
                tracing::error!(target: "librdkafka", facility = fac, held_back, "{message}")
            }
        }
        RDKafkaLogLevel::Warning => {
            if let Some(held_back) = throttle.show() {
                tracing::warn!(target: "librdkafka", facility = fac, held_back, "{message}")
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility = fac, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_first_then_one_per_interval_with_the_count_held_back() {
        let t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.show_at(t0), Some(0));
        assert_eq!(t.show_at(t0 + Duration::from_millis(100)), None);
        assert_eq!(
            t.show_at(t0 + REPEAT_EVERY - Duration::from_millis(1)),
            None
        );
        assert_eq!(t.show_at(t0 + REPEAT_EVERY), Some(2));
        assert_eq!(t.show_at(t0 + REPEAT_EVERY + Duration::from_secs(1)), None);
        assert_eq!(t.show_at(t0 + REPEAT_EVERY * 3), Some(1));
    }
}
