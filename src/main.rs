//! The `funnelstream` binary: parses the command line, runs the command
//! (`funnelstream::dispatch`) and is the one place that exits, with the code
//! the error knows (CLI.md: 0, 1 or 2).

use clap::Parser;
use funnelstream::{Cli, Error};

fn main() {
    let result = Cli::try_parse()
        .map_err(Error::from)
        .and_then(funnelstream::dispatch);
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    std::process::exit(code);
}
