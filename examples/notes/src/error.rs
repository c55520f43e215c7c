//! The app's one error type, and how it goes out over HTTP: `{"error": name, "reason": text}`
//! with CouchDB's error names and statuses, so the page (and a curl user) can tell a stale
//! revision (409) from an unknown note (404) from bad input (400).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong in a request to the notes app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body or parameters are malformed; nothing was changed.
    #[error("bad_request: {0}")]
    BadRequest(String),
    /// No such note (or it is deleted).
    #[error("not_found: {0}")]
    NotFound(String),
    /// The revision given is not the note's current one; nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A request from another web origin (a page on the internet trying to use the API of
    /// the app running on this machine).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An upload is larger than the app takes (an image past `images::MAX_IMAGE_BYTES`).
    #[error("attachment_too_large: {0}")]
    TooLarge(String),
    /// An upload of a type the app does not take (anything but an image).
    #[error("bad_content_type: {0}")]
    UnsupportedType(String),
    /// The local store (or the server, for the calls that reach it) failed.
    #[error("store: {0}")]
    Store(#[from] settee::Error),
    /// Something else failed inside the app (a task panicked, a remote client could not be
    /// built).
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the app's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// CouchDB's name for the error (`bad_request`, `not_found`, `conflict`...).
    pub fn name(&self) -> &str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Forbidden(_) => "forbidden",
            Error::TooLarge(_) => "attachment_too_large",
            Error::UnsupportedType(_) => "bad_content_type",
            Error::Store(e) => e.name(),
            Error::Internal(_) => "internal_server_error",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Store(e) => status_of(e),
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message without the name prefix.
    fn reason(&self) -> String {
        match self {
            Error::BadRequest(r)
            | Error::NotFound(r)
            | Error::Conflict(r)
            | Error::Forbidden(r)
            | Error::TooLarge(r)
            | Error::UnsupportedType(r)
            | Error::Internal(r) => r.clone(),
            Error::Store(e) => e.to_string(),
        }
    }

    pub(crate) fn task(e: tokio::task::JoinError) -> Error {
        Error::Internal(format!("a store task failed: {e}"))
    }
}

/// The HTTP status of a facade error, from its kind (the same for the store and a server).
fn status_of(e: &settee::Error) -> StatusCode {
    use settee::ErrorKind as K;
    match e.kind() {
        K::NotFound => StatusCode::NOT_FOUND,
        K::Conflict => StatusCode::CONFLICT,
        K::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        K::Unauthorized | K::Forbidden | K::Rejected => StatusCode::FORBIDDEN,
        K::BadRequest | K::Decode => StatusCode::BAD_REQUEST,
        K::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        K::StoreInUse => StatusCode::LOCKED,
        K::Offline => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            axum::Json(json!({"error": self.name(), "reason": self.reason()})),
        )
            .into_response()
    }
}
