//! Checks of the Kafka client settings without connecting: each extra
//! property alone ([`refusal`]), then every client's configuration as a
//! whole ([`validate`]). `run`, `check-config` and `produce` ask before
//! anything connects, so that a property librdkafka refuses is an invalid
//! setting naming its key and route (exit 2), not librdkafka's words alone.

use super::{client_config, KafkaSettings};
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

/// A client whose configuration librdkafka refuses as a whole, and why:
/// properties it takes one by one but not together (`enable.idempotence`
/// with `acks=1` on a producer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `the consumer`, `the dead-letter producer`, ...
    pub client: &'static str,
    pub why: String,
}

/// Lets librdkafka validate every client `run` would create with these
/// settings (the consumer, and the dead-letter and checkpoint clients when
/// they are configured: each gets the properties differently) by creating
/// it without a broker to know, so nothing connects.
pub fn validate(s: &KafkaSettings) -> Result<(), Refused> {
    let refused = |client| {
        move |e: KafkaError| Refused {
            client,
            why: match e {
                KafkaError::ClientConfig(_, why, _, _) => why,
                KafkaError::ClientCreation(why) => why,
                e => e.to_string(),
            },
        }
    };
    let consumer = client_config(s).map_err(|e| Refused {
        client: "the consumer",
        why: e.to_string(),
    })?;
    check::<rdkafka::consumer::BaseConsumer>(consumer).map_err(refused("the consumer"))?;
    if s.dead_letter_topic.is_some() {
        let c = super::dead_letter::config(&s.brokers, &s.properties);
        check::<rdkafka::producer::BaseProducer>(c).map_err(refused("the dead-letter producer"))?;
    }
    if s.checkpoint.is_some() {
        let c = super::checkpoint::clients(&s.brokers, &s.group, &s.properties);
        check::<rdkafka::producer::BaseProducer>(c.producer)
            .map_err(refused("the checkpoint producer"))?;
        check::<rdkafka::consumer::BaseConsumer>(c.reader)
            .map_err(refused("the checkpoint reader"))?;
    }
    Ok(())
}

/// Creates the client `C` of `c` without its brokers, and drops it.
fn check<C: rdkafka::config::FromClientConfig>(mut c: ClientConfig) -> Result<(), KafkaError> {
    c.remove("bootstrap.servers");
    // Without brokers librdkafka would warn that it cannot connect.
    c.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
    C::from_config(&c).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(properties: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            brokers: "localhost:9092".into(),
            topics: vec!["events".into()],
            group: "g".into(),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workers: 1,
            dead_letter_topic: None,
            checkpoint: None,
        }
    }

    /// A producer-only conflict is found on the producer that would have
    /// it, and only when that producer is configured; the checkpoint
    /// producer's own `acks=all` and no idempotence are not the user's to
    /// break.
    #[test]
    fn conflicts_are_found_on_the_client_that_has_them() {
        let conflict = [("enable.idempotence", "true"), ("acks", "1")];
        assert_eq!(
            validate(&settings(&conflict)),
            Ok(()),
            "the consumer has no acks"
        );
        let mut s = settings(&conflict);
        s.dead_letter_topic = Some("dead".into());
        let e = validate(&s).unwrap_err();
        assert_eq!(e.client, "the dead-letter producer");
        assert!(e.why.contains("acks"), "{e:?}");
        let mut s = settings(&conflict);
        s.checkpoint = Some(crate::source::checkpoint::CheckpointSettings {
            topic: "cp".into(),
            interval: std::time::Duration::from_secs(10),
            policy: crate::source::checkpoint::Policy::Rebuild,
            create: true,
        });
        assert_eq!(validate(&s), Ok(()), "the checkpoint producer sets its own");
        let e = validate(&settings(&[
            ("fetch.max.bytes", "1000"),
            ("message.max.bytes", "100000"),
        ]))
        .unwrap_err();
        assert_eq!(e.client, "the consumer");
    }
}
