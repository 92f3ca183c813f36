//! Log set-up: `VAULT_LOG_LEVEL`, `VAULT_JSON_LOG`. Every line goes to stderr, so the app's stdout
//! stays the app's (Bank-Vaults writes info lines to stdout).

use crate::config::{Config, LogLevel};
use tracing::Level;

pub fn init(config: &Config) {
    let level = match config.log_level {
        LogLevel::Trace => Level::TRACE,
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    // A line that cannot be written (stderr a closed pipe, a full disk) is lost, not reported on
    // stderr with `eprintln!`, which panics there: vault-env and its app go on.
    let builder =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).with_ansi(false).log_internal_errors(false);
    let result = if config.json_log { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = result;
}
