//! `funnelstream run` (and the engine half of `demo`): the Kafka source on
//! its own thread, the HTTP endpoints on a small tokio runtime, and a clean
//! shutdown on SIGTERM/SIGINT: stop fetching, apply what is in flight,
//! checkpoint, commit, exit 0. A refused checkpoint stops it with exit 1.

use crate::cli::{config_error, init_logging, RunArgs, RunConfig};
use crate::engine::Engine;
use crate::export::http;
use crate::live::LiveState;
use crate::source::{Source, SourceError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

pub fn run(args: &RunArgs) -> i32 {
    let cfg = match args.resolve("0.0.0.0:9490") {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    init_logging(cfg.log_format, &cfg.log_level);
    serve(cfg, None, |_| {})
}

/// Runs the live engine until SIGTERM/SIGINT, or until `stop` is set.
/// `on_listening` is called with the bound address once serving.
pub fn serve(
    cfg: RunConfig,
    stop: Option<Arc<AtomicBool>>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("funnel-http")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("funnelstream: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen on {}: {e}", cfg.listen);
                eprintln!("funnelstream: cannot listen on {}: {e}", cfg.listen);
                return 1;
            }
        };
        let addr = listener.local_addr().unwrap_or(cfg.listen);
        let live = LiveState::new(Engine::new(cfg.engine.clone()));
        let source = match Source::new(live.clone(), cfg.kafka.clone()) {
            Ok(s) => s,
            Err(SourceError::Config(m)) => {
                eprintln!("funnelstream: invalid configuration: {m}");
                return 2;
            }
            Err(e) => {
                eprintln!("funnelstream: {e}");
                return 1;
            }
        };
        let halt = Arc::new(AtomicBool::new(false));
        let src_halt = halt.clone();
        let src = std::thread::Builder::new()
            .name("funnel-poll".into())
            .spawn(move || source.run(&src_halt))
            .expect("spawn poll thread");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let probes = match cfg.probe_listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    info!(%addr, "serving /healthz and /readyz for probes");
                    let app = http::probe_router(live.clone());
                    let shutdown = stopped(rx.clone());
                    Some(tokio::spawn(http::serve_app(
                        l,
                        app,
                        None,
                        Default::default(),
                        shutdown,
                    )))
                }
                Err(e) => {
                    eprintln!("funnelstream: cannot listen on {addr} (probe_listen): {e}");
                    return 1;
                }
            },
            None => None,
        };
        let server = tokio::spawn(http::serve_with(
            listener,
            live.clone(),
            cfg.security.clone(),
            cfg.http.clone(),
            stopped(rx.clone()),
        ));
        info!(%addr, "serving /metrics, /, /healthz, /readyz");
        on_listening(addr);
        wait_for_stop(stop, &live).await;
        let fatal = live.fatal();
        match &fatal {
            Some(m) => error!("stopping: {m}"),
            None => info!("shutdown requested"),
        }
        live.shutting_down.store(true, Ordering::Release);
        halt.store(true, Ordering::Release);
        // The HTTP side stops at once, alongside the source: streams get
        // their final event, other requests a bounded grace period.
        let _ = tx.send(true);
        let _ = tokio::task::spawn_blocking(move || src.join()).await;
        if let Some(p) = probes {
            let _ = p.await;
        }
        if let Some(m) = fatal {
            eprintln!("funnelstream: {m}");
            return 1;
        }
        match server.await {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                error!("http server: {e}");
                1
            }
            Err(_) => 1,
        }
    });
    // A render or snapshot still running on a blocking thread must not hold
    // the exit: the server has already let every connection go.
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

/// Waits for SIGTERM/SIGINT, the `stop` flag, or a fatal engine error.
async fn wait_for_stop(stop: Option<Arc<AtomicBool>>, live: &LiveState) {
    let flag = async {
        loop {
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire)) || live.fatal().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return flag.await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = flag => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = flag => {}
    }
}
