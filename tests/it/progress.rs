//! Progress of long work (issue 20): `replay` and `produce --from` draw a
//! bar with rate and ETA when stderr is a terminal (tmux gives them one) and
//! nothing when it is not, and the exposition on replay's stdout is the same
//! byte for byte either way.

use crate::support::tmux::{keep, Tmux};
use crate::support::{Engine, BIN};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The golden events `times` over (tens of MB; a replay of them can end in
/// a fraction of a second, `produce --rate` of them takes seconds). Returns
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

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn replay_shows_progress_on_a_terminal_only() {
    let _one_at_a_time = crate::support::serial();
    let (input, n) = big_file("progress-replay.ndjson", 2000);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress-replay.prom");
    // The replay can end within a tenth of a second, before a look at the
    // screen would find its bar: what the terminal received is recorded.
    let drawn = Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress-replay.tty");
    let t = Tmux::run_recorded(
        &format!(
            "{BIN} replay --clock event --from {} > {}; echo REPLAY_EXIT=$?",
            input.display(),
            out.display()
        ),
        &drawn,
    );
    let screen = t.wait(300, "replay done", |s| s.contains("REPLAY_EXIT="));
    assert!(screen.contains("REPLAY_EXIT=0"), "{screen}");
    let tty = String::from_utf8_lossy(&std::fs::read(&drawn).unwrap()).into_owned();
    keep("replay-progress", &tty);
    assert!(
        tty.contains("replay [") && tty.contains("ETA") && tty.contains("B/s"),
        "no progress bar was drawn: {tty:?}"
    );
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
    let _one_at_a_time = crate::support::serial();
    // The demo's embedded broker (its address is on the demo's stdout).
    let demo = Engine::demo(&["--history", "100", "--rate", "0", "--duration", "120"]);
    let brokers = demo
        .output()
        .split("--brokers ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(String::from)
        .expect("the demo prints its broker");
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
    drop(demo);
}
