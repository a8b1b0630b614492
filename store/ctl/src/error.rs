//! keelctl's one error type: a message and etcdctl's exit code for it.
//!
//! etcdctl prints `Error: <message>` on stderr and exits with one of its
//! codes (ExitError 1, ExitBadConnection 2, ExitInvalidInput 3,
//! ExitBadFeature 4, ExitInterrupted 5, ExitBadArgs 128; etcdctl's ExitIO 6 is unused). A failed
//! call's message is what clientv3 shows: etcd's own errors by their text
//! (`etcdserver: ...`), other gRPC failures as Go's `rpc error: code = ...
//! desc = ...`, and a call that ran out of time as `context deadline
//! exceeded`.

use tonic::Code;

/// etcdctl's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Error,
    BadConnection,
    InvalidInput,
    BadFeature,
    Interrupted,
    BadArgs,
    /// A Go runtime panic in etcdctl (exit status 2), reproduced.
    Panic,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Error => 1,
            ExitCode::BadConnection | ExitCode::Panic => 2,
            ExitCode::InvalidInput => 3,
            ExitCode::BadFeature => 4,
            ExitCode::Interrupted => 5,
            ExitCode::BadArgs => 128,
        }
    }
}

/// An error to report and exit with.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CtlError {
    pub code: ExitCode,
    pub msg: String,
    /// Print `msg` as it is, without etcdctl's `Error: ` prefix.
    pub raw: bool,
}

impl CtlError {
    pub fn new(code: ExitCode, msg: impl Into<String>) -> CtlError {
        CtlError {
            code,
            msg: msg.into(),
            raw: false,
        }
    }

    pub fn raw(code: ExitCode, msg: impl Into<String>) -> CtlError {
        CtlError {
            code,
            msg: msg.into(),
            raw: true,
        }
    }

    /// Exit with `code` and print nothing more (etcdctl's `os.Exit`).
    pub fn exit(code: ExitCode) -> CtlError {
        CtlError::raw(code, "")
    }

    /// ExitBadArgs (128).
    pub fn bad_args(msg: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::BadArgs, msg)
    }

    /// ExitError (1).
    pub fn error(msg: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::Error, msg)
    }

    /// The call's deadline (`--command-timeout`) passed.
    pub fn deadline() -> CtlError {
        CtlError::error("context deadline exceeded")
    }

    /// What etcdctl prints on stderr for this error.
    pub fn text(&self) -> String {
        if self.raw && self.msg.is_empty() {
            String::new()
        } else if self.raw {
            format!("{}\n", self.msg)
        } else {
            format!("Error: {}\n", self.msg)
        }
    }
}

/// Go's name of a gRPC code.
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The text clientv3 gives a failed call's status.
pub fn status_text(s: &tonic::Status) -> String {
    let m = s.message();
    if m.starts_with("etcdserver: ") || m.starts_with("mvcc: ") || m.starts_with("auth: ") {
        m.to_string()
    } else if s.code() == Code::DeadlineExceeded {
        "context deadline exceeded".to_string()
    } else {
        format!("rpc error: code = {} desc = {m}", code_name(s.code()))
    }
}

impl From<keel_client::Error> for CtlError {
    fn from(e: keel_client::Error) -> CtlError {
        match &e {
            keel_client::Error::Status(s) => CtlError::error(status_text(s)),
            // etcdctl authenticates when it makes its client: a failure is
            // ExitBadConnection.
            keel_client::Error::Authenticate(s) => {
                CtlError::new(ExitCode::BadConnection, status_text(s))
            }
            _ => CtlError::new(ExitCode::Error, e.to_string()),
        }
    }
}

impl From<tonic::Status> for CtlError {
    fn from(s: tonic::Status) -> CtlError {
        CtlError::error(status_text(&s))
    }
}

/// keelctl's result alias.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;
