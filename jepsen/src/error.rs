//! The one error type of `keel-jepsen`.
//!
//! Every fallible function in the library returns [`Result`]. Input errors carry
//! the 1-based line number and the text of the offending line, so that a user can
//! find and fix it; the binary turns any error into exit status 2.

use std::path::PathBuf;

/// keel-jepsen's error enum.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read. The reason is in the message, not a
    /// `source`, so a report of the whole chain says it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A history line that cannot be parsed, or an operation the model cannot use.
    #[error("line {line}: {reason}: {text}")]
    Input {
        /// 1-based line number in the history file.
        line: usize,
        /// The offending line, verbatim.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Anything else that is wrong with the input as a whole (missing data...).
    #[error("{0}")]
    Invalid(String),
    /// The harness could not do its job (start a member, run a command, set up
    /// a namespace): the run says nothing about the database.
    #[error("{0}")]
    Harness(String),
}

impl Error {
    /// An [`Error::Input`] for `line` with `text`.
    pub fn input(line: usize, text: &str, reason: impl Into<String>) -> Self {
        Error::Input {
            line,
            text: text.to_string(),
            reason: reason.into(),
        }
    }
}

/// A harness error from anything printable.
pub fn harness(msg: impl std::fmt::Display) -> Error {
    Error::Harness(msg.to_string())
}

/// keel-jepsen's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
