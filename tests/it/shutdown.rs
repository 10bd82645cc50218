//! Shutdown and abuse of the HTTP side, against a running engine (`demo`,
//! which needs nothing installed): SIGTERM ends every
//! `/api/v1/kpis/stream` with `event: shutdown` and the process exits 0
//! within 10 s whatever the clients do (streams that are read, one that is
//! never read, a half-sent request, an idle keep-alive connection); a
//! stream client that stops reading is dropped and counted.

use crate::support::http::{agent, keep_alive_agent};
use crate::support::{serial, Engine, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A demo on the benchmark stream (`--firehose`): KPIs change all the
/// time, so that a stalled client's buffers fill within seconds. Ready.
fn demo() -> Engine {
    Engine::demo(&["--firehose", "--duration", "300"])
}

/// The value of an unlabelled sample of the exposition.
fn sample(port: u16, name: &str) -> f64 {
    let text = agent()
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in the exposition"))
        .parse()
        .unwrap()
}

/// Two connections with no request in progress, to keep open: a slowloris
/// (half a request head, never finished) and an idle keep-alive
/// connection (one request, then nothing).
fn without_a_request(port: u16) -> (TcpStream, ureq::Agent) {
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let idle = keep_alive_agent();
    idle.get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    (slow, idle)
}

/// Events (name, data) of one stream, read until the server closes it.
fn follow(port: u16, ready: mpsc::Sender<()>) -> Vec<(String, String)> {
    let resp = agent()
        .get(&format!(
            "http://127.0.0.1:{port}/api/v1/kpis/stream?interval=0.2"
        ))
        .call()
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut events = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(resp.into_reader()).lines() {
        let Ok(line) = line else { break };
        if let Some(e) = line.strip_prefix("event: ") {
            name = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            if events.is_empty() {
                let _ = ready.send(());
            }
            events.push((std::mem::take(&mut name), d.to_string()));
        }
    }
    events
}

/// `n` threads, each following a stream ([`follow`]), once each has had
/// its first event (within `timeout`).
fn followers(port: u16, n: usize, timeout: Duration) -> Vec<JoinHandle<Vec<(String, String)>>> {
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || follow(port, tx))
        })
        .collect();
    for _ in 0..n {
        rx.recv_timeout(timeout)
            .expect("a stream client got no snapshot");
    }
    readers
}

#[test]
fn sigterm_ends_streams_and_exits_promptly_whatever_the_clients_do() {
    let _one_at_a_time = serial();
    let mut d = demo();
    let port = d.port;
    let readers = followers(port, 3, Duration::from_secs(30));
    // A stream client that never reads past the response head.
    let silent = agent()
        .get(&format!(
            "http://127.0.0.1:{port}/api/v1/kpis/stream?interval=0.2"
        ))
        .call()
        .unwrap();
    let (mut slow, _idle) = without_a_request(port);
    assert_eq!(sample(port, "funnel_stream_clients"), 4.0);
    // Let the silent client's buffers fill a little.
    std::thread::sleep(Duration::from_secs(2));

    let (status, took) = d.sigterm_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status");
    eprintln!("exited {took:?} after SIGTERM");

    for r in readers {
        let events = r.join().unwrap();
        assert_eq!(events.first().unwrap().0, "snapshot");
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "shutdown", "last event of {events:?}");
        assert_eq!(data, r#"{"reason":"engine stopping"}"#);
        assert!(events[1..events.len() - 1]
            .iter()
            .all(|(n, _)| n == "changes"));
    }
    // The half-sent request was closed, not answered.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    drop(silent);

    let log = d.log();
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(
        // The demo keeps no checkpoints, and does not say it writes one.
        log.contains("stopping: applying in-flight events and committing offsets"),
        "{log}"
    );
    assert!(log.contains(" stopped"), "{log}");
    assert!(!log.contains("final commit failed"), "{log}");
}

#[test]
fn a_stream_client_that_stops_reading_is_dropped_and_counted() {
    let d = demo();
    let port = d.port;
    assert_eq!(sample(port, "funnel_stream_clients_dropped_total"), 0.0);
    // Deliberately broken client: a small receive window, and it never
    // reads after the request.
    let mut s = stalled(port);
    // A reading client of the same feed keeps being served meanwhile.
    let reader = followers(port, 1, Duration::from_secs(30)).remove(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample(port, "funnel_stream_clients_dropped_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was not dropped"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sample(port, "funnel_stream_clients_dropped_total"), 1.0);
    assert_eq!(sample(port, "funnel_stream_clients"), 1.0);
    // Its connection was closed: reading drains what was buffered, then EOF.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    s.read_to_end(&mut sink)
        .expect("the server closes the stalled connection");
    let log = d.log();
    assert!(log.contains("dropping a stream client"), "{log}");
    drop(d);
    let events = reader.join().unwrap();
    assert!(events.len() > 1, "the reading client kept getting changes");
}

#[test]
fn stream_clients_are_bounded_by_the_setting() {
    let mut e = Engine::without_broker(&["--max-stream-clients", "2"]);
    let port = e.port;
    let a = agent();
    let url = format!("http://127.0.0.1:{port}/api/v1/kpis/stream?interval=0.5");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match a.get(&url).call() {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "not serving: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let second = a.get(&url).call().unwrap();
    match a.get(&url).call() {
        Err(ureq::Error::Status(503, r)) => {
            assert_eq!(r.header("retry-after"), Some("10"));
            assert!(r.into_string().unwrap().contains("at most 2"));
        }
        other => panic!("a third stream client was not refused: {other:?}"),
    }
    // A client that leaves frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match a.get(&url).call() {
            Ok(r) => break r,
            Err(ureq::Error::Status(503, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("no place freed: {e}"),
        }
    };
    let mut line = String::new();
    BufReader::new(third.into_reader())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "event: snapshot\n");
    drop(second);
    e.sigkill();

    let out = Command::new(BIN)
        .args(["check-config", "--max-stream-clients", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_stream_clients"));
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A stalled client: small receive window, never reads.
fn stalled(port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /api/v1/kpis/stream?interval=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s
}

/// Abuse, bounded: 50 stream clients reading, two that stop reading, a
/// slowloris, and a scrape every half second for 20 s. Bounds, not timings:
/// every scrape answers within Prometheus' default 10 s timeout, the stalled
/// clients are dropped and counted, memory does not grow past twice what it
/// was once the clients were connected.
#[test]
fn scrapes_stay_served_under_many_and_stalled_stream_clients() {
    let _one_at_a_time = serial();
    let d = demo();
    let port = d.port;
    let readers = followers(port, 50, Duration::from_secs(60));
    let _stalled = [stalled(port), stalled(port)];
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let scraper = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let t = Instant::now();
    let mut scrapes = 0;
    // The baseline after 5 s of scrapes and streams: the demo's engine has
    // just started (it starts once its history is written), and its first
    // seconds of state are not what the clients cost.
    let mut rss_start = None;
    while t.elapsed() < Duration::from_secs(20) {
        if rss_start.is_none() && t.elapsed() >= Duration::from_secs(5) {
            rss_start = Some(rss_kb(d.child.id()));
        }
        let r = scraper
            .get(&format!("http://127.0.0.1:{port}/metrics"))
            .call()
            .expect("a scrape failed or took over 10 s");
        assert!(r.into_string().unwrap().contains("funnel_series "));
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(scrapes >= 20, "{scrapes} scrapes in 20 s");
    let deadline = Instant::now() + Duration::from_secs(40);
    while sample(port, "funnel_stream_clients_dropped_total") < 2.0 {
        assert!(Instant::now() < deadline, "stalled clients not dropped");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sample(port, "funnel_stream_clients"), 50.0);
    let rss_start = rss_start.expect("a baseline after 5 s");
    let rss_end = rss_kb(d.child.id());
    assert!(
        rss_end < 2 * rss_start,
        "resident memory grew from {rss_start} kB to {rss_end} kB"
    );
    eprintln!("{scrapes} scrapes; resident {rss_start} kB -> {rss_end} kB");
    drop(d);
    for r in readers {
        assert!(r.join().unwrap().len() > 1);
    }
}

/// Connections with no request in progress (a request head still arriving,
/// an idle keep-alive) close as soon as the engine stops: they do not hold
/// the grace period (5 s) that in-flight requests get.
#[test]
fn half_sent_and_idle_connections_do_not_hold_the_grace_period() {
    let _one_at_a_time = serial();
    let mut d = demo();
    let port = d.port;
    let (_slow, _idle) = without_a_request(port);
    let reader = followers(port, 1, Duration::from_secs(30)).remove(0);
    // Within 4 s: a connection without a request must not hold the
    // shutdown for the 5 s grace period.
    let (status, _) = d.sigterm_within(Duration::from_secs(4));
    assert_eq!(status.code(), Some(0));
    let events = reader.join().unwrap();
    assert_eq!(events.last().unwrap().0, "shutdown");
}
