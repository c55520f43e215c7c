//! The crate's one error type. Each error carries CouchDB's `error` name (what `_find`,
//! `_index` and `_explain` answer with) and a reason naming the bad part of the request.

use std::fmt;

/// A rejected selector, find request or index definition, or a query no index can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A selector that cannot be evaluated. `name` is CouchDB's: `bad_arg`,
    /// `invalid_operator`, `not_supported`, `bad_field`, `invalid_selector`,
    /// `invalid_selector_json` or `invalid_field_name`.
    Selector {
        /// CouchDB's error name.
        name: &'static str,
        /// What is wrong, naming the operator or field.
        reason: String,
    },
    /// A malformed find or index request (`invalid_key`, `missing_required_key`,
    /// `invalid_non_neg_integer`, `invalid_sort_json`, `unsupported_mixed_sort`, ...).
    Request {
        /// CouchDB's error name.
        name: &'static str,
        /// What is wrong, naming the option.
        reason: String,
    },
    /// A sort no index can serve (CouchDB's 400 `no_usable_index`).
    NoUsableIndex {
        /// CouchDB's reason text.
        reason: String,
    },
    /// `use_index` names an index that does not exist or cannot serve the query, and
    /// `allow_fallback` is false; or an index definition is invalid.
    InvalidIndex {
        /// What is wrong.
        reason: String,
    },
    /// A bookmark that does not decode, or that belongs to another index.
    InvalidBookmark {
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    pub(crate) fn selector(name: &'static str, reason: impl Into<String>) -> Error {
        Error::Selector {
            name,
            reason: reason.into(),
        }
    }

    pub(crate) fn request(name: &'static str, reason: impl Into<String>) -> Error {
        Error::Request {
            name,
            reason: reason.into(),
        }
    }

    /// CouchDB's name for this error (`bad_arg`, `no_usable_index`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Selector { name, .. } | Error::Request { name, .. } => name,
            Error::NoUsableIndex { .. } => "no_usable_index",
            Error::InvalidIndex { .. } => "invalid_index",
            Error::InvalidBookmark { .. } => "invalid_bookmark",
        }
    }

    /// The reason, as it goes in a `{"error", "reason"}` reply.
    pub fn reason(&self) -> &str {
        match self {
            Error::Selector { reason, .. }
            | Error::Request { reason, .. }
            | Error::NoUsableIndex { reason }
            | Error::InvalidIndex { reason }
            | Error::InvalidBookmark { reason } => reason,
        }
    }

    /// The HTTP status CouchDB answers with (400 for all of them).
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.reason())
    }
}

impl std::error::Error for Error {}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
