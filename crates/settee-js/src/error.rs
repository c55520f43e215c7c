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
}

impl Error {
    /// CouchDB-style name of this error: `compilation_error`, `timeout`, or the kind of
    /// failure (`js_error`, `os_process_error`).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Compile { .. } => "compilation_error",
            Error::Thrown { .. } | Error::BadResult { .. } => "js_error",
            Error::BuiltinReduce { .. } => "builtin_reduce_error",
            Error::Timeout { .. } => "timeout",
            Error::OutOfMemory { .. } | Error::Engine { .. } => "os_process_error",
        }
    }

    /// The message without the function's name.
    pub fn reason(&self) -> String {
        match self {
            Error::Compile { reason, .. }
            | Error::Thrown { reason, .. }
            | Error::BadResult { reason, .. }
            | Error::BuiltinReduce { reason, .. }
            | Error::Engine { reason } => reason.clone(),
            Error::Timeout { limit, .. } => format!("stopped after running for {limit:?}"),
            Error::OutOfMemory { limit, .. } => format!("out of memory ({limit} bytes)"),
        }
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
