//! Percent-encoding of document ids, attachment names and database names in URL paths.
//! CouchDB decodes each path segment once; `_design/` and `_local/` keep their slash
//! because CouchDB routes on it (CouchDB docs, "Design Documents" and "Local Documents").

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters is encoded, so `/ + ? # %`, spaces and
/// non-ASCII bytes never reach the server unescaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one path segment.
pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Encodes a document id for the URL path, keeping the `_design/` or `_local/` prefix.
pub(crate) fn encode_doc_id(id: &str) -> String {
    for prefix in ["_design/", "_local/"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            return format!("{prefix}{}", encode_segment(rest));
        }
    }
    encode_segment(id)
}

/// `_local/` + id, unless the id already has the prefix.
pub(crate) fn local_id(id: &str) -> String {
    if id.starts_with("_local/") {
        id.to_owned()
    } else {
        format!("_local/{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_encoded() {
        assert_eq!(encode_doc_id("a/b+c?d#e%f g"), "a%2Fb%2Bc%3Fd%23e%25f%20g");
        assert_eq!(encode_doc_id("é"), "%C3%A9");
    }

    #[test]
    fn design_and_local_prefixes_keep_their_slash() {
        assert_eq!(encode_doc_id("_design/a/b"), "_design/a%2Fb");
        assert_eq!(encode_doc_id("_local/x y"), "_local/x%20y");
        assert_eq!(local_id("cp"), "_local/cp");
        assert_eq!(local_id("_local/cp"), "_local/cp");
    }
}
