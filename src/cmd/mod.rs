//! The commands of CLI.md, one file each (`demo` keeps its stream
//! generator in `crate::demo`, `tail` its terminal in `crate::tail`). Each
//! returns `Result<(), Error>`; `main.rs` turns the error into the message
//! and the exit code.

mod check_config;
mod produce;
mod replay;
mod run;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs one parsed command line; an invalid setting is told with where
/// it was given (flag, variable or file).
pub fn dispatch(cli: Cli) -> Result<(), Error> {
    let given = cli.given;
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Produce(args) => produce::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Tail(args) => crate::tail::run(&args).map_err(Error::from),
        Command::CheckConfig(args) => check_config::run(&args),
    };
    result.map_err(|e| match e {
        Error::Config(c) => Error::Config(given.tell(c)),
        e => e,
    })
}
