//! Log set-up: `VAULT_LOG_LEVEL`, `VAULT_JSON_LOG`. Every line goes to stderr, so the app's stdout
//! stays the app's (Bank-Vaults writes info lines to stdout).
//!
//! The lines are tracing-subscriber's `fmt` layer's (text or JSON), on a subscriber of our own
//! that only filters by level: vault-env makes no spans, and the `Registry` that
//! `tracing_subscriber::fmt()` builds on sets up per-thread span storage at start, a fifth of
//! the page faults of a start with nothing to resolve (docs/benchmarks.md).

use crate::config::{Config, LogLevel};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Subscriber;
use tracing::{Event, Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{DefaultFields, Format};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

pub fn init(config: &Config) {
    let level = match config.log_level {
        LogLevel::Trace => Level::TRACE,
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    let layer = lines(std::io::stderr);
    let result = match config.json_log {
        true => tracing::subscriber::set_global_default(Levels(level).with(layer.json().flatten_event(true))),
        false => tracing::subscriber::set_global_default(Levels(level).with(layer)),
    };
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = result;
}

/// vault-env's log lines, written to `writer`. A line that cannot be written (stderr a closed
/// pipe, a full disk) is lost, not reported on stderr with `eprintln!`, which panics there:
/// vault-env and its app go on.
fn lines<S, W>(writer: W) -> tracing_subscriber::fmt::Layer<S, DefaultFields, Format, W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer().with_writer(writer).with_target(false).with_ansi(false).log_internal_errors(false)
}

/// Runs `f` with this thread's log lines (INFO and above, as text) written to a buffer, and
/// returns them beside its result: for tests of what is logged.
#[cfg(test)]
pub fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&buffer);
    let result = tracing::subscriber::with_default(Levels(Level::INFO).with(lines(move || Sink(Arc::clone(&writer)))), f);
    let text = String::from_utf8_lossy(&buffer.lock().expect("the log buffer")).into_owned();
    (result, text)
}

/// Events at `self.0` and above; no spans (a library's are not enabled, so none is ever made).
struct Levels(Level);

impl Subscriber for Levels {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !metadata.is_span() && *metadata.level() <= self.0
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.0.into())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// What the `fmt` layer asks of the subscriber under it: the spans around an event (none).
impl<'a> LookupSpan<'a> for Levels {
    type Data = tracing_subscriber::registry::Data<'a>;

    fn span_data(&'a self, _: &Id) -> Option<Self::Data> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_enable_events_at_their_level_and_above_and_no_spans() {
        let info = Levels(Level::INFO);
        tracing::subscriber::with_default(info, || {
            assert!(tracing::enabled!(Level::WARN));
            assert!(tracing::enabled!(Level::INFO));
            assert!(!tracing::enabled!(Level::DEBUG));
            assert!(tracing::span!(Level::ERROR, "a library's span").is_disabled());
        });
    }
}
