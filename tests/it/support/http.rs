//! The tests' one HTTP client: ureq, which the engine already depends on.
//! Every status is an answer here (ureq reports 4xx and 5xx as errors);
//! only a failure to connect, send or read is an `Err`.

use std::io::Read;
use std::time::Duration;

/// A response: status, headers and the body as sent (no content decoding:
/// ureq is built without its gzip feature).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An agent with bounded waits, no connection reuse and no redirects, so
/// that every request is one connection and its answer is the server's own.
pub fn agent() -> ureq::Agent {
    builder().build()
}

/// [`agent`]'s settings, for an agent that needs more (a TLS root).
pub fn builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(30))
        .timeout_write(Duration::from_secs(15))
        .max_idle_connections(0)
        .redirects(0)
}

/// GET `url` with extra request headers.
pub fn fetch(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("GET {url}: {e}")),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|k| {
            let v = resp.header(&k)?.to_string();
            Some((k, v))
        })
        .collect();
    let mut body = Vec::new();
    resp.into_reader()
        .read_to_end(&mut body)
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// GET `path` from `127.0.0.1:port`.
pub fn try_http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    fetch(&agent(), &format!("http://127.0.0.1:{port}{path}"), headers)
}

/// [`try_http_get`], which must get an answer: (status, body).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = try_http_get(port, path, headers).unwrap();
    (r.status, r.text())
}

/// The text of `path` on `127.0.0.1:port` whatever its status, or "" when
/// nothing answers (an engine still starting or gone).
pub fn scrape(port: u16, path: &str) -> String {
    try_http_get(port, path, &[])
        .map(|r| r.text())
        .unwrap_or_default()
}

/// An agent that keeps its connections open after a request (idle
/// keep-alive connections, as browsers and Prometheus leave them).
pub fn keep_alive_agent() -> ureq::Agent {
    builder().max_idle_connections(100).build()
}
