//! The HTTP endpoints: `/metrics` (Prometheus text, OpenMetrics when the
//! scraper's `Accept` asks for it, gzip when `Accept-Encoding` allows),
//! `/` (the live KPI board, [`crate::export::board`], with its
//! `/api/v1/kpis/history` and `/api/v1/health`), `/healthz` (process alive)
//! and `/readyz` (assigned partitions caught up, brokers reachable, not
//! shutting down).

use crate::export::api::{ConnectionCloser, StreamHub};
use crate::export::board::History;
use crate::export::prometheus::Format;
use crate::export::security::{require_auth, BasicAuth, Security};
use crate::live::LiveState;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

/// Counts a request in progress on its connection while alive.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Busy(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Limits and timeouts of the HTTP server (see README, "HTTP limits").
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request's head must arrive within this; it also closes idle
    /// keep-alive connections (and bounds the TLS handshake).
    pub(crate) header_read_timeout: Duration,
    /// A write to a client that makes no progress for this long closes the
    /// connection (a client that never reads).
    pub(crate) write_timeout: Duration,
    /// Longest time to produce a response (streams excepted): 503 after it.
    pub(crate) request_timeout: Duration,
    /// `/api/v1/kpis` and `/` requests computed at once; more get 503, so
    /// that API work never queues up ahead of `/metrics`.
    pub(crate) max_api_requests: usize,
    /// Largest request body accepted (every endpoint is a GET).
    pub(crate) max_body_bytes: usize,
    /// On shutdown: how long in-flight requests may take to finish before
    /// their connections are closed.
    pub grace: Duration,
    pub streams: crate::export::api::StreamLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_api_requests: 4,
            max_body_bytes: 64 * 1024,
            grace: Duration::from_secs(5),
            streams: Default::default(),
        }
    }
}

pub(crate) fn router(
    live: Arc<LiveState>,
    auth: Option<Arc<BasicAuth>>,
    hub: Arc<StreamHub>,
    history: Arc<History>,
    limits: &HttpLimits,
) -> Router {
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout);
    // Scrapes and probes: never limited in concurrency, never behind API work.
    let scrape = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(live.clone())
        .layer(timeout);
    let api = Router::new()
        .route("/", get(crate::export::board::page))
        .route("/api/v1/kpis", get(crate::export::api::kpis))
        .route("/api/v1/kpis/history", get(crate::export::board::history))
        .route("/api/v1/health", get(crate::export::board::health))
        .layer(axum::Extension(history))
        .with_state(live)
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "1")],
                        "busy: too many API requests at once; retry\n",
                    )
                }))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    limits.max_api_requests.max(1),
                ))
                .layer(timeout),
        );
    let streams = Router::new()
        .route("/api/v1/kpis/stream", get(crate::export::api::stream))
        .with_state(hub);
    let r = scrape
        .merge(api)
        .merge(streams)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes));
    match auth {
        Some(a) => r.layer(axum::middleware::from_fn_with_state(a, require_auth)),
        None => r,
    }
}

/// Only `/healthz` and `/readyz`, plain HTTP, no auth: for kubelet probes
/// on a separate address (`--probe-listen`).
pub(crate) fn probe_router(live: Arc<LiveState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(live)
}

/// Serves (over TLS and with basic auth when `security` says so) until
/// `shutdown` completes, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<LiveState>,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, live, security, HttpLimits::default(), shutdown).await
}

/// [`serve`] with explicit limits. Once `shutdown` completes: every stream
/// gets its final `event: shutdown` and ends, no new connection is
/// accepted, in-flight requests have `limits.grace` to finish, then every
/// remaining connection is closed. Returns within about `grace` plus a
/// second, whatever the clients do.
pub(crate) async fn serve_with(
    listener: tokio::net::TcpListener,
    live: Arc<LiveState>,
    security: Security,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_split(listener, live, security, limits, shutdown, None).await
}

/// [`serve_with`], with every connection but those of scrapes and probes
/// on the runtime of `others` when given: the caller runs this on a
/// runtime of its own, which then accepts, and serves `/metrics`,
/// `/healthz` and `/readyz` connections (known by their first request
/// line, on plain HTTP), so that a scrape never waits behind stream
/// clients' writes or API work on the other runtime's threads. The board's
/// history and the stream feeds run on `others` too.
pub(crate) async fn serve_split(
    listener: tokio::net::TcpListener,
    live: Arc<LiveState>,
    security: Security,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    others: Option<tokio::runtime::Handle>,
) -> std::io::Result<()> {
    let hub = StreamHub::new(live.clone(), limits.streams.clone());
    let stop_history = CancellationToken::new();
    let history = {
        let _on = others.as_ref().map(|h| h.enter());
        History::start(live.clone(), stop_history.clone())
    };
    let app = router(live, security.auth.clone(), hub.clone(), history, &limits);
    let shutdown = async move {
        shutdown.await;
        hub.stop();
        stop_history.cancel();
    };
    serve_on(listener, app, security.tls, limits, shutdown, others).await
}

/// `serve` on a connection moved from another runtime: registered with the
/// reactor of the runtime it runs on.
async fn moved<F: Future<Output = ()>>(
    std: std::net::TcpStream,
    serve: impl FnOnce(tokio::net::TcpStream) -> F,
) {
    match tokio::net::TcpStream::from_std(std) {
        Ok(tcp) => serve(tcp).await,
        Err(e) => debug!("cannot move a connection: {e}"),
    }
}

/// Request lines served on the accepting runtime by [`serve_split`].
const PRIORITY: [&[u8]; 3] = [b"GET /metrics", b"GET /healthz", b"GET /readyz"];

/// Whether the connection's first request is a scrape or a probe: peeks at
/// its first bytes (within `wait`) without consuming them. A request line
/// may arrive in pieces (a client writing `GET ` and the path separately),
/// so while what has arrived could still become one of [`PRIORITY`], it
/// looks again every millisecond until `wait` runs out.
async fn is_priority(tcp: &tokio::net::TcpStream, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 16];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        let seen = &buf[..n];
        if PRIORITY
            .iter()
            .any(|p| seen.starts_with(p) && matches!(seen.get(p.len()), Some(b' ' | b'?')))
        {
            return true;
        }
        let undecided = n > 0 && PRIORITY.iter().any(|p| n <= p.len() && p.starts_with(seen));
        if !undecided || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The accept loop under every listener of the engine: HTTP/1.1 (hyper),
/// optional TLS, header-read and write timeouts, and a bounded graceful
/// shutdown.
pub(crate) async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, app, tls, limits, shutdown, None).await
}

/// [`serve_app`], connections other than scrapes and probes on `others`
/// when given (see [`serve_split`]).
async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    others: Option<tokio::runtime::Handle>,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Connections::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    while let Some(tcp) = accept(&listener, shutdown.as_mut()).await {
        let _ = tcp.set_nodelay(true);
        let conn = connections.new_connection(&app, &tls, &limits);
        connections.spawn(tcp, conn, others.as_ref());
    }
    drop(listener);
    connections.shut_down(limits.grace).await;
    Ok(())
}

/// The next connection, or `None` once `shutdown` completes.
async fn accept(
    listener: &tokio::net::TcpListener,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<tokio::net::TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.as_mut() => return None,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, _)) => return Some(tcp),
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // keep serving the others.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connections of one listener: their tasks, and the signals that end
/// them on shutdown.
struct Connections {
    graceful: hyper_util::server::graceful::GracefulShutdown,
    close_all: CancellationToken,
    stopping: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Connections {
    fn new() -> Self {
        Connections {
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
            close_all: CancellationToken::new(),
            stopping: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    fn new_connection(
        &self,
        app: &Router,
        tls: &Option<tokio_rustls::TlsAcceptor>,
        limits: &Arc<HttpLimits>,
    ) -> Connection {
        Connection {
            close: self.close_all.child_token(),
            watcher: self.graceful.watcher(),
            app: app.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
            stopping: self.stopping.clone(),
        }
    }

    /// Serves `tcp` on this runtime, or on `others` when given.
    fn spawn(
        &self,
        tcp: tokio::net::TcpStream,
        conn: Connection,
        others: Option<&tokio::runtime::Handle>,
    ) {
        let (plain, wait) = (conn.tls.is_none(), conn.limits.header_read_timeout);
        let (stopped, closed) = (conn.stopping.clone(), conn.close.clone());
        let handle = move |tcp: tokio::net::TcpStream| conn.serve(tcp);
        match others {
            None => {
                self.tasks.spawn(handle(tcp));
            }
            // Plain HTTP: where the first request line says (peeked in a
            // task of its own, so that a slow client holds up no accept).
            Some(rt) if plain => {
                let (rt, others_tasks) = (rt.clone(), self.tasks.clone());
                self.tasks.spawn(async move {
                    // Nothing sent yet: closes at once on shutdown.
                    let priority = tokio::select! {
                        _ = stopped.cancelled() => return,
                        _ = closed.cancelled() => return,
                        p = is_priority(&tcp, wait) => p,
                    };
                    if priority {
                        handle(tcp).await;
                    } else if let Ok(std) = tcp.into_std() {
                        others_tasks.spawn_on(moved(std, handle), &rt);
                    }
                });
            }
            Some(rt) => {
                if let Ok(std) = tcp.into_std() {
                    self.tasks.spawn_on(moved(std, handle), rt);
                }
            }
        }
    }

    /// Once no new connection is accepted: in-flight requests have `grace`
    /// to finish, then every remaining connection is closed.
    async fn shut_down(self, grace: Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.graceful.shutdown())
            .await
            .is_err()
        {
            warn!(
                grace_s = grace.as_secs_f64(),
                "grace period over: closing the remaining connections"
            );
        }
        self.close_all.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }
}

/// What serving one accepted connection needs.
struct Connection {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Arc<HttpLimits>,
    /// Closes the connection at once.
    close: CancellationToken,
    watcher: hyper_util::server::graceful::Watcher,
    /// The server is shutting down.
    stopping: CancellationToken,
}

impl Connection {
    /// Serves HTTP (after the TLS handshake, when TLS is on) until the
    /// client is done, `close` fires, or the server stops while no request
    /// is in progress.
    async fn serve(self, tcp: tokio::net::TcpStream) {
        let Connection {
            app,
            tls,
            limits,
            close,
            watcher,
            stopping,
        } = self;
        let busy = Arc::new(AtomicUsize::new(0));
        let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.write_timeout));
        let io = Box::pin(io);
        let serve = async {
            match tls {
                None => connection(io, app, close.clone(), watcher, &limits, &busy).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io))
                        .await
                    {
                        Ok(Ok(io)) => {
                            connection(io, app, close.clone(), watcher, &limits, &busy).await
                        }
                        Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
                        Err(_) => debug!("TLS handshake timed out"),
                    }
                }
            }
        };
        // Once stopping, a connection with no request in progress (idle,
        // or a request head still arriving) closes at once rather than
        // holding the grace period.
        let idle_at_stop = async {
            stopping.cancelled().await;
            while busy.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = close.cancelled() => {}
            _ = idle_at_stop => {}
            _ = serve => {}
        }
    }
}

async fn connection<I>(
    io: I,
    app: Router,
    close: CancellationToken,
    watcher: hyper_util::server::graceful::Watcher,
    limits: &HttpLimits,
    busy: &Arc<AtomicUsize>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let closer = ConnectionCloser(close);
    let busy = busy.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(closer.clone());
        // Busy from the complete request head until the response body is
        // done with (sent, or dropped with the connection).
        let guard = Busy::new(&busy);
        let resp = app.clone().oneshot(req);
        async move {
            let resp = resp.await?;
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                Body::new(body.map_frame(move |f| {
                    let _alive = &guard;
                    f
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        debug!("connection ended: {e}");
    }
}

fn wants(headers: &HeaderMap, name: header::HeaderName, what: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let ty = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                let p = p.trim();
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            ty.eq_ignore_ascii_case(what) && !q_zero
        })
}

async fn metrics(State(live): State<Arc<LiveState>>, headers: HeaderMap) -> Response {
    let format = if wants(&headers, header::ACCEPT, "application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let gzip = wants(&headers, header::ACCEPT_ENCODING, "gzip");
    let rendered = tokio::task::spawn_blocking(move || {
        let text = live.render(format);
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(text.len() / 8),
                flate2::Compression::fast(),
            );
            enc.write_all(text.as_bytes()).and_then(|_| enc.finish())
        } else {
            Ok(text.into_bytes())
        }
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            if gzip {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "render failed\n").into_response(),
    }
}

async fn readyz(State(live): State<Arc<LiveState>>) -> Response {
    match live.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use std::io::{Read, Write};

    /// The status line and the whole response of a `GET path` (connection
    /// closed by the server after the response).
    /// A request line written in pieces is still recognised as a probe or
    /// scrape; anything else, or nothing, is not.
    #[tokio::test]
    async fn priority_is_read_from_a_request_line_arriving_in_pieces() {
        async fn classify(pieces: &[&str], wait: Duration) -> bool {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
            let writer = std::thread::spawn(move || {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.set_nodelay(true).unwrap();
                for p in pieces {
                    client.write_all(p.as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(40));
                }
                client
            });
            let (server, _) = listener.accept().await.unwrap();
            let got = is_priority(&server, wait).await;
            drop(writer.join().unwrap());
            got
        }
        let wait = Duration::from_secs(5);
        assert!(classify(&["GET ", "/readyz HTTP/1.1\r\n\r\n"], wait).await);
        assert!(classify(&["GE", "T /met", "rics?x=1 HTTP/1.1\r\n"], wait).await);
        assert!(classify(&["GET /healthz HTTP/1.1\r\n"], wait).await);
        assert!(!classify(&["GET ", "/api/v1/kpis HTTP/1.1\r\n"], wait).await);
        assert!(!classify(&["GET /metricsx HTTP/1.1\r\n"], wait).await);
        assert!(!classify(&["POST /metrics HTTP/1.1\r\n"], wait).await);
        // Stalled after `GET `: undecided until the wait runs out.
        assert!(!classify(&["GET "], Duration::from_millis(20)).await);
    }

    fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // Longer than the callers' guard: they fail first, with a message.
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.lines().next().unwrap_or("").to_string();
        (status, out)
    }

    /// [`get`] on a thread of its own: its response arrives on the channel.
    fn get_later(
        addr: std::net::SocketAddr,
        path: &'static str,
    ) -> std::sync::mpsc::Receiver<(String, String)> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(get(addr, path));
        });
        rx
    }

    /// Only a guard against a hang: the test checks order, not duration.
    const NEVER: Duration = Duration::from_secs(30);

    /// With the split, a scrape and a probe are answered while every thread
    /// of the other runtime is busy (as under many stream clients' writes);
    /// an API request there waits for it. Checked by order, not by time:
    /// the other runtime's only worker stays blocked until the test has
    /// both answers, so a scrape or probe served there never arrives (the
    /// guard fails the test), and the API answer can only come after the
    /// release.
    #[test]
    fn scrapes_do_not_wait_for_the_other_runtime() {
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(name)
                .enable_all()
                .build()
                .unwrap()
        };
        let (scrapes, others) = (runtime("t-scrape"), runtime("t-others"));
        let live = LiveState::new(Engine::new(Default::default()));
        let listener = scrapes
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server = scrapes.spawn(serve_split(
            listener,
            live,
            Security::default(),
            HttpLimits::default(),
            async move { stopped.cancelled().await },
            Some(others.handle().clone()),
        ));
        assert!(get(addr, "/healthz").0.contains("200"));
        // The other runtime's only worker blocks until `release` sends or
        // is dropped (declared after the runtimes, so a failing assertion
        // drops it first and the runtimes can shut down).
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        others.spawn(async move {
            busy_tx.send(()).unwrap();
            let _ = blocked.recv();
        });
        busy_rx.recv().unwrap();
        let api = {
            let (tx, rx) = std::sync::mpsc::channel();
            let released = released.clone();
            std::thread::spawn(move || {
                let answer = get(addr, "/api/v1/health");
                let _ = tx.send((answer, released.load(Ordering::Acquire)));
            });
            rx
        };
        let (status, body) = get_later(addr, "/metrics")
            .recv_timeout(NEVER)
            .expect("the scrape waited for the blocked runtime");
        assert!(status.contains("200"), "{status}");
        assert!(body.contains("funnel_build_info"));
        let (status, _) = get_later(addr, "/readyz?verbose")
            .recv_timeout(NEVER)
            .expect("the probe waited for the blocked runtime");
        assert!(!status.is_empty());
        released.store(true, Ordering::Release);
        release.send(()).unwrap();
        let ((status, _), after_release) = api
            .recv_timeout(NEVER)
            .expect("no API answer after the release");
        assert!(status.contains("200"), "{status}");
        assert!(
            after_release,
            "the API request was answered while the other runtime was blocked"
        );
        stop.cancel();
        scrapes.block_on(server).unwrap().unwrap();
    }
}
