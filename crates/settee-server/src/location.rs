//! URLs the server hands back to clients: a database name or document id as one encoded
//! path segment, and a path made absolute for a `Location` header.

use axum::http::{header, HeaderMap};

/// Characters percent-encoded in one path segment of a URL we send (`Location`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'(')
    .remove(b')')
    .remove(b'+');

/// Percent-encodes a database name or document id as one path segment (`/` is `%2F`).
pub(crate) fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// `path` on this server as an absolute URL for a `Location` header: with the request's
/// `Host` (as CouchDB's `absolute_uri`), or the path alone without one.
pub(crate) fn absolute_url(headers: &HeaderMap, path: &str) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{path}"),
        None => path.to_owned(),
    }
}
