//! Log set-up. Logs carry technical events only (ids, counts, timings, errors): message text,
//! file names, channel purposes and tokens are held in types that cannot print them, and the
//! canary tests prove none reaches a log line at any level.
//!
//! The level is a tracing filter (`info`, `threaddesk=debug,warn`, `trace`) taken from the
//! `THREADDESK_LOG` environment variable, else from the config file.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable that sets the log filter.
pub const LOG_ENV: &str = "THREADDESK_LOG";

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log filter {filter:?} (set {LOG_ENV} or log_level to e.g. `info` or `threaddesk=debug,warn`): {reason}"
)]
pub struct LogFilterError {
    pub filter: String,
    pub reason: String,
}

/// Libraries whose `trace` level dumps wire data: `tungstenite` logs every WebSocket frame
/// payload (Mattermost's `posted` events carry message text) and the whole client handshake
/// request (with the `Authorization: Bearer` token). Found by the canary test
/// (`tests/privacy_logs.rs`); they are capped at `debug`, whose lines carry no payload.
const WIRE_DUMPERS: &[&str] = &["tungstenite", "tokio_tungstenite"];

/// Build the filter: `THREADDESK_LOG` wins over the configured level. Whenever the filter
/// enables `trace` anywhere, the [`WIRE_DUMPERS`] are capped at `debug`, so that no level
/// (not even `trace`, not even `tungstenite=trace`) can log message text or tokens.
pub fn filter(configured: &str) -> Result<EnvFilter, LogFilterError> {
    let chosen = std::env::var(LOG_ENV).unwrap_or_else(|_| configured.to_owned());
    let err = |reason: String| LogFilterError {
        filter: chosen.clone(),
        reason,
    };
    let mut filter = EnvFilter::try_new(&chosen).map_err(|e| err(e.to_string()))?;
    let hint =
        <EnvFilter as tracing_subscriber::Layer<tracing_subscriber::Registry>>::max_level_hint(
            &filter,
        );
    if hint.is_none_or(|max| max >= tracing_subscriber::filter::LevelFilter::TRACE) {
        for target in WIRE_DUMPERS {
            let cap = format!("{target}=debug")
                .parse()
                .map_err(|e: tracing_subscriber::filter::ParseError| err(e.to_string()))?;
            filter = filter.add_directive(cap);
        }
    }
    Ok(filter)
}

/// Install the global subscriber writing to stderr. Also replaces the panic hook so that a
/// panic payload (which could quote data) is logged as a technical event only.
pub fn init(configured: &str) -> Result<(), LogFilterError> {
    let filter = filter(configured)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
    install_panic_hook();
    Ok(())
}

/// Panics are reported with their location only, never their message.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (message withheld: it may quote user data)");
        let _ = writeln!(
            std::io::stderr(),
            "threaddesk: internal error at {location} (details withheld)"
        );
    }));
}

/// A writer that keeps every log line in memory: the canary tests install it at `trace` level.
#[derive(Clone, Default)]
pub struct CaptureWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl CaptureWriter {
    #[must_use]
    pub fn contents(&self) -> String {
        let buf = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CaptureWriter {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_caps_the_wire_dumping_libraries() {
        if std::env::var(LOG_ENV).is_ok() {
            return;
        }
        for f in ["trace", "warn,threaddesk=trace", "tungstenite=trace"] {
            let s = filter(f).unwrap().to_string();
            assert!(s.contains("tungstenite=debug"), "{f}: {s}");
            assert!(!s.contains("tungstenite=trace"), "{f}: {s}");
        }
        let s = filter("info").unwrap().to_string();
        assert!(!s.contains("tungstenite"), "{s}");
    }

    #[test]
    fn bad_filter_is_a_clear_error() {
        // An EnvFilter rejects unbalanced directives.
        let err = EnvFilter::try_new("threaddesk=[").err();
        assert!(err.is_some());
        if std::env::var(LOG_ENV).is_err() {
            let e = filter("threaddesk=[").unwrap_err();
            assert!(e.to_string().contains(LOG_ENV));
        }
    }
}
