//! Prometheus' own tools: `promtool` (exposition and rule checks) and the
//! query API of a running `prometheus`.

use super::http::{agent, fetch};
use super::run_tool;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// What to install for `promtool` and `prometheus`.
pub const PROMETHEUS_PKG: &str = "install Debian's `prometheus` package \
    (`apt-get install prometheus`), which provides `prometheus` and `promtool`; \
    scripts/test installs it";

/// `promtool ARGS` in the repository's root.
pub fn promtool(args: &[&str]) -> Output {
    run_tool(
        Command::new("promtool")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        "promtool",
        PROMETHEUS_PKG,
    )
}

/// `promtool check metrics` must accept `text`.
pub fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`promtool` is not on PATH: {PROMETHEUS_PKG}")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("promtool stdin");
    let text = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("wait for promtool");
    let written = writer.join().expect("stdin writer panicked");
    assert!(
        out.status.success(),
        "`promtool check metrics` rejected the exposition (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    written.expect("write the exposition to promtool");
}

/// GET `path` of the server at `addr` (`127.0.0.1:PORT`): (status, body).
pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let r = fetch(&agent(), &format!("http://{addr}{path}"), &[])?;
    Ok((r.status, r.text()))
}

/// An instant query of the Prometheus at `addr`: Ok(result array) on
/// status success, Err(message) otherwise.
pub fn query(addr: &str, expr: &str) -> Result<Vec<Value>, String> {
    let resp = match agent()
        .get(&format!("http://{addr}/api/v1/query"))
        .query("query", expr)
        .call()
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("query {expr}: {e}")),
    };
    let code = resp.status();
    let body = resp.into_string().map_err(|e| format!("read: {e}"))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {code}, not JSON ({e}): {body}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "HTTP {code}: {} {}",
            v["errorType"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or(&body)
        ));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}
