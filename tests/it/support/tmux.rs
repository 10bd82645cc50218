//! A real terminal for the tests of `tail`'s board and of progress bars:
//! a tmux server of its own (its own socket), killed on drop.

use super::wait_until;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A `w`×`h` session running `command`.
    fn start(w: u16, h: u16, command: &[&str]) -> Tmux {
        static N: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "funnel-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-s", "t", "-x", &w.to_string(), "-y", &h.to_string()])
            .args(command)
            .status()
            .expect("tmux must be installed (scripts/test installs it)")
            .success();
        assert!(ok);
        Tmux { socket }
    }

    /// An interactive shell (prompt `$ `, a 256-colour terminal).
    pub fn shell(w: u16, h: u16) -> Tmux {
        let env = ["env", "PS1=$ ", "TERM=xterm-256color"];
        Tmux::start(
            w,
            h,
            &[&env[..], &["bash", "--norc", "--noprofile"]].concat(),
        )
    }

    /// `cmd` in a 160×12 shell, its screen kept for a minute after.
    pub fn run(cmd: &str) -> Tmux {
        let script = format!("{cmd}; sleep 60");
        Tmux::start(160, 12, &["bash", "--norc", "--noprofile", "-c", &script])
    }

    /// [`run`](Self::run), with everything the command writes to the
    /// terminal also appended to `log` (tmux `pipe-pane`, set up before the
    /// command starts): what was drawn and then cleared, however briefly.
    pub fn run_recorded(cmd: &str, log: &std::path::Path) -> Tmux {
        let _ = std::fs::remove_file(log);
        // The shell waits for a line before it starts `cmd`.
        let script = format!("read -r _; {cmd}; sleep 60");
        let t = Tmux::start(160, 12, &["bash", "--norc", "--noprofile", "-c", &script]);
        let pipe = format!("cat >> '{}'", log.display());
        let ok = Command::new("tmux")
            .args(["-L", &t.socket, "pipe-pane", "-t", "t", "-o", &pipe])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        t.keys(&["Enter"]);
        t
    }

    pub fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Types `text` and Enter.
    pub fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    /// The screen, with its colour escapes if `escapes`.
    pub fn screen_with(&self, escapes: bool) -> String {
        let mut args = vec!["-L", &self.socket, "capture-pane", "-p", "-t", "t"];
        if escapes {
            args.push("-e");
        }
        let out = Command::new("tmux").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.screen_with(false)
    }

    /// Waits up to `secs` for the screen to satisfy `f`; returns the screen.
    pub fn wait(&self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_until(secs, what, || {
            let s = self.screen();
            if f(&s) {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Keeps a screen as a test artefact (target/tmp/tail-board/NAME.txt).
pub fn keep(name: &str, screen: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tail-board");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), screen);
}
