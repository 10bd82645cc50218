//! `funnelstream tail` and its API against a running engine (`demo`, which
//! needs nothing installed), including its coloured output through a real
//! pseudo-terminal (tmux; `.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_funnelstream");

struct Demo {
    child: Child,
    url: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path).unwrap()
}

fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        body.to_string(),
    ))
}

fn demo() -> Demo {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--history",
            "5000",
            "--duration",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Not ready may also mean refused: until the demo listens, the
        // port may briefly belong to another process.
        if try_get(port, "/readyz").is_ok_and(|r| r.0 == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "demo not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    Demo {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn tail(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("tail").args(args).output().unwrap()
}

#[test]
fn api_once_and_follow() {
    let d = demo();
    let port: u16 = d.url.rsplit(':').next().unwrap().parse().unwrap();

    // The JSON API, filtered.
    let (status, body) = get(port, "/api/v1/kpis?metric=funnel_win_ratio&window=30d");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = v["series"].as_array().unwrap();
    assert!(!series.is_empty(), "{body}");
    for s in series {
        assert_eq!(s["metric"], "funnel_win_ratio");
        assert_eq!(s["labels"]["window"], "30d");
        let x = s["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x));
    }

    // --once: a table, no colour when stdout is not a terminal.
    let out = tail(&[
        "--url",
        &d.url,
        "--once",
        "--metric",
        "funnel_clicks",
        "--window",
        "1d",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("METRIC"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 6, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("funnel_clicks ") && r.contains(" 1d ")),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
    let out = tail(&[
        "--url",
        &d.url,
        "--once",
        "--channel",
        "email",
        "--metric",
        "funnel_mrr",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().skip(1).all(|r| r.contains(" email ")),
        "{text}"
    );

    // Following: the table, then one line per changed series.
    let mut child = Command::new(BIN)
        .args([
            "tail",
            "--url",
            &d.url,
            "--metric",
            "funnel_clicks",
            "--window",
            "5m",
            "--interval",
            "0.3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = child.wait();
    assert!(text.starts_with("METRIC"), "{text}");
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("funnel_clicks{channel="))
        .collect();
    assert!(!changes.is_empty(), "no change lines:\n{text}");
    assert!(changes.iter().all(|l| l.contains("window=\"5m\"")));

    // Unreachable engine: a clear error and exit 1.
    let out = tail(&["--url", "http://127.0.0.1:1", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn colours_only_on_a_terminal() {
    let d = demo();
    let session = format!("funnel-tail-{}", std::process::id());
    let cmd = format!(
        "{BIN} tail --url {} --metric funnel_clicks --window 5m --interval 0.3",
        d.url
    );
    let ok = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "220",
            "-y",
            "60",
            &cmd,
        ])
        .status()
        .expect("tmux must be installed (Debian package tmux; .ci/run installs it)")
        .success();
    assert!(ok);
    std::thread::sleep(Duration::from_secs(4));
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-e", "-t", &session])
        .output()
        .unwrap();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("funnel_clicks{channel="), "{screen}");
    assert!(
        screen.contains("\x1b["),
        "expected colour escapes on a terminal:\n{screen}"
    );
}
