//! The `funnelstream` binary: parses the command line, runs the command
//! (`funnelstream::cmd`) and is the one place that exits, with the code the
//! error knows (CLI.md: 0, 1 or 2).

use clap::Parser;
use funnelstream::Cli;

fn main() {
    let code = match Cli::try_parse() {
        // --help and --version print and exit 0, bad usage exits 2.
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
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
