//! `funnelstream check-config`: validate the settings of `run` (librdkafka
//! checks the Kafka properties, in `RunArgs::resolve`, as for `run`) and
//! print the effective settings.

use crate::cli::{defaults, effective_settings, RunArgs};
use crate::error::Error;

pub fn run(args: &RunArgs) -> Result<(), Error> {
    let cfg = args.resolve(defaults::LISTEN)?;
    print!("{}", effective_settings(&cfg)?);
    Ok(())
}
