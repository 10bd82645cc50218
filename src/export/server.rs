//! The engine's HTTP side as one unit: a small tokio runtime of its own,
//! the main listener (metrics, landing page, API, probes) and the optional
//! plain probe listener. The live engine binds it, starts it once the
//! source runs, waits on it for SIGTERM/SIGINT, and stops it.

use crate::export::http::{self, HttpLimits};
use crate::export::security::Security;
use crate::live::LiveState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Why the HTTP side could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (probe_listen): {source}")]
    ProbeListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Failed(#[source] std::io::Error),
    #[error("the HTTP server stopped unexpectedly: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// Where and how the HTTP side serves.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub listen: SocketAddr,
    pub probe_listen: Option<SocketAddr>,
    pub security: Security,
    pub(crate) limits: HttpLimits,
}

pub(crate) struct Server {
    settings: HttpSettings,
    rt: tokio::runtime::Runtime,
    /// Accepts, and serves scrapes and probes: never behind stream writes
    /// or API work, which run on `rt` (`http::serve_split`).
    scrape_rt: tokio::runtime::Runtime,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    main: Option<JoinHandle<std::io::Result<()>>>,
    probes: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts the runtime and binds the main address (not serving yet).
    pub fn bind(settings: HttpSettings) -> Result<Server, ServeError> {
        let listen = settings.listen;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("funnel-http")
            .on_thread_start(yield_to_scrapes)
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let scrape_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("funnel-scrape")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = scrape_rt
            .block_on(TcpListener::bind(listen))
            .map_err(|source| ServeError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(listen);
        Ok(Server {
            settings,
            rt,
            scrape_rt,
            listener: Some(listener),
            addr,
            stop: watch::channel(false).0,
            main: None,
            probes: None,
        })
    }

    /// The bound main address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `live`: binds the probe address if any, then serves both.
    pub fn start(&mut self, live: &Arc<LiveState>) -> Result<(), ServeError> {
        let s = &self.settings;
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Probes, like scrapes, are served by the scrape runtime.
        let _guard = self.scrape_rt.enter();
        if let Some(addr) = s.probe_listen {
            let l = self
                .scrape_rt
                .block_on(TcpListener::bind(addr))
                .map_err(|source| ServeError::ProbeListen { addr, source })?;
            info!(%addr, "serving /healthz and /readyz for probes");
            let app = http::probe_router(live.clone());
            let shutdown = stopped(self.stop.subscribe());
            self.probes = Some(tokio::spawn(http::serve_app(
                l,
                app,
                None,
                Default::default(),
                shutdown,
            )));
        }
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        self.main = Some(self.scrape_rt.spawn(http::serve_split(
            listener,
            live.clone(),
            s.security.clone(),
            s.limits.clone(),
            stopped(self.stop.subscribe()),
            Some(self.rt.handle().clone()),
        )));
        info!(addr = %self.addr, "serving /metrics, /, /healthz, /readyz");
        Ok(())
    }

    /// Blocks until SIGTERM/SIGINT, or until `stop()` holds (polled every
    /// 100 ms).
    pub(crate) fn wait_for_stop(&self, stop: impl Fn() -> bool) {
        self.rt.block_on(wait_for_stop(stop));
    }

    /// Stops accepting: streams get their final event, other requests a
    /// bounded grace period.
    pub(crate) fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the listeners to finish (the main one only when `wait_main`:
    /// not when the engine stopped on a fatal error, which is the error then).
    pub fn finish(mut self, wait_main: bool) -> Result<(), ServeError> {
        let (probes, main) = (self.probes.take(), self.main.take());
        let result = self.rt.block_on(async move {
            if let Some(p) = probes {
                let _ = p.await;
            }
            match main {
                Some(server) if wait_main => match server.await {
                    Ok(r) => r.map_err(ServeError::Failed),
                    Err(e) => Err(ServeError::Stopped(e)),
                },
                _ => Ok(()),
            }
        });
        // A render or snapshot still running on a blocking thread must not
        // hold the exit: the server has already let every connection go.
        self.rt.shutdown_timeout(Duration::from_secs(2));
        self.scrape_rt.shutdown_timeout(Duration::from_secs(1));
        result
    }
}

/// How many nice levels below the rest of the engine the threads of the
/// stream and API runtime run (`funnel-http`: stream clients' writes, the
/// feeds' snapshots, API and board work): when they compete for a core with
/// a scrape's render and write (`funnel-scrape`), the scheduler gives the
/// scrape the larger share (at +10, about 10 to 1), so `/metrics` keeps
/// priority over any number of stream clients. Idle CPU is still theirs.
const OTHERS_NICE: i32 = 10;

/// Sets the calling thread's nice value to the main thread's plus
/// [`OTHERS_NICE`] (Linux gives each thread its own nice value, and a new
/// thread inherits its creator's, hence from the main thread's, not its
/// own; elsewhere, and when refused, nothing changes).
fn yield_to_scrapes() {
    #[cfg(target_os = "linux")]
    {
        use rustix::{process, thread};
        if let Ok(base) = process::getpriority_process(Some(process::getpid())) {
            let _ =
                process::setpriority_process(Some(thread::gettid()), (base + OTHERS_NICE).min(19));
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::{process, thread};

    /// Every thread of a runtime built with `yield_to_scrapes`, blocking
    /// ones (created by a worker) included, runs at the main thread's nice
    /// value plus OTHERS_NICE, once and not twice.
    #[test]
    fn stream_runtime_threads_run_below_the_engine() {
        let base = process::getpriority_process(Some(process::getpid())).unwrap();
        let want = (base + super::OTHERS_NICE).min(19);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(super::yield_to_scrapes)
            .build()
            .unwrap();
        let nice = || process::getpriority_process(Some(thread::gettid())).unwrap();
        let (worker, blocking) = rt.block_on(async move {
            let worker = tokio::spawn(async move { nice() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
            (worker, blocking)
        });
        assert_eq!((worker, blocking), (want, want));
        assert_eq!(nice(), base, "the calling thread is not touched");
    }
}

/// Waits for SIGTERM/SIGINT or `stop()`.
async fn wait_for_stop(stop: impl Fn() -> bool) {
    let flag = async {
        loop {
            if stop() {
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
