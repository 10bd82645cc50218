//! The HTTP endpoints: `/metrics` (Prometheus text, OpenMetrics when the
//! scraper's `Accept` asks for it, gzip when `Accept-Encoding` allows),
//! `/` (landing page with the headline KPIs), `/healthz` (process alive) and
//! `/readyz` (assigned partitions caught up, brokers reachable, not
//! shutting down).

use crate::aggregate::{Totals, WindowSums};
use crate::export::prometheus::{for_each_key, write_value, Format};
use crate::export::security::{require_auth, BasicAuth, Security};
use crate::kpi::{window_value, Value};
use crate::live::LiveState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

pub fn router(live: Arc<LiveState>, auth: Option<Arc<BasicAuth>>) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(landing))
        .route("/api/v1/kpis", get(crate::export::api::kpis))
        .route("/api/v1/kpis/stream", get(crate::export::api::stream))
        .with_state(live);
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
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<LiveState>,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(live, security.auth.clone());
    match security.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
            axum_server::from_tcp_rustls(listener.into_std()?, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
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
    live.with_partitions(|parts, now| {
        let specs = live.engine.config.windows.clone();
        let mut total = Totals::default();
        let mut sums = vec![WindowSums::default(); specs.len()];
        let aggs: Vec<_> = parts.iter().map(|p| &p.agg).collect();
        for_each_key(&aggs, now, |_, _, t, _, ws| {
            total.add(t);
            for (a, b) in sums.iter_mut().zip(ws) {
                a.add(b);
            }
        });
        specs
            .iter()
            .zip(sums)
            .map(|(s, mut w)| {
                w.finish();
                (s.label.clone(), total.clone(), w)
            })
            .collect()
    })
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
