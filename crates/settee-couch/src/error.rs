//! `Error`: every way a request to CouchDB can fail, named after CouchDB's `error` values.
//! Building an `Error` from a response is `transport.rs`'s job.

use std::fmt;

use reqwest::Method;
use settee_wire::ErrorKind;

use crate::RedactedUrl;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the server said about a failed request: the method, the redacted URL, the HTTP
/// status and CouchDB's `error`/`reason` (empty when the body had none).
#[derive(Debug, Clone)]
pub struct Failure {
    pub(crate) method: Method,
    pub(crate) url: RedactedUrl,
    pub(crate) status: u16,
    pub(crate) error: String,
    pub(crate) reason: String,
    /// The answer's `Retry-After`, when it had one that parses (seconds or an HTTP date).
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// The request's HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }
    /// The request's URL, without credentials.
    pub fn url(&self) -> &RedactedUrl {
        &self.url
    }
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// CouchDB's `error` field (`"not_found"`, `"conflict"`, ...).
    pub fn error(&self) -> &str {
        &self.error
    }
    /// CouchDB's `reason` field.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// How long the server asked the client to wait before trying again (`Retry-After` on
    /// a 429 or 503), as sent: the caller bounds it. The replicator waits at least this long
    /// before its next attempt.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} answered {}", self.method, self.url, self.status)?;
        if !self.error.is_empty() || !self.reason.is_empty() {
            write!(f, " {}: {}", self.error, self.reason)?;
        }
        Ok(())
    }
}

/// An error from the CouchDB client. HTTP errors carry a [`Failure`] (method, redacted URL,
/// status, CouchDB's `error` and `reason`); none carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: the server rejected the request (bad JSON, bad parameter).
    #[error("bad_request: {0}")]
    BadRequest(Box<Failure>),
    /// 401: missing or wrong credentials.
    #[error("unauthorized: {0}; check the user name and password")]
    Unauthorized(Box<Failure>),
    /// 403: authenticated, but not allowed (or rejected by a validation function).
    #[error("forbidden: {0}")]
    Forbidden(Box<Failure>),
    /// 404: no such database, document, revision or attachment.
    #[error("not_found: {0}")]
    NotFound(Box<Failure>),
    /// 405: the server does not support this method on this URL.
    #[error("method_not_allowed: {0}")]
    MethodNotAllowed(Box<Failure>),
    /// 409: the document was updated since the `_rev` sent; fetch the current `_rev` and retry.
    #[error("conflict: {0}; fetch the current _rev and retry")]
    Conflict(Box<Failure>),
    /// 412 `file_exists`: the database already exists. (Other 412s are [`Error::Http`].)
    #[error("file_exists: {0}")]
    FileExists(Box<Failure>),
    /// 413: the request body is larger than the server accepts (`max_document_size`,
    /// `max_http_request_size`, or a proxy's limit).
    #[error("too_large: {0}")]
    TooLarge(Box<Failure>),
    /// Any other HTTP error status (429 and 5xx after retries, ...).
    #[error("http error: {0}")]
    Http(Box<Failure>),
    /// No connection could be made to the server (refused, unreachable, timed out, a name
    /// that does not resolve, a failed TLS handshake).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// `host:port` of the server.
        addr: String,
        /// Why, in a few words (`connection refused`, `timed out`, ...).
        reason: String,
        /// The request's URL, redacted.
        url: RedactedUrl,
    },
    /// The request could not be sent or its response not read once connected (connection
    /// reset or closed, timeout). The URL in the source is removed; ours is redacted.
    #[error("transport: {method} {url} failed")]
    Transport {
        /// The request's method.
        method: Method,
        /// The request's URL, redacted.
        url: RedactedUrl,
        /// The cause, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The server's reply was not what CouchDB sends (not JSON, wrong shape, an endless line).
    #[error("invalid_response: {method} {url}: {detail}")]
    InvalidResponse {
        /// The request's method.
        method: Method,
        /// The request's URL, redacted.
        url: RedactedUrl,
        /// What was wrong with it.
        detail: String,
    },
    /// The response body is larger than the client reads into memory
    /// ([`ClientBuilder::max_response_size`](crate::ClientBuilder::max_response_size), or the
    /// limit of the call, as in [`RemoteDb::bulk_get_json_within`](crate::RemoteDb::bulk_get_json_within)).
    /// Nothing beyond the limit was read.
    #[error("response_too_large: {method} {url} answered more than {limit} bytes")]
    ResponseTooLarge {
        /// The request's method.
        method: Method,
        /// The request's URL, redacted.
        url: RedactedUrl,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A continuous `_changes` feed ended without its final `last_seq` line (the connection
    /// was closed). Resume with `since` = the `seq` of the last change received.
    #[error("feed_interrupted: the _changes feed at {url} ended early; resume from the last seq received")]
    FeedInterrupted {
        /// The feed's URL, redacted.
        url: RedactedUrl,
    },
    /// The call cannot be made as asked (e.g. `feed=continuous` through
    /// [`RemoteDb::changes`](crate::RemoteDb::changes), a document that is not a JSON object).
    #[error("invalid_argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The URL given to the builder cannot be used.
    #[error("invalid_url: {reason}")]
    InvalidUrl {
        /// What is wrong with it (never the URL itself, which may hold a password).
        reason: String,
    },
}

impl Error {
    /// CouchDB's name for this error (`"conflict"`, `"not_found"`, `"no_usable_index"`...):
    /// for an HTTP error status, the `error` the server sent (a 400 may be
    /// `invalid_selector` or `no_usable_index`); when it sent none, and for the errors of
    /// the client itself (`transport`, `invalid_response`...), the variant's name. Stable:
    /// the CLI prints it.
    pub fn name(&self) -> &str {
        match self.failure() {
            Some(f) if !f.error.is_empty() => &f.error,
            _ => self.variant_name(),
        }
    }

    /// The variant's name, whatever the server sent.
    fn variant_name(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::FileExists(_) => "file_exists",
            Error::TooLarge(_) => "too_large",
            Error::Http(_) => "http_error",
            Error::Transport { .. } | Error::Connect { .. } => "transport",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::ResponseTooLarge { .. } => "response_too_large",
            Error::FeedInterrupted { .. } => "feed_interrupted",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::InvalidUrl { .. } => "invalid_url",
        }
    }

    /// The server's answer, for errors that come from an HTTP error status.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::BadRequest(f)
            | Error::Unauthorized(f)
            | Error::Forbidden(f)
            | Error::NotFound(f)
            | Error::MethodNotAllowed(f)
            | Error::Conflict(f)
            | Error::FileExists(f)
            | Error::TooLarge(f)
            | Error::Http(f) => Some(f),
            _ => None,
        }
    }

    /// The HTTP status, for errors that come from an HTTP error status.
    pub fn status(&self) -> Option<u16> {
        self.failure().map(Failure::status)
    }

    /// What kind of failure this is, the same vocabulary as a local store's errors
    /// ([`settee_wire::ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) | Error::MethodNotAllowed(_) => ErrorKind::BadRequest,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::NotFound(_) => ErrorKind::NotFound,
            // A database that exists already: the write conflicts with what is there.
            Error::Conflict(_) | Error::FileExists(_) => ErrorKind::Conflict,
            Error::TooLarge(_) | Error::ResponseTooLarge { .. } => ErrorKind::TooLarge,
            Error::Http(f) => ErrorKind::from_status(f.status),
            Error::Connect { .. } | Error::FeedInterrupted { .. } => ErrorKind::Offline,
            Error::Transport { source, .. } => {
                if source.is_builder() {
                    // The request could not be built from what the caller gave.
                    ErrorKind::BadRequest
                } else if source.is_decode() || source.is_redirect() {
                    ErrorKind::InvalidResponse
                } else {
                    // Sending it or reading the answer failed: reset, closed, timed out.
                    ErrorKind::Offline
                }
            }
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::InvalidArgument { .. } | Error::InvalidUrl { .. } => ErrorKind::BadRequest,
        }
    }

    /// Whether the server could not be reached or stopped answering
    /// ([`ErrorKind::Offline`]): no connection, a connection dropped mid-answer, a
    /// timeout. Not an answer the server gave.
    pub fn is_offline(&self) -> bool {
        self.kind() == ErrorKind::Offline
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Whether this is a 409.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Builds the error for an HTTP error status.
    pub(crate) fn from_failure(f: Failure) -> Error {
        let f = Box::new(f);
        match f.status {
            400 => Error::BadRequest(f),
            401 => Error::Unauthorized(f),
            403 => Error::Forbidden(f),
            404 => Error::NotFound(f),
            405 => Error::MethodNotAllowed(f),
            409 => Error::Conflict(f),
            // pouchdb-server also answers 412 for other preconditions (`missing_id`).
            412 if f.error == "file_exists" => Error::FileExists(f),
            413 => Error::TooLarge(f),
            _ => Error::Http(f),
        }
    }

    pub(crate) fn transport(method: &Method, url: &RedactedUrl, source: reqwest::Error) -> Error {
        if source.is_connect() {
            let u = url.as_url();
            return Error::Connect {
                addr: format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port_or_known_default().unwrap_or_default()
                ),
                reason: connect_reason(&source),
                url: url.clone(),
            };
        }
        Error::Transport {
            method: method.clone(),
            url: url.clone(),
            source: source.without_url(),
        }
    }

    pub(crate) fn invalid(method: &Method, url: &RedactedUrl, detail: impl fmt::Display) -> Error {
        Error::InvalidResponse {
            method: method.clone(),
            url: url.clone(),
            detail: detail.to_string(),
        }
    }
}

/// Why a connection failed, in a few lowercase words: the I/O error's kind where there is
/// one (the chain is reqwest, hyper's connector, the socket's `io::Error`), else the
/// innermost cause's message.
fn connect_reason(e: &reqwest::Error) -> String {
    use std::io::ErrorKind as K;
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = String::new();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let known = match io.kind() {
                K::ConnectionRefused => "connection refused",
                K::ConnectionReset => "connection reset",
                K::ConnectionAborted => "connection aborted",
                K::TimedOut => "timed out",
                K::HostUnreachable => "host unreachable",
                K::NetworkUnreachable => "network unreachable",
                K::AddrNotAvailable => "address not available",
                K::PermissionDenied => "permission denied",
                _ => "",
            };
            if !known.is_empty() {
                return known.into();
            }
        }
        innermost = err.to_string();
        cur = err.source();
    }
    // An OS error's text ends in " (os error N)", which says nothing more to a user.
    match innermost.find(" (os error") {
        Some(i) => innermost[..i].to_owned(),
        None => innermost,
    }
}

// C-SEND-SYNC: errors cross tasks in the replicator.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> RedactedUrl {
        RedactedUrl::new(&url::Url::parse("http://alice:secret@127.0.0.1:5984/db").unwrap())
    }

    fn answered(status: u16, error: &str) -> Error {
        Error::from_failure(Failure {
            method: Method::GET,
            url: url(),
            status,
            error: error.into(),
            reason: "why".into(),
            retry_after: None,
        })
    }

    #[test]
    fn http_statuses_map_to_kinds_and_keep_the_servers_name() {
        let cases = [
            (400, "no_usable_index", ErrorKind::BadRequest),
            (400, "invalid_selector", ErrorKind::BadRequest),
            (401, "unauthorized", ErrorKind::Unauthorized),
            (403, "forbidden", ErrorKind::Forbidden),
            (404, "not_found", ErrorKind::NotFound),
            (405, "method_not_allowed", ErrorKind::BadRequest),
            (409, "conflict", ErrorKind::Conflict),
            (412, "file_exists", ErrorKind::Conflict),
            (412, "missing_id", ErrorKind::BadRequest),
            (413, "too_large", ErrorKind::TooLarge),
            (429, "too_many_requests", ErrorKind::Server),
            (500, "internal_server_error", ErrorKind::Server),
            (501, "not_implemented", ErrorKind::Unsupported),
            (503, "service_unavailable", ErrorKind::Server),
        ];
        for (status, name, kind) in cases {
            let e = answered(status, name);
            assert_eq!((e.kind(), e.name()), (kind, name), "{e}");
            assert!(!e.is_offline());
        }
    }

    #[test]
    fn an_answer_without_an_error_name_is_named_after_its_variant() {
        assert_eq!(answered(404, "").name(), "not_found");
        assert_eq!(answered(502, "").name(), "http_error");
    }

    #[test]
    fn a_server_that_cannot_be_reached_is_offline() {
        let refused = Error::Connect {
            addr: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
            url: url(),
        };
        let cut = Error::FeedInterrupted { url: url() };
        for e in [refused, cut] {
            assert_eq!(e.kind(), ErrorKind::Offline, "{e}");
            assert!(e.is_offline());
        }
    }

    #[test]
    fn the_clients_own_errors_have_their_kinds() {
        let invalid = Error::invalid(&Method::GET, &url(), "not JSON");
        assert_eq!(invalid.kind(), ErrorKind::InvalidResponse);
        let too_big = Error::ResponseTooLarge {
            method: Method::GET,
            url: url(),
            limit: 1,
        };
        assert_eq!(too_big.kind(), ErrorKind::TooLarge);
        let arg = Error::InvalidArgument { reason: "x".into() };
        assert_eq!(arg.kind(), ErrorKind::BadRequest);
        let bad_url = Error::InvalidUrl { reason: "x".into() };
        assert_eq!(bad_url.kind(), ErrorKind::BadRequest);
    }

    #[test]
    fn a_request_that_cannot_be_built_is_a_bad_request_not_offline() {
        let source = reqwest::Client::new()
            .get("http://127.0.0.1:1/db")
            .header("bad header\n", "v")
            .build()
            .unwrap_err();
        assert!(source.is_builder());
        let e = Error::transport(&Method::GET, &url(), source);
        assert_eq!((e.kind(), e.name()), (ErrorKind::BadRequest, "transport"));
    }
}
