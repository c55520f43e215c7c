//! What the parent and a worker say to each other, as JSON in frames (`frame.rs`).
//!
//! The parent sends one request per frame: `init` once, then `check`, `map`, `filter`,
//! `validate` or `reduce`. The worker answers `map` and `filter` with one frame per
//! document, in order, and the others with one frame. An answer frame is
//! `{"outcome": {"ok": ...} | {"error": ...} | {"rejected": ...}, "log": [...]}`; a frame
//! with `"stop": true` ends the answer early (the function did not compile, or a document
//! failed in a way that fails the whole call). Documents travel as JSON text the worker
//! hands to QuickJS without parsing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Rejection};

/// Which QuickJS runtime a function runs in: one per database, design document and
/// revision, so that nothing a function leaves in its globals reaches another design
/// document's functions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The database (its name and whatever else tells its incarnations apart).
    pub db: String,
    /// The design document's id.
    pub ddoc: String,
    /// The design document's revision.
    pub rev: String,
}

impl Scope {
    /// The scope of design document `ddoc` at `rev` in database `db`.
    pub fn new(db: impl Into<String>, ddoc: impl Into<String>, rev: impl Into<String>) -> Scope {
        Scope {
            db: db.into(),
            ddoc: ddoc.into(),
            rev: rev.into(),
        }
    }
}

/// A design document function as the worker compiles it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// The design document id and member path, for errors (`_design/app views.v.map`).
    pub origin: String,
    /// The function's source.
    pub source: String,
    /// What CommonJS `require` loads from (`null`: nothing).
    pub modules: Value,
}

impl Function {
    /// A function; `modules` is kept only when the source mentions `require` (the
    /// sandbox ignores it otherwise, and a design document can be large).
    pub fn new(origin: impl Into<String>, source: impl Into<String>, modules: &Value) -> Function {
        let source = source.into();
        let modules = if source.contains("require") {
            modules.clone()
        } else {
            Value::Null
        };
        Function {
            origin: origin.into(),
            source,
            modules,
        }
    }
}

/// What a worker is told once, before any request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// QuickJS's memory limit for each runtime, in bytes.
    pub(crate) runtime_memory: usize,
    /// How long one call may run before QuickJS's interrupt stops it, in milliseconds.
    pub(crate) timeout_ms: u64,
    /// Runtimes kept (least recently used dropped first).
    pub(crate) runtimes: usize,
    /// The worker's address-space limit (RLIMIT_AS) in bytes, if any.
    pub(crate) address_space: Option<u64>,
}

/// A request as the parent writes it (borrowing what it sends; `D` is a document).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request<'a, D: Serialize = Value> {
    Init(&'a Settings),
    Check {
        functions: &'a [Function],
    },
    Map {
        scope: &'a Scope,
        function: &'a Function,
        docs: &'a [D],
    },
    Filter {
        scope: &'a Scope,
        function: &'a Function,
        req: &'a Value,
        docs: &'a [D],
    },
    Validate {
        functions: &'a [(Scope, Function)],
        args: [&'a Value; 4],
    },
    Reduce {
        scope: &'a Scope,
        function: &'a Function,
        keys: &'a Value,
        values: &'a Value,
        rereduce: bool,
    },
}

/// A request as the worker reads it (documents and arguments left as JSON text).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Incoming {
    Init(Settings),
    Check {
        functions: Vec<Function>,
    },
    Map {
        scope: Scope,
        function: Function,
        docs: Vec<Box<RawValue>>,
    },
    Filter {
        scope: Scope,
        function: Function,
        req: Box<RawValue>,
        docs: Vec<Box<RawValue>>,
    },
    Validate {
        functions: Vec<(Scope, Function)>,
        args: [Box<RawValue>; 4],
    },
    Reduce {
        scope: Scope,
        function: Function,
        keys: Box<RawValue>,
        values: Box<RawValue>,
        rereduce: bool,
    },
}

/// One answer frame as the worker writes it: `ok` is JSON text the sandbox produced, put
/// in the frame as it is.
pub(crate) fn answer_frame(
    outcome: Outcome<&str>,
    log: &[String],
    stop: bool,
) -> serde_json::Result<Vec<u8>> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(b"{\"outcome\":");
    match outcome {
        Outcome::Ok(text) => {
            frame.extend_from_slice(b"{\"ok\":");
            frame.extend_from_slice(text.as_bytes());
            frame.push(b'}');
        }
        other => serde_json::to_writer(&mut frame, &other)?,
    }
    if !log.is_empty() {
        frame.extend_from_slice(b",\"log\":");
        serde_json::to_writer(&mut frame, log)?;
    }
    if stop {
        frame.extend_from_slice(b",\"stop\":true");
    }
    frame.push(b'}');
    Ok(frame)
}

/// One answer frame as the parent reads it, its result parsed as `T` on the way.
#[derive(Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub(crate) struct Reply<T> {
    pub(crate) outcome: Outcome<T>,
    #[serde(default)]
    pub(crate) log: Vec<String>,
    #[serde(default)]
    pub(crate) stop: bool,
}

/// What one call came to.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome<T> {
    Ok(T),
    Error(WireError),
    Rejected(WireRejection),
}

/// [`Rejection`] on the wire (its `Failed` travels as an [`Outcome::Error`]).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireRejection {
    Forbidden(Value),
    Unauthorized(Value),
    Other(Value),
}

impl WireRejection {
    /// The rejection, or `Err` with the error of a function that failed.
    pub(crate) fn from_rejection(r: Rejection) -> Result<WireRejection, Error> {
        match r {
            Rejection::Forbidden(v) => Ok(WireRejection::Forbidden(v)),
            Rejection::Unauthorized(v) => Ok(WireRejection::Unauthorized(v)),
            Rejection::Other(v) => Ok(WireRejection::Other(v)),
            Rejection::Failed(e) => Err(e),
        }
    }

    pub(crate) fn into_rejection(self) -> Rejection {
        match self {
            WireRejection::Forbidden(v) => Rejection::Forbidden(v),
            WireRejection::Unauthorized(v) => Rejection::Unauthorized(v),
            WireRejection::Other(v) => Rejection::Other(v),
        }
    }
}

/// [`Error`] on the wire: the errors a worker's sandbox can give.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireError {
    Compile {
        origin: String,
        reason: String,
    },
    Thrown {
        origin: String,
        reason: String,
    },
    Timeout {
        origin: String,
        limit_ms: u64,
    },
    BuiltinReduce {
        origin: String,
        reason: String,
        caused_by: Value,
    },
    OutOfMemory {
        origin: String,
        limit: usize,
    },
    BadResult {
        origin: String,
        reason: String,
    },
    TooDeep {
        origin: String,
        reason: String,
    },
    Engine {
        reason: String,
    },
}

impl From<Error> for WireError {
    fn from(e: Error) -> WireError {
        match e {
            Error::Compile { origin, reason } => WireError::Compile { origin, reason },
            Error::Thrown { origin, reason } => WireError::Thrown { origin, reason },
            Error::Timeout { origin, limit } => WireError::Timeout {
                origin,
                limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            },
            Error::BuiltinReduce {
                origin,
                reason,
                caused_by,
            } => WireError::BuiltinReduce {
                origin,
                reason,
                caused_by,
            },
            Error::OutOfMemory { origin, limit } => WireError::OutOfMemory { origin, limit },
            Error::BadResult { origin, reason } => WireError::BadResult { origin, reason },
            Error::TooDeep { origin, reason } => WireError::TooDeep { origin, reason },
            other => WireError::Engine {
                reason: other.to_string(),
            },
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Compile { origin, reason } => Error::Compile { origin, reason },
            WireError::Thrown { origin, reason } => Error::Thrown { origin, reason },
            WireError::Timeout { origin, limit_ms } => Error::Timeout {
                origin,
                limit: Duration::from_millis(limit_ms),
            },
            WireError::BuiltinReduce {
                origin,
                reason,
                caused_by,
            } => Error::BuiltinReduce {
                origin,
                reason,
                caused_by,
            },
            WireError::OutOfMemory { origin, limit } => Error::OutOfMemory { origin, limit },
            WireError::BadResult { origin, reason } => Error::BadResult { origin, reason },
            WireError::TooDeep { origin, reason } => Error::TooDeep { origin, reason },
            WireError::Engine { reason } => Error::Engine { reason },
        }
    }
}
