//! `funnelstream run`: the live engine on the resolved settings.

use crate::cli::{defaults, RunArgs};
use crate::error::Error;
use crate::logging::init_logging;

pub fn run(args: &RunArgs) -> Result<(), Error> {
    let cfg = args.resolve(defaults::LISTEN)?;
    init_logging(cfg.log_format, &cfg.log_level);
    crate::serve::serve(cfg, None, |_| {})
}
