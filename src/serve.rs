//! The live engine, shared by `run` and `demo`: the Kafka source on its own
//! thread, the HTTP side (`export::server`) on its own runtime, and a clean
//! shutdown on SIGTERM/SIGINT: stop fetching, apply what is in flight,
//! checkpoint, commit, exit 0. A refused checkpoint stops it with exit 1.

use crate::cli::RunConfig;
use crate::engine::Engine;
use crate::error::Error;
use crate::export::server::{HttpSettings, Server};
use crate::live::LiveState;
use crate::source::{Source, SourceError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{error, info};

/// Runs the live engine until SIGTERM/SIGINT, or until `stop` is set.
/// `on_listening` is called with the bound address once serving.
pub fn serve(
    cfg: RunConfig,
    stop: Option<Arc<AtomicBool>>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), Error> {
    let mut server = Server::bind(HttpSettings {
        listen: cfg.listen,
        probe_listen: cfg.probe_listen,
        security: cfg.security.clone(),
        limits: cfg.http.clone(),
    })?;
    let live = LiveState::new(Engine::new(cfg.engine.clone()));
    let source = Source::new(live.clone(), cfg.kafka.clone()).map_err(|e| match e {
        SourceError::Config(m) => Error::Refused(m),
        e => Error::Runtime(e.to_string()),
    })?;
    let halt = Arc::new(AtomicBool::new(false));
    let src_halt = halt.clone();
    let src = std::thread::Builder::new()
        .name("funnel-poll".into())
        .spawn(move || source.run(&src_halt))
        .expect("spawn poll thread");
    server.start(&live)?;
    on_listening(server.addr());
    server.wait_for_stop(|| {
        stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire)) || live.fatal().is_some()
    });
    let fatal = live.fatal();
    match &fatal {
        Some(m) => error!("stopping: {m}"),
        None => info!("shutdown requested"),
    }
    live.shutting_down.store(true, Ordering::Release);
    halt.store(true, Ordering::Release);
    // The HTTP side stops at once, alongside the source.
    server.begin_shutdown();
    let _ = src.join();
    let served = server.finish(fatal.is_none());
    match fatal {
        Some(m) => Err(Error::Runtime(m)),
        None => Ok(served?),
    }
}
