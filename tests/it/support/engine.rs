//! The one way the tests start a long-running funnelstream: `run` against a
//! broker, `demo` (which needs nothing installed), or any other command
//! line, as a process of its own with its stderr in a log file.

use super::http::{http_get, scrape, try_http_get};
use super::{free_port, processed, Scratch, BIN};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A funnelstream process listening on `127.0.0.1:port`, killed on drop if
/// still running. Its stderr and stdout go to `stderr.log` and `stdout.log`
/// in a [`Scratch`] directory of its own (`funnelstream-engine-PORT-*`),
/// deleted on drop when the test passes and kept when it fails.
pub struct Engine {
    pub child: Child,
    pub port: u16,
    pub stderr: PathBuf,
    pub stdout: PathBuf,
    /// Dropped after `child` is killed (see `Drop`).
    dir: Scratch,
}

impl Engine {
    /// `funnelstream ARGS`, stdout and stderr to files; the process is to
    /// listen on `port` (ARGS say so).
    pub fn spawn<I, S>(port: u16, args: I) -> Engine
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dir = Scratch::new(&format!("engine-{port}"));
        let stderr = dir.join("stderr.log");
        let stdout = dir.join("stdout.log");
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Engine {
            child,
            port,
            stderr,
            stdout,
            dir,
        }
    }

    /// `funnelstream run` on `broker`, logging JSON, not waited for.
    pub fn start(broker: &str, topics: &str, group: &str, extra: &[&str]) -> Engine {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "run",
            "--brokers",
            broker,
            "--topics",
            topics,
            "--group",
            group,
            "--listen",
            &listen,
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        Engine::spawn(port, args)
    }

    /// `funnelstream run EXTRA` against no broker at all (`127.0.0.1:1`):
    /// the HTTP side serves regardless. Not waited for.
    pub fn without_broker(extra: &[&str]) -> Engine {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["run", "--brokers", "127.0.0.1:1", "--listen", &listen];
        args.extend_from_slice(extra);
        Engine::spawn(port, args)
    }

    /// `funnelstream demo EXTRA` on a free port, ready.
    pub fn demo(extra: &[&str]) -> Engine {
        Engine::demo_on(free_port(), extra)
    }

    /// `funnelstream demo EXTRA` on `port`, ready (a restarted demo takes
    /// the port of the one before).
    pub fn demo_on(port: u16, extra: &[&str]) -> Engine {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["demo", "--listen", &listen];
        args.extend_from_slice(extra);
        let e = Engine::spawn(port, args);
        e.wait_ready(Duration::from_secs(90));
        e
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, &[])
    }

    /// `/metrics`, or "" while nothing answers.
    pub fn scrape(&self) -> String {
        scrape(self.port, "/metrics")
    }

    /// Waits for `/readyz` to answer 200. (Not answering may also mean
    /// refused: until the engine listens, the port may briefly belong to
    /// another process.)
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if try_http_get(self.port, "/readyz", &[]).is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not ready after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// For a `demo` of the company (not `--firehose`): waits until it has
    /// written its history (it logs how many events) and the engine has
    /// processed at least those; returns their number.
    pub fn wait_history(&self, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        let history = loop {
            // The log may be coloured: drop ANSI escapes first.
            let text = strip_ansi(&self.log());
            if let Some(l) = text.lines().find(|l| l.contains("history written")) {
                let n = l.split("events=").nth(1).unwrap().split_whitespace().next();
                break n.unwrap().parse::<f64>().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no history after {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        while processed(&self.scrape()) < history {
            assert!(
                Instant::now() < deadline,
                "history of {history} events not consumed after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        history
    }

    /// The last 30 lines of [`Engine::log`], for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- last lines of funnelstream's log ---\n{}",
            lines[from..].join("\n")
        )
    }

    /// Panics, showing the log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("funnelstream exited early ({status}):\n{}", self.log_tail());
        }
    }

    /// What it wrote to stdout so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.child.id());
    }

    /// SIGTERM, then the exit status and how long the exit took, which
    /// must be under `limit`.
    pub fn sigterm_within(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let t = Instant::now();
        self.term();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, t.elapsed());
            }
            assert!(t.elapsed() < limit, "no exit {limit:?} after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status and how long the exit took (under
    /// 30 s).
    pub fn sigterm(&mut self) -> (ExitStatus, Duration) {
        self.sigterm_within(Duration::from_secs(30))
    }

    /// Stops it as an orchestrator would: SIGTERM, then SIGKILL if it has
    /// not exited after a grace period of 3 s.
    pub fn stop(&mut self) {
        self.term();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.sigkill();
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// `s` without its ANSI escape sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
