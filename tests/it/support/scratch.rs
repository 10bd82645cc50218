//! The one way the tests keep files of their own: a [`Scratch`] directory
//! under the system's temporary directory (`$TMPDIR`, else `/tmp`), deleted
//! when the test passes and kept, its path printed, when it fails.

use std::path::Path;

/// A fresh directory `funnelstream-TAG-XXXXXX` (random suffix: unique per
/// process and per test) for one test's files, and for what the processes
/// it starts write (logs, configs, data directories).
///
/// Dropped normally (the test passed) it is deleted with everything in it.
/// Dropped while its thread panics (the test failed) it is kept, and its
/// path goes to stderr, which the test harness shows with the failure: a
/// developer can read the logs and inputs of the failed run.
///
/// It dereferences to its [`Path`], so `dir.join("x")` and `&dir` as a
/// `&Path` work.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("funnelstream-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create a directory in {}: {e}",
                    std::env::temp_dir().display()
                )
            });
        Scratch { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch directory").path()
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        if std::thread::panicking() {
            eprintln!("test failed: its files are kept in {}", path.display());
            return;
        }
        // A process killed just before (Chromium's helpers, say) may still
        // be writing into the directory for a moment: try again then.
        for attempt in 1..=20 {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if attempt == 20 => {
                    eprintln!("cannot delete {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }
}
