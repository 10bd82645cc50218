//! Apache Kafka for the end-to-end tests (`tests/it/support`) and the benches
//! that need a broker (`benches/support`, which includes this file by path):
//! one combined broker+controller, or a three-node KRaft cluster, on free
//! loopback ports, run from the jars `scripts/kafka fetch` keeps in a cache
//! outside the source tree. Nodes can be killed (SIGKILL) and restarted;
//! everything is killed and deleted on drop, and the JVMs die with the test
//! process even when it cannot drop (`scripts/kafka node DIR N PARENT`).
#![allow(dead_code)]

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// The directory of the broker's jars, fetched from Maven Central on first
/// use (`scripts/kafka fetch`; about 20 s with an empty cache).
pub fn kafka_libs() -> &'static Path {
    static LIBS: OnceLock<PathBuf> = OnceLock::new();
    LIBS.get_or_init(|| {
        let out = Command::new(script())
            .arg("fetch")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/kafka: {e}"));
        assert!(
            out.status.success(),
            "scripts/kafka fetch failed (it needs mvn and java; scripts/test installs them)"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A Kafka cluster of combined broker+controller nodes (ids 1..=n), each
/// with its own log directory under a temporary directory.
pub struct Broker {
    pub dir: PathBuf,
    ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl Broker {
    /// One node.
    pub fn start() -> Broker {
        Self::cluster(1)
    }

    /// `n` nodes; topics get replication factor min(n, 3), and with three
    /// nodes `min.insync.replicas` is 2.
    pub fn cluster(n: usize) -> Broker {
        Self::cluster_on(n, None)
    }

    /// One node whose client port is `port` (a test that starts a client
    /// before the broker).
    pub fn start_on(port: u16) -> Broker {
        Self::cluster_on(1, Some(port))
    }

    fn cluster_on(n: usize, first_port: Option<u16>) -> Broker {
        kafka_libs();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "funnelstream-kafka-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ports: Vec<u16> = first_port.into_iter().collect();
        while ports.len() < 2 * n {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let out = Command::new(script())
            .arg("init")
            .arg(&dir)
            .arg(n.to_string())
            .args(ports.iter().map(|p| p.to_string()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/kafka init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ports.truncate(n);
        let mut b = Broker {
            dir,
            ports,
            nodes: (0..n).map(|_| None).collect(),
        };
        for node in 1..=n {
            b.spawn(node);
        }
        b.wait_ready(Duration::from_secs(120));
        b
    }

    fn spawn(&mut self, node: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{node}/server.log")))
            .unwrap();
        let child = Command::new(script())
            .arg("node")
            .arg(&self.dir)
            .arg(node.to_string())
            .arg(std::process::id().to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[node - 1] = Some(child);
    }

    /// Bootstrap servers: every node.
    pub fn addr(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn port(&self, node: usize) -> u16 {
        self.ports[node - 1]
    }

    pub fn nodes(&self) -> usize {
        self.ports.len()
    }

    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{node}/server.log")))
            .unwrap_or_default()
    }

    fn jvm_pid(&self, node: usize) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("node-{node}/pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs node `node` (1-based), as a crash would.
    pub fn kill(&mut self, node: usize) {
        if let Some(pid) = self.jvm_pid(node) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(mut c) = self.nodes[node - 1].take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join(format!("node-{node}/pid")));
    }

    /// Freezes node `node` (SIGSTOP): it keeps its connections but answers
    /// nothing until [`resume`](Self::resume).
    pub fn pause(&self, node: usize) {
        self.signal(node, "-STOP");
    }

    pub fn resume(&self, node: usize) {
        self.signal(node, "-CONT");
    }

    fn signal(&self, node: usize, sig: &str) {
        let pid = self.jvm_pid(node).expect("node is running");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Starts a killed node again on its ports and its log directory, and
    /// waits until the cluster lists it again.
    pub fn restart(&mut self, node: usize) {
        assert!(self.nodes[node - 1].is_none(), "node {node} is running");
        self.spawn(node);
        self.wait_ready(Duration::from_secs(120));
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .unwrap()
    }

    fn client(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("log_level", "3")
            .create()
            .unwrap()
    }

    /// Waits until every running node listens and the cluster's metadata
    /// lists each of them.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let running: Vec<i32> = (1..=self.nodes())
            .filter(|n| self.nodes[n - 1].is_some())
            .map(|n| n as i32)
            .collect();
        for &n in &running {
            while TcpStream::connect(("127.0.0.1", self.port(n as usize))).is_err() {
                if let Some(status) = self.nodes[n as usize - 1]
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!(
                        "Kafka node {n} exited ({status}); log:\n{}",
                        tail(&self.log(n as usize))
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "Kafka node {n} did not listen on {}; log:\n{}",
                    self.port(n as usize),
                    tail(&self.log(n as usize))
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let c = self.client();
        loop {
            if let Ok(md) = c.fetch_metadata(None, Duration::from_secs(5)) {
                let listed: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
                if running.iter().all(|n| listed.contains(n)) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Kafka nodes {running:?} not all registered; log:\n{}",
                tail(&self.log(running[0] as usize))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Creates a topic (replication factor min(nodes, 3)) with topic
    /// configs, and waits until each partition has a leader.
    pub fn create_topic_with(&self, name: &str, partitions: u32, config: &[(&str, &str)]) {
        let admin = self.admin();
        let rf = self.nodes().min(3) as i32;
        let mut topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(rf));
        for (k, v) in config {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let res = block_on(admin.create_topics([&topic], &opts)).unwrap();
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(md) = c.fetch_metadata(Some(name), Duration::from_secs(5)) {
                let ok = md.topics().iter().any(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() > 0)
                });
                if ok {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "topic {name} has no leaders");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node leading `topic`/`partition`.
    pub fn leader(&self, topic: &str, partition: i32) -> usize {
        let md = self
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let t = &md.topics()[0];
        let p = t.partitions().iter().find(|p| p.id() == partition).unwrap();
        p.leader() as usize
    }

    pub fn topic_exists(&self, name: &str) -> bool {
        let md = self
            .client()
            .fetch_metadata(Some(name), Duration::from_secs(10))
            .unwrap();
        md.topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty())
    }

    /// The partition count of `topic`, and its topic configuration as the
    /// brokers describe it.
    pub fn describe_topic(&self, name: &str) -> (usize, BTreeMap<String, String>) {
        let md = self
            .client()
            .fetch_metadata(Some(name), Duration::from_secs(10))
            .unwrap();
        let partitions = md.topics()[0].partitions().len();
        let admin = self.admin();
        let spec = ResourceSpecifier::Topic(name);
        let res = block_on(admin.describe_configs([&spec], &AdminOptions::new())).unwrap();
        let config = res
            .into_iter()
            .next()
            .unwrap()
            .unwrap()
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        (partitions, config)
    }

    /// Replaces the topic configuration of `name` (AlterConfigs: keys not
    /// given return to their defaults).
    pub fn alter_topic(&self, name: &str, config: &[(&str, &str)]) {
        let admin = self.admin();
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in config {
            alter = alter.set(k, v);
        }
        for r in block_on(admin.alter_configs([&alter], &AdminOptions::new())).unwrap() {
            r.unwrap_or_else(|(_, e)| panic!("alter configs of {name}: {e}"));
        }
    }

    /// Low and high watermarks of `topic`/`partition`.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        self.client()
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap()
    }
}

/// Runs a future of the Kafka client (admin requests, deliveries) to its
/// end on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Broker {
    fn drop(&mut self) {
        for node in 1..=self.nodes() {
            self.kill(node);
        }
        if std::env::var_os("FUNNELSTREAM_KEEP_KAFKA").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
