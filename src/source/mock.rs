//! The embedded broker of `demo`: librdkafka's in-process mock cluster,
//! speaking the Kafka protocol on a loopback port.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub(crate) struct MockBroker(MockCluster<'static, DefaultProducerContext>);

impl MockBroker {
    /// A one-broker cluster.
    pub fn start() -> Result<MockBroker, KafkaError> {
        MockCluster::new(1).map(MockBroker)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.0.create_topic(topic, partitions, 1)
    }

    pub fn bootstrap_servers(&self) -> String {
        self.0.bootstrap_servers()
    }
}
