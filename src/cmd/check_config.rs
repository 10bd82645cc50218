//! `funnelstream check-config`: validate the settings of `run` (librdkafka
//! checks the Kafka properties) and print the effective settings.

use crate::cli::{defaults, effective_settings, RunArgs};
use crate::error::Error;

pub fn run(args: &RunArgs) -> Result<(), Error> {
    let cfg = args.resolve(defaults::LISTEN)?;
    crate::source::client::validate(&cfg.kafka).map_err(|e| Error::Refused(e.to_string()))?;
    print!("{}", effective_settings(&cfg)?);
    Ok(())
}
