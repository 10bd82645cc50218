//! `funnelstream check-config`: validate the settings of `run` (librdkafka
//! checks the Kafka properties) and print the effective settings.

use crate::cli::{effective_settings, RunArgs};
use crate::error::Error;

pub fn run(args: &RunArgs) -> Result<(), Error> {
    let cfg = args.resolve("0.0.0.0:9490")?;
    crate::source::client::validate(&cfg.kafka).map_err(|e| Error::Refused(e.to_string()))?;
    print!("{}", effective_settings(&cfg));
    Ok(())
}
