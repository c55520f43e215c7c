//! [`ErrorKind`]: what went wrong, in the few words an application branches on, the same
//! for a local store and a server. Each crate maps its own errors onto it (`kind()` on the
//! store's, the client's and the replicator's errors, with a match that names every
//! variant); this module owns the vocabulary and the two mappings every side shares: an
//! HTTP status ([`ErrorKind::from_status`]) and the error name of one document of a bulk
//! write ([`ErrorKind::from_doc_error`]).

use std::fmt;

/// What kind of failure an error is: the same for a local store and a server, so an
/// application matches on it instead of on messages or on which crate failed.
///
/// The kind says what to do next; the error's name (CouchDB's `error`, such as
/// `no_usable_index` within [`ErrorKind::BadRequest`]) says exactly what happened.
///
/// ```
/// use settee_wire::ErrorKind;
/// assert_eq!(ErrorKind::from_status(409), ErrorKind::Conflict);
/// assert_eq!(ErrorKind::from_doc_error("forbidden"), ErrorKind::Forbidden);
/// assert_eq!(ErrorKind::from_doc_error("my_app_rule"), ErrorKind::Rejected);
/// assert_eq!(ErrorKind::Offline.to_string(), "offline");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached, or stopped answering: no connection (refused, no
    /// route, a name that does not resolve, a failed TLS handshake), a connection dropped
    /// mid-answer, or a timeout. Nothing is wrong with the request: try again when the
    /// network is back.
    Offline,
    /// Who you are was not accepted (HTTP 401): no credentials, a wrong password, an
    /// expired session, or a validation function's `unauthorized`.
    Unauthorized,
    /// You are known but not allowed (HTTP 403), or a validation function refused the
    /// document (`forbidden`).
    Forbidden,
    /// No such document, revision, attachment, index or database (HTTP 404).
    NotFound,
    /// The write conflicts with what is there (HTTP 409): a `_rev` that is not a current
    /// leaf (fetch the document again, or resolve), a database that already exists (412
    /// `file_exists`), or a replication checkpoint that another writer changed.
    Conflict,
    /// The request cannot be served as asked (HTTP 400 and the other 4xx, and the same
    /// mistakes caught locally): a bad selector, a sort no index serves
    /// (`no_usable_index`), an illegal document id, a malformed rev, a bad option.
    BadRequest,
    /// Something is larger than a limit: a document or request the server refuses (HTTP
    /// 413), or an answer larger than the client reads.
    TooLarge,
    /// One document of a bulk write was refused for a reason none of the other kinds
    /// names (the error's name says which).
    Rejected,
    /// The local store is open in another process or handle (HTTP 423 from a process
    /// that holds it).
    StoreInUse,
    /// The disk holding the local store is full (HTTP 507 from a process that holds it):
    /// the write was not saved.
    DiskFull,
    /// The local store is damaged, or the path holds something that is not a store.
    Corrupt,
    /// This build or this server cannot do it: a store written by a newer Settee, or a
    /// server that does not implement the call (HTTP 501).
    Unsupported,
    /// A document does not fit the type it was read into (or a value does not serialize
    /// to a JSON object).
    Decode,
    /// The server answered something CouchDB does not send: not JSON, the wrong shape, an
    /// answer that contradicts itself.
    InvalidResponse,
    /// The server failed or is overloaded (HTTP 5xx, 408, 429): try again later.
    Server,
    /// The operation was cancelled by its caller.
    Cancelled,
    /// Settee failed inside: a task that did not finish, an I/O error on the store's
    /// files, a state that should not happen.
    Internal,
}

impl ErrorKind {
    /// The kind of an HTTP error status, as CouchDB (and a process serving a local store)
    /// answers it. A status that is not an error is [`ErrorKind::InvalidResponse`].
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            // `settee serve` answers these for a store in use and a full disk (see
            // `settee_store::Error::status`), so a held store reads as one opened here.
            423 => ErrorKind::StoreInUse,
            507 => ErrorKind::DiskFull,
            408 | 429 => ErrorKind::Server,
            501 => ErrorKind::Unsupported,
            400..=499 => ErrorKind::BadRequest,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::InvalidResponse,
        }
    }

    /// The kind of the error name of one document in a `_bulk_docs` answer (a
    /// [`DocResult`](crate::DocResult)'s `error`): `forbidden` and `unauthorized` (a
    /// validation function), `conflict`, `not_found`, `too_large`, the bad-request names;
    /// any other name is [`ErrorKind::Rejected`].
    pub fn from_doc_error(name: &str) -> ErrorKind {
        match name {
            "forbidden" => ErrorKind::Forbidden,
            "unauthorized" => ErrorKind::Unauthorized,
            "conflict" => ErrorKind::Conflict,
            "not_found" => ErrorKind::NotFound,
            "too_large" | "document_too_large" | "attachment_too_large" => ErrorKind::TooLarge,
            "bad_request" | "illegal_docid" | "doc_validation" | "missing_stub" => {
                ErrorKind::BadRequest
            }
            _ => ErrorKind::Rejected,
        }
    }

    /// The kind's name in snake case (`offline`, `not_found`, `bad_request`...), as
    /// `Display` writes it. Not CouchDB's error name: an error's `name()` is that.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Offline => "offline",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Rejected => "rejected",
            ErrorKind::StoreInUse => "store_in_use",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Decode => "decode",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Server => "server",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind as K;

    #[test]
    fn statuses_map_to_their_kinds() {
        let cases = [
            (400, K::BadRequest),
            (401, K::Unauthorized),
            (403, K::Forbidden),
            (404, K::NotFound),
            (405, K::BadRequest),
            (408, K::Server),
            (409, K::Conflict),
            (412, K::BadRequest),
            (413, K::TooLarge),
            (415, K::BadRequest),
            (423, K::StoreInUse),
            (429, K::Server),
            (500, K::Server),
            (501, K::Unsupported),
            (503, K::Server),
            (507, K::DiskFull),
            (200, K::InvalidResponse),
            (302, K::InvalidResponse),
            (600, K::InvalidResponse),
        ];
        for (status, kind) in cases {
            assert_eq!(K::from_status(status), kind, "{status}");
        }
    }

    #[test]
    fn document_errors_map_to_their_kinds_and_others_are_rejected() {
        let cases = [
            ("forbidden", K::Forbidden),
            ("unauthorized", K::Unauthorized),
            ("conflict", K::Conflict),
            ("not_found", K::NotFound),
            ("too_large", K::TooLarge),
            ("document_too_large", K::TooLarge),
            ("illegal_docid", K::BadRequest),
            ("doc_validation", K::BadRequest),
            ("missing_stub", K::BadRequest),
            ("unknown_error", K::Rejected),
            ("", K::Rejected),
        ];
        for (name, kind) in cases {
            assert_eq!(K::from_doc_error(name), kind, "{name}");
        }
    }

    #[test]
    fn display_is_the_snake_case_name() {
        assert_eq!(K::InvalidResponse.to_string(), "invalid_response");
        assert_eq!(K::StoreInUse.to_string(), "store_in_use");
    }
}
