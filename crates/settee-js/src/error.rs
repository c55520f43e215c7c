//! Why running a design document function failed, and how `validate_doc_update` refuses a
//! write.

use std::time::Duration;

use serde_json::Value;

/// A design document function could not be compiled or run. Every variant names the
/// function (`origin`: the design document id and the member path, as given to
/// [`crate::Sandbox::compile`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source is not JavaScript or does not evaluate to a function.
    #[error("compilation_error: {origin}: {reason}")]
    Compile {
        /// The function.
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// The function threw (or a built-in reduce got values it cannot reduce).
    #[error("{origin} failed: {reason}")]
    Thrown {
        /// The function.
        origin: String,
        /// The thrown value: `Name: message` for an `Error`, else its JSON.
        reason: String,
    },
    /// The call ran past the time limit and was interrupted.
    #[error("{origin} was stopped after running for {limit:?}")]
    Timeout {
        /// The function.
        origin: String,
        /// The limit it reached.
        limit: Duration,
    },
    /// A built-in reduce got a value it cannot reduce (CouchDB answers this inside the
    /// row's value, not as a failed request).
    #[error("builtin_reduce_error: {reason}")]
    BuiltinReduce {
        /// The built-in (`_sum`).
        origin: String,
        /// What it needs.
        reason: String,
        /// The value it could not use.
        caused_by: Value,
    },
    /// A built-in reduce's arithmetic failed: a `_sum` or `_stats` past the largest double
    /// (CouchDB's `badarith`, a failed request).
    #[error("badarith: {reason}")]
    Arithmetic {
        /// The built-in (`_sum`).
        origin: String,
        /// What overflowed.
        reason: String,
    },
    /// The sandbox ran out of its memory allowance.
    #[error("{origin} ran out of memory ({limit} bytes)")]
    OutOfMemory {
        /// The function.
        origin: String,
        /// The sandbox's limit in bytes.
        limit: usize,
    },
    /// The function returned something that is not what its kind must return.
    #[error("{origin} returned an unusable result: {reason}")]
    BadResult {
        /// The function.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The engine itself failed (could not start, could not allocate).
    #[error("JavaScript engine failure: {reason}")]
    Engine {
        /// The engine's message.
        reason: String,
    },
    /// A value leaving the sandbox (an emitted row, a reduction, a thrown verdict, a logged
    /// value) is nested too deeply to be turned into JSON safely.
    #[error("{origin}: {reason}")]
    TooDeep {
        /// The function.
        origin: String,
        /// What was refused.
        reason: String,
    },
    /// A worker process did not answer within the time limit and was killed (a regular
    /// expression that backtracks for hours is stopped this way).
    #[error("the JavaScript worker was killed after {limit:?} without an answer")]
    WorkerTimeout {
        /// The limit it reached.
        limit: Duration,
    },
    /// A worker process died (stack overflow, out of address space, killed) or broke the
    /// protocol.
    #[error("the JavaScript worker failed: {reason}")]
    WorkerFailed {
        /// How it ended (exit status or signal), or what it sent.
        reason: String,
    },
    /// No worker process became free within the pool's wait.
    #[error("all {workers} JavaScript workers stayed busy for {waited:?}")]
    Busy {
        /// The pool's size.
        workers: usize,
        /// How long the call waited.
        waited: Duration,
    },
    /// The caller cancelled the call (its client went away); its worker was killed.
    #[error("the JavaScript call was cancelled")]
    Cancelled,
}

impl Error {
    /// CouchDB-style name of this error: `compilation_error`, `timeout`, or the kind of
    /// failure (`js_error`, `os_process_error`).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Compile { .. } => "compilation_error",
            Error::Thrown { .. } | Error::BadResult { .. } => "js_error",
            Error::BuiltinReduce { .. } => "builtin_reduce_error",
            Error::Arithmetic { .. } => "badarith",
            Error::Timeout { .. } => "timeout",
            Error::OutOfMemory { .. }
            | Error::Engine { .. }
            | Error::TooDeep { .. }
            | Error::WorkerTimeout { .. }
            | Error::WorkerFailed { .. } => "os_process_error",
            Error::Busy { .. } => "service_unavailable",
            Error::Cancelled => "cancelled",
        }
    }

    /// The message without the function's name.
    pub fn reason(&self) -> String {
        match self {
            Error::Compile { reason, .. }
            | Error::Thrown { reason, .. }
            | Error::BadResult { reason, .. }
            | Error::BuiltinReduce { reason, .. }
            | Error::Arithmetic { reason, .. }
            | Error::Engine { reason }
            | Error::TooDeep { reason, .. }
            | Error::WorkerFailed { reason } => reason.clone(),
            Error::Timeout { limit, .. } | Error::WorkerTimeout { limit } => {
                format!("stopped after running for {limit:?}")
            }
            Error::OutOfMemory { limit, .. } => format!("out of memory ({limit} bytes)"),
            Error::Busy { .. } | Error::Cancelled => self.to_string(),
        }
    }

    /// Whether the failure is the process's rather than one document's: the call ran out
    /// of time or memory, produced a value that cannot leave the sandbox, or its worker
    /// died. A view fails as a whole on these (CouchDB's `os_process_error`), where a
    /// function that merely throws on a document only leaves that document out.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Error::Thrown { .. } | Error::BadResult { .. } | Error::BuiltinReduce { .. }
        )
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why `validate_doc_update` refused a write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The function threw `{forbidden: reason}`: HTTP 403 `forbidden`.
    #[error("forbidden: {0}")]
    Forbidden(Value),
    /// The function threw `{unauthorized: reason}`: HTTP 401 `unauthorized`.
    #[error("unauthorized: {0}")]
    Unauthorized(Value),
    /// The function threw something that is neither an `Error` nor a `{forbidden}` or
    /// `{unauthorized}` object (a string, another object): CouchDB's `unknown_error`. The
    /// value is the string, or the first member's value of an object.
    #[error("unknown_error: {0}")]
    Other(Value),
    /// The function threw an `Error` (a bug in it, such as a `TypeError`), or could not run.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl Rejection {
    /// The verdict for the JSON text of a value a validation function threw (not an
    /// `Error`): `{forbidden}`, `{unauthorized}`, or anything else.
    pub(crate) fn from_thrown(thrown: &str) -> Rejection {
        let value: Value =
            serde_json::from_str(thrown).unwrap_or_else(|_| Value::String(thrown.to_owned()));
        match value {
            Value::Object(mut m) if m.len() == 1 && m.contains_key("forbidden") => {
                Rejection::Forbidden(m.remove("forbidden").unwrap_or_default())
            }
            Value::Object(mut m) if m.len() == 1 && m.contains_key("unauthorized") => {
                Rejection::Unauthorized(m.remove("unauthorized").unwrap_or_default())
            }
            Value::Object(m) => {
                Rejection::Other(m.into_iter().next().map(|(_, v)| v).unwrap_or_default())
            }
            other => Rejection::Other(other),
        }
    }
}
