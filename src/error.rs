//! The one error type of the commands. It knows its exit code (CLI.md:
//! 0 clean shutdown, 2 bad usage or invalid configuration, 1 runtime
//! failure); `main.rs` prints it and exits, nowhere else does.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A failure already told (logged, or summed up by the command): only
    /// the exit code is left.
    #[error("exit status {0}")]
    Reported(i32),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Refused(_) | Error::Usage(_) => 2,
            Error::Runtime(_) | Error::Command { .. } | Error::NotAcknowledged { .. } => 1,
            Error::Reported(code) => *code,
        }
    }

    /// Prints the error on stderr, unless it was already told.
    pub fn report(&self) {
        match self {
            Error::Reported(_) => {}
            Error::Command { command, source } => eprintln!("funnelstream {command}: {source}"),
            e => eprintln!("funnelstream: {e}"),
        }
    }
}
