//! The `funnelstream` binary: parses the command line, runs the command
//! (`funnelstream::cmd`) and is the one place that exits, with the code the
//! error knows (CLI.md: 0, 1 or 2).

use clap::Parser;
use funnelstream::{Cli, ConfigError, Error};

fn main() {
    let code = match Cli::try_parse() {
        // A flag or variable with an invalid value is an invalid setting
        // like any other; --help and --version print and exit 0, other bad
        // usage exits 2.
        Err(e) => match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<ConfigError>())
        {
            Some(invalid) => {
                let e = Error::Config(invalid.clone());
                e.report();
                e.exit_code()
            }
            None => {
                let _ = e.print();
                e.exit_code()
            }
        },
        Ok(cli) => match funnelstream::dispatch(cli) {
            Ok(()) => 0,
            Err(e) => {
                e.report();
                e.exit_code()
            }
        },
    };
    std::process::exit(code);
}
