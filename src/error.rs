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
    /// A failure already told (logged, or summed up by the command): only
    /// the exit code is left.
    #[error("exit status {0}")]
    Reported(i32),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Refused(_) | Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
            Error::Reported(code) => *code,
        }
    }

    /// Prints the error on stderr, unless it was already told.
    pub fn report(&self) {
        if !matches!(self, Error::Reported(_)) {
            eprintln!("funnelstream: {self}");
        }
    }

    /// The result of a command that still returns its exit code.
    pub fn from_exit_code(code: i32) -> Result<(), Error> {
        match code {
            0 => Ok(()),
            c => Err(Error::Reported(c)),
        }
    }
}

/// Prints a configuration error the way every command does; exit code 2
/// (for `tail`, which returns exit codes).
pub fn config_error(e: &ConfigError) -> i32 {
    let e = Error::Config(e.clone());
    e.report();
    e.exit_code()
}
