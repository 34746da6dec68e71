//! Diagnostics on stderr, through the `log` facade: every warning, error
//! and note the run has for a person (or a journal), with a level, as a
//! line of text (`ftptrace: warning: ...`) or, with `--log-format json`, a
//! JSON object a log pipeline takes as it is. Lines for the pipeline proper
//! (events, sessions) never come here.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The target of the last line a failed run prints: `ftptrace: <why>`.
pub const EXIT: &str = "exit";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => Self::Error,
            LogLevel::Warn => Self::Warn,
            LogLevel::Info => Self::Info,
            LogLevel::Debug => Self::Debug,
        }
    }
}

struct Stderr {
    format: LogFormat,
}

/// Sends diagnostics at `level` and above to stderr in `format`, from now
/// on. Once per process.
pub fn init(format: LogFormat, level: LogLevel) {
    static LOGGER: std::sync::OnceLock<Stderr> = std::sync::OnceLock::new();
    let logger = LOGGER.get_or_init(|| Stderr { format });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level.into());
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = line(
            self.format,
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        // Nothing to do if stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// One diagnostic line, newline included.
fn line(format: LogFormat, level: Level, target: &str, message: &str) -> String {
    match format {
        LogFormat::Text if target == EXIT => format!("ftptrace: {message}\n"),
        LogFormat::Text => {
            let word = match level {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "note",
                Level::Debug | Level::Trace => "debug",
            };
            format!("ftptrace: {word}: {message}\n")
        }
        LogFormat::Json => {
            let level = match level {
                Level::Error => "error",
                Level::Warn => "warn",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            let object = serde_json::json!({
                "ts": crate::kernel::clock::now().to_string(),
                "level": level,
                "program": "ftptrace",
                "message": message,
            });
            format!("{object}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_say_their_level_in_words() {
        assert_eq!(
            line(
                LogFormat::Text,
                Level::Warn,
                "ftptrace::trace",
                "SIGHUP: gone"
            ),
            "ftptrace: warning: SIGHUP: gone\n"
        );
        assert_eq!(
            line(LogFormat::Text, Level::Info, "x", "a note"),
            "ftptrace: note: a note\n"
        );
        assert_eq!(
            line(LogFormat::Text, Level::Error, EXIT, "missing CAP_BPF"),
            "ftptrace: missing CAP_BPF\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let text = line(LogFormat::Json, Level::Error, EXIT, "a \"quoted\"\nthing");
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["message"], "a \"quoted\"\nthing");
        assert!(value["ts"].as_str().unwrap().ends_with('Z'));
    }
}
