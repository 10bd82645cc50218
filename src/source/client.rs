//! Checks of the Kafka client settings without connecting (`check-config`).

use super::{client_config, KafkaSettings, SourceError};

/// Lets librdkafka validate the consumer's properties (names and values)
/// by creating a client that never connects.
pub fn validate(s: &KafkaSettings) -> Result<(), SourceError> {
    client_config(s)?.create::<rdkafka::consumer::BaseConsumer>()?;
    Ok(())
}
