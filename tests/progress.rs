//! Progress of long work (issue 20): `replay` and `produce --from` draw a
//! bar with rate and ETA when stderr is a terminal (tmux gives them one) and
//! nothing when it is not, and the exposition on replay's stdout is the same
//! byte for byte either way.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_funnelstream");

/// The golden events `times` over: big enough to take seconds. Returns
/// the file and its number of events.
fn big_file(name: &str, times: usize) -> (PathBuf, usize) {
    let golden =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/events.ndjson"))
            .unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..times {
        f.write_all(&golden).unwrap();
    }
    f.flush().unwrap();
    let events = golden
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    (path, events * times)
}

struct Tmux(String);

impl Tmux {
    /// A shell in a tmux server of its own, running `cmd`.
    fn run(cmd: &str) -> Tmux {
        let socket = format!("funnel-progress-{}-{}", std::process::id(), cmd.len());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args([
                "-x",
                "160",
                "-y",
                "12",
                "bash",
                "--norc",
                "--noprofile",
                "-c",
            ])
            .arg(format!("{cmd}; sleep 60"))
            .status()
            .expect("tmux must be installed (scripts/test installs it)")
            .success();
        assert!(ok);
        Tmux(socket)
    }

    fn wait(&self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = Command::new("tmux")
                .args(["-L", &self.0, "capture-pane", "-p", "-t", "t"])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .status();
    }
}

fn keep(name: &str, screen: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tail-board");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), screen);
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn replay_shows_progress_on_a_terminal_only() {
    let (input, n) = big_file("progress-replay.ndjson", 2000);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress-replay.prom");
    let t = Tmux::run(&format!(
        "{BIN} replay --clock event --from {} > {}; echo REPLAY_EXIT=$?",
        input.display(),
        out.display()
    ));
    let screen = t.wait(60, "a progress bar", |s| {
        s.contains("replay [") && s.contains("ETA") && s.contains("MiB/s")
    });
    keep("replay-progress", &screen);
    let screen = t.wait(300, "replay done", |s| s.contains("REPLAY_EXIT="));
    assert!(screen.contains("REPLAY_EXIT=0"), "{screen}");
    // The bar is cleared; the summary stays.
    assert!(!screen.contains("ETA"), "{screen}");
    assert!(
        screen.contains(&format!("funnelstream: replayed {n} events")),
        "{screen}"
    );

    // Not a terminal: the same exposition, byte for byte, and only the
    // summary on stderr.
    let piped = Command::new(BIN)
        .args(["replay", "--clock", "event", "--from"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        piped.stdout == std::fs::read(&out).unwrap(),
        "stdout differs"
    );
    let err = String::from_utf8(piped.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("funnelstream: replayed {n} events")),
        "{err}"
    );
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn produce_from_shows_progress_on_a_terminal_only() {
    // The demo's embedded broker (its address is on the demo's stdout).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--history", "100", "--rate", "0", "--duration", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut brokers = None;
    for line in BufReader::new(demo.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("--brokers ").nth(1) {
            brokers = rest.split_whitespace().next().map(String::from);
            break;
        }
    }
    let brokers = brokers.expect("the demo prints its broker");
    let (input, n) = big_file("progress-produce.ndjson", 40);
    let t = Tmux::run(&format!(
        "{BIN} produce --brokers {brokers} --topic funnel-events --rate 2000 --from {}; echo PRODUCE_EXIT=$?",
        input.display()
    ));
    let screen = t.wait(60, "a progress bar", |s| {
        s.contains("produce [") && s.contains("ETA") && s.contains("KiB/s")
    });
    keep("produce-progress", &screen);
    let screen = t.wait(120, "produce done", |s| s.contains("PRODUCE_EXIT="));
    assert!(screen.contains("PRODUCE_EXIT=0"), "{screen}");
    assert!(
        screen.contains(&format!("funnelstream: produced {n} events")),
        "{screen}"
    );
    assert!(!screen.contains("ETA"), "{screen}");

    // Not a terminal: no bar, no escape codes.
    let piped = Command::new(BIN)
        .args([
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            "funnel-events",
            "--from",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(piped.status.success());
    let err = String::from_utf8(piped.stderr).unwrap();
    assert!(!err.contains('\x1b') && !err.contains("ETA"), "{err}");
    assert!(
        err.contains(&format!("funnelstream: produced {n} events")),
        "{err}"
    );
    let _ = demo.kill();
    let _ = demo.wait();
}
