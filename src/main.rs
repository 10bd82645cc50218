//! The `funnelstream` binary: a thin shell over the library (see `lib.rs`).

fn main() {
    std::process::exit(funnelstream::cli::main());
}
