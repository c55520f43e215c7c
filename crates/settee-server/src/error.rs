//! Errors: [`Error`] for starting a server (binding, opening stores), and [`HttpError`], the
//! `{"error", "reason"}` reply CouchDB sends with a status code, which every handler returns
//! on failure.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A store given to serve could not be opened (in use, not a store, damaged).
    #[error("cannot serve {path}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: settee_store::Error,
    },
    /// The options do not make a server: a non-loopback address without an admin, two
    /// stores with one name, a data directory that cannot be read.
    #[error("bad_request: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// CouchDB-style name of this error (`bind`, `store`, `bad_request`).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Bind { .. } => "bind",
            Error::Store { source, .. } => source.name(),
            Error::Config { .. } => "bad_request",
        }
    }
}

/// Result with the server's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed request: CouchDB's status code, `error` name and `reason` text, sent as
/// `{"error": ..., "reason": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) reason: String,
    /// For 405: the methods the resource allows (`Allow` header).
    pub(crate) allow: Option<&'static str>,
}

impl HttpError {
    pub(crate) fn new(
        status: StatusCode,
        error: impl Into<String>,
        reason: impl Into<String>,
    ) -> HttpError {
        HttpError {
            status,
            error: error.into(),
            reason: reason.into(),
            allow: None,
        }
    }

    /// The same error under another CouchDB `error` name.
    pub(crate) fn named(self, error: &str) -> HttpError {
        HttpError {
            error: error.to_owned(),
            ..self
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    pub(crate) fn db_not_found() -> HttpError {
        HttpError::not_found("Database does not exist.")
    }

    pub(crate) fn conflict() -> HttpError {
        HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Document update conflict.",
        )
    }

    pub(crate) fn unauthorized(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    pub(crate) fn too_large() -> HttpError {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request entity is too large",
        )
    }

    /// 405 with CouchDB's reason ("Only GET,HEAD,PUT allowed") and the `Allow` header.
    pub(crate) fn method_not_allowed(allow: &'static str) -> HttpError {
        HttpError {
            allow: Some(allow),
            ..HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("Only {allow} allowed"),
            )
        }
    }

    /// CouchDB's reply to a body that is not JSON.
    pub(crate) fn invalid_json() -> HttpError {
        HttpError::bad_request("invalid UTF-8 JSON")
    }

    pub(crate) fn internal(reason: impl Into<String>) -> HttpError {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            reason,
        )
    }
}

impl From<settee_store::Error> for HttpError {
    fn from(e: settee_store::Error) -> HttpError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "store error");
        }
        HttpError::new(status, e.name(), redacted_reason(&e))
    }
}

/// The reason a client is told for a store error: never a path on the server's disk
/// (the log has the full error). Errors that carry a path get a fixed text instead.
fn redacted_reason(e: &settee_store::Error) -> String {
    use settee_store::Error as E;
    match e {
        E::StoreInUse { .. } => "the database's store is in use by another process".into(),
        E::NotAStore { .. } | E::UnsupportedFormat { .. } => {
            "the database's store cannot be opened (see the server's log)".into()
        }
        E::DiskFull { .. } => {
            "no space left on the disk holding the database; the write was not saved".into()
        }
        E::Storage { .. } | E::Io { .. } => {
            "the database's store failed to read or write (see the server's log)".into()
        }
        other => other.reason(),
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "reason": self.reason});
        let mut res = Response::new(Body::from(body.to_string() + "\n"));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(allow) = self.allow {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}

/// The status of a per-document error name (CouchDB's mapping).
pub(crate) fn doc_error(error: &str, reason: &str) -> HttpError {
    let status = match error {
        "conflict" => StatusCode::CONFLICT,
        "not_found" => StatusCode::NOT_FOUND,
        "forbidden" => StatusCode::FORBIDDEN,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "missing_stub" => StatusCode::PRECONDITION_FAILED,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "bad_request" | "illegal_docid" | "doc_validation" => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpError::new(status, error, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_never_show_a_path() {
        let e = settee_store::Error::Io {
            path: "/srv/secret/data/db1".into(),
            source: std::io::Error::other("boom"),
        };
        let h = HttpError::from(e);
        assert_eq!(h.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!h.reason.contains("/srv/secret"), "{}", h.reason);
    }

    #[test]
    fn store_conflict_maps_to_couchdb_409() {
        let e = settee_store::Error::Conflict { id: "a".into() };
        let h = HttpError::from(e);
        assert_eq!(h, HttpError::conflict());
    }
}
