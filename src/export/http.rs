//! The HTTP endpoints: `/metrics` (Prometheus text, OpenMetrics when the
//! scraper's `Accept` asks for it, gzip when `Accept-Encoding` allows),
//! `/` (landing page with the headline KPIs), `/healthz` (process alive) and
//! `/readyz` (assigned partitions caught up, brokers reachable, not
//! shutting down).

use crate::aggregate::{Totals, WindowSums};
use crate::export::api::{ConnectionCloser, StreamHub};
use crate::export::prometheus::{write_value, Format};
use crate::export::security::{require_auth, BasicAuth, Security};
use crate::kpi::{window_value, Value};
use crate::live::LiveState;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
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
    pub header_read_timeout: Duration,
    /// A write to a client that makes no progress for this long closes the
    /// connection (a client that never reads).
    pub write_timeout: Duration,
    /// Longest time to produce a response (streams excepted): 503 after it.
    pub request_timeout: Duration,
    /// `/api/v1/kpis` and `/` requests computed at once; more get 503, so
    /// that API work never queues up ahead of `/metrics`.
    pub max_api_requests: usize,
    /// Largest request body accepted (every endpoint is a GET).
    pub max_body_bytes: usize,
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

pub fn router(
    live: Arc<LiveState>,
    auth: Option<Arc<BasicAuth>>,
    hub: Arc<StreamHub>,
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
        .route("/", get(landing))
        .route("/api/v1/kpis", get(crate::export::api::kpis))
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
pub fn probe_router(live: Arc<LiveState>) -> Router {
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
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    live: Arc<LiveState>,
    security: Security,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = StreamHub::new(live.clone(), limits.streams.clone());
    let app = router(live, security.auth.clone(), hub.clone(), &limits);
    let shutdown = async move {
        shutdown.await;
        hub.stop();
    };
    serve_app(listener, app, security.tls, limits, shutdown).await
}

/// The accept loop under every listener of the engine: HTTP/1.1 (hyper),
/// optional TLS, header-read and write timeouts, and a bounded graceful
/// shutdown.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let close_all = CancellationToken::new();
    let stopping = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept:
                    // keep serving the others.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let close = close_all.child_token();
        let watcher = graceful.watcher();
        let (app, tls, limits) = (app.clone(), tls.clone(), limits.clone());
        let stopping = stopping.clone();
        tasks.spawn(async move {
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
        });
    }
    drop(listener);
    stopping.cancel();
    tasks.close();
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            grace_s = limits.grace.as_secs_f64(),
            "grace period over: closing the remaining connections"
        );
    }
    close_all.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    Ok(())
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

/// Sums of every key, for one window: the engine-wide headline.
fn headline(live: &LiveState) -> Vec<(String, Totals, WindowSums)> {
    let (keys, _, _) = live.copy_partitions();
    let specs = &live.engine.config.windows;
    let mut total = Totals::default();
    let mut sums = vec![WindowSums::default(); specs.len()];
    for key in keys.iter() {
        total.add(key.totals);
        for (a, b) in sums.iter_mut().zip(key.windows) {
            a.add(b);
        }
    }
    specs
        .iter()
        .zip(sums)
        .map(|(s, mut w)| {
            w.finish();
            (s.label.clone(), total.clone(), w)
        })
        .collect()
}

const HEADLINE: [(&str, &str); 10] = [
    ("funnel_spend", "Spend"),
    ("funnel_ctr_ratio", "CTR"),
    ("funnel_cpl", "Cost per lead"),
    ("funnel_win_ratio", "Win rate"),
    ("funnel_cac", "CAC"),
    ("funnel_roas_ratio", "ROAS"),
    ("funnel_sales_cycle_mean_seconds", "Sales cycle (days)"),
    ("funnel_pipeline_velocity", "Pipeline velocity / day"),
    ("funnel_nrr_ratio", "NRR"),
    ("funnel_customer_churn_ratio", "Customer churn"),
];

fn cell(v: Option<Value>, name: &str) -> String {
    match v {
        None => "&ndash;".into(),
        Some(v) => {
            let x = v.as_f64();
            if name.ends_with("_ratio") {
                format!("{:.1}%", x * 100.0)
            } else if name.ends_with("_seconds") {
                format!("{:.1}", x / 86_400.0)
            } else {
                let mut s = String::new();
                write_value(&mut s, Value::Float((x * 100.0).round() / 100.0));
                s
            }
        }
    }
}

async fn landing(State(live): State<Arc<LiveState>>) -> Html<String> {
    let l = live.clone();
    let rows = tokio::task::spawn_blocking(move || headline(&l))
        .await
        .unwrap_or_default();
    let ready = match live.readiness() {
        Ok(()) => "ready".to_string(),
        Err(e) => format!("not ready: {e}"),
    };
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>funnelstream</title>\
         <style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f4f4f4}\
         td:first-child,th:first-child{text-align:left}</style></head><body>\
         <h1>funnelstream</h1><p>Exact rolling-window marketing and sales KPIs from Kafka, \
         for Prometheus. Endpoints: <a href=\"/metrics\">/metrics</a> \
         <a href=\"/healthz\">/healthz</a> <a href=\"/readyz\">/readyz</a>.</p>",
    );
    html.push_str(&format!(
        "<p>Version {} &middot; {}</p><h2>Headline KPIs, all channels and campaigns</h2><table><tr><th>KPI</th>",
        live.version,
        html_escape(&ready)
    ));
    for (label, _, _) in &rows {
        html.push_str(&format!("<th>{}</th>", html_escape(label)));
    }
    html.push_str("</tr>");
    for (name, title) in HEADLINE {
        html.push_str(&format!("<tr><td>{title}</td>"));
        for (_, t, w) in &rows {
            html.push_str(&format!(
                "<td>{}</td>",
                cell(window_value(name, t, w), name)
            ));
        }
        html.push_str("</tr>");
    }
    if let Some((_, t, _)) = rows.first() {
        let mut mrr = String::new();
        write_value(&mut mrr, Value::Money(t.mrr));
        html.push_str(&format!(
            "</table><p>Current MRR {mrr} &middot; customers {} &middot; open pipeline {}</p>",
            t.customers,
            {
                let mut s = String::new();
                write_value(&mut s, Value::Money(t.open_pipeline));
                s
            }
        ));
    } else {
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Html(html)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
