//! The `funnelstream` binary: parses the command line, runs the command
//! (`funnelstream::dispatch`) and is the one place that exits, with the code
//! the error knows (CLI.md: 0, 1 or 2).

fn main() {
    let result =
        funnelstream::parse_args(std::env::args_os().collect()).and_then(funnelstream::dispatch);
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    std::process::exit(code);
}
