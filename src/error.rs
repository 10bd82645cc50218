//! The one error type of the binary. It knows its exit code (CLI.md:
//! 0 clean shutdown, 2 bad usage or invalid configuration, 1 runtime
//! failure) and how it is told; `main.rs` tells it and exits, nowhere else
//! does.

use crate::config::ConfigError;
use crate::export::server::ServeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line does not parse, or asks for `--help` or
    /// `--version` (clap prints those itself, with its own exit code: 0
    /// for help and version, 2 for bad usage).
    #[error("{0}")]
    CommandLine(clap::Error),
    /// A setting is invalid; the message names the key and the problem.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A setting refused by a component (librdkafka) in its own words.
    #[error("invalid configuration: {0}")]
    Refused(String),
    /// Bad usage other than a setting, e.g. an input file that cannot be
    /// opened.
    #[error("{0}")]
    Usage(String),
    /// A failure at run time.
    #[error("{0}")]
    Runtime(String),
    /// The HTTP side could not start, or failed while serving.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A failure at run time of one command, with its typed cause; told as
    /// `funnelstream COMMAND: cause`.
    #[error("{command}: {source}")]
    Command {
        command: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Events `produce` sent that the broker did not acknowledge (its
    /// summary line gave the counts).
    #[error("{unacknowledged} of {sent} events were not acknowledged")]
    NotAcknowledged { sent: u64, unacknowledged: u64 },
}

impl From<clap::Error> for Error {
    /// A flag or variable with an invalid value is an invalid setting like
    /// any other (exit 2, the key named); anything else clap reports
    /// itself.
    fn from(e: clap::Error) -> Error {
        match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<ConfigError>()) {
            Some(invalid) => Error::Config(invalid.clone()),
            None => Error::CommandLine(e),
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CommandLine(e) => e.exit_code(),
            Error::Config(_) | Error::Refused(_) | Error::Usage(_) => 2,
            Error::Runtime(_)
            | Error::Serve(_)
            | Error::Command { .. }
            | Error::NotAcknowledged { .. } => 1,
        }
    }

    /// Tells the error on stderr (clap's own text for the command line:
    /// help and version on stdout).
    pub fn report(&self) {
        match self {
            Error::CommandLine(e) => {
                let _ = e.print();
            }
            Error::Command { command, source } => eprintln!("funnelstream {command}: {source}"),
            e => eprintln!("funnelstream: {e}"),
        }
    }
}
