//! Checks of the Kafka client settings without connecting: each extra
//! property alone ([`refusal`]), then the consumer's configuration as a
//! whole ([`validate`]). `run`, `check-config` and `produce` ask before
//! anything connects, so that a property librdkafka refuses is an invalid
//! setting naming its key and route (exit 2), not librdkafka's words alone.

use super::{client_config, KafkaSettings, SourceError};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

/// Why librdkafka refuses the property `key` = `value`: an unknown name,
/// or a value its type or range does not take (`fetch.max.bytes=abc`,
/// `enable.idempotence=maybe`). Checked alone on a fresh configuration:
/// no client is created, so nothing connects, and a property of only the
/// producer or only the consumer is checked all the same (librdkafka's
/// one table of properties knows both).
pub(crate) fn refusal(key: &str, value: &str) -> Option<String> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => None,
        Err(KafkaError::ClientConfig(_, why, _, _)) => Some(why),
        Err(e) => Some(e.to_string()),
    }
}

/// Lets librdkafka validate the consumer's configuration as a whole (what
/// the properties mean together) by creating a client that knows no
/// broker, so it never connects.
pub fn validate(s: &KafkaSettings) -> Result<(), SourceError> {
    client_config(s)?
        .remove("bootstrap.servers")
        .create::<rdkafka::consumer::BaseConsumer>()?;
    Ok(())
}
