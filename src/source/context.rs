//! Consumer callbacks other than rebalances: logs, statistics (lag and end
//! offsets), errors.

use super::checkpoint::Store;
use super::dead_letter::DeadLetter;
use super::dispatch::Dispatcher;
use crate::live::LiveState;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::warn;

/// Consumer callbacks: rebalances, statistics (lag), errors, logs.
pub(crate) struct SourceContext {
    pub(super) live: Arc<LiveState>,
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) needs_targets: AtomicBool,
    pub(super) store: Option<Arc<Store>>,
    pub(super) dead_letter: Option<Arc<DeadLetter>>,
    /// Client errors and librdkafka's errors and warnings: the first, then
    /// one every `REPEAT_EVERY`.
    pub(super) throttle: super::throttle::Throttle,
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = false;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Errors and warnings share the client errors' throttle: with the
        // brokers down librdkafka repeats them several times a second.
        super::throttle::log(&self.throttle, level, fac, log_message);
    }

    fn stats_raw(&self, raw: &[u8]) {
        super::stats::record(&self.live, raw);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            *self
                .live
                .brokers_down
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
        if let Some(held_back) = self.throttle.show() {
            warn!(
                %error,
                reason,
                held_back,
                "kafka client error (librdkafka retries; repeats shown every {} s)",
                super::throttle::REPEAT_EVERY.as_secs()
            );
        }
    }
}
