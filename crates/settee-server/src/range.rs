//! Byte ranges of an attachment: what a `Range` header asks (as CouchDB 3.5 answers it)
//! and the 206 body that answers it, one range as it is or several as
//! `multipart/byteranges`, streamed from store readers. The rest of the attachment `GET`
//! is `attachment.rs`'s.

use axum::http::{header, HeaderMap, HeaderName};
use settee_store::AttachmentReader;
use std::sync::Arc;

use crate::att_stream::{reader_stream, Segments};
use crate::registry::OpenDb;

/// What a `Range` header asks of an attachment of `len` bytes, answered as CouchDB 3.5 does
/// (RFC 9110 §14). Each range is served from its own store reader (`att_stream.rs`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// No `Range`, another unit, a header that does not parse, `bytes=0-` (CouchDB sends
    /// the whole body then), or more than we serve as parts: the whole body, 200.
    Whole,
    /// Each `(first, last)` byte, inclusive, inside the body: 206, one range as it is,
    /// several as `multipart/byteranges`.
    Parts(Vec<(u64, u64)>),
    /// A range that starts past the end, ends before it starts, or `-0`: 416.
    Unsatisfiable,
}

/// At most this many ranges are served as parts, and only while their bytes add up to no
/// more than the attachment's: a header of many overlapping ranges would otherwise make a
/// small request answer the attachment many times over (RFC 9110 §14.2 lets a server send
/// the whole body instead).
const MAX_PARTS: usize = 16;

pub(crate) fn ranges(headers: &HeaderMap, len: u64) -> Ranges {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranges::Whole;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    if spec.trim() == "0-" {
        return Ranges::Whole;
    }
    let mut parts = Vec::new();
    let mut unsatisfiable = false;
    for one in spec.split(',') {
        let Some((a, b)) = one.trim().split_once('-') else {
            return Ranges::Whole;
        };
        let (a, b) = (a.trim(), b.trim());
        let part = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (Some(first), Some(last)) if first <= last && first < len => {
                Some((first, last.min(len - 1)))
            }
            (Some(_), Some(_)) => None,
            (Some(first), None) if b.is_empty() => (first < len).then(|| (first, len - 1)),
            // The last n bytes; all of them when n is longer than the body (RFC 9110
            // §14.1.2). CouchDB 3.5.0 leaves the first byte out then (`bytes=-300` of 256
            // bytes answers `bytes 1-255/256`), which no client can want.
            (None, Some(n)) if a.is_empty() => {
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            _ => return Ranges::Whole,
        };
        match part {
            Some(p) => parts.push(p),
            None => unsatisfiable = true,
        }
    }
    if unsatisfiable {
        return Ranges::Unsatisfiable;
    }
    let total: u64 = parts.iter().map(|(first, last)| last - first + 1).sum();
    if parts.len() > MAX_PARTS || total > len {
        return Ranges::Whole;
    }
    Ranges::Parts(parts)
}

/// The body and headers of a 206 answer of an attachment of `len` bytes: one range as it
/// is, several as `multipart/byteranges` parts, each with its type and `Content-Range`.
/// `readers` has one reader of the attachment per part.
pub(crate) fn partial(
    open: &Arc<OpenDb>,
    readers: Vec<AttachmentReader>,
    parts: &[(u64, u64)],
    len: u64,
    content_type: &str,
) -> (Segments, Vec<(HeaderName, String)>) {
    let mut body = Segments::new();
    let single = parts.len() == 1;
    let boundary = format!("{:032x}", rand::random::<u128>());
    for (&(first, last), reader) in parts.iter().zip(readers) {
        // INVARIANT: `ranges` gives first <= last < len for each part.
        let take = last - first + 1;
        if !single {
            body.bytes(format!(
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{len}\r\n\r\n"
            ));
        }
        body.stream(reader_stream(open.clone(), reader, first, take), take);
        if !single {
            body.bytes(&b"\r\n"[..]);
        }
    }
    if let [(first, last)] = parts {
        let headers = vec![
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}")),
        ];
        return (body, headers);
    }
    body.bytes(format!("--{boundary}--"));
    let content_type = format!("multipart/byteranges; boundary=\"{boundary}\"");
    (body, vec![(header::CONTENT_TYPE, content_type)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn byte_ranges_as_couchdb_answers_them() {
        use Ranges::*;
        let r = |v: &str| ranges(&with_range(v), 10);
        assert_eq!(r("bytes=0-3"), Parts(vec![(0, 3)]));
        assert_eq!(r("bytes= 2-3"), Parts(vec![(2, 3)]));
        assert_eq!(r("bytes=5-"), Parts(vec![(5, 9)]));
        assert_eq!(r("bytes=-4"), Parts(vec![(6, 9)]));
        assert_eq!(r("bytes=-40"), Parts(vec![(0, 9)]));
        assert_eq!(r("bytes=8-100"), Parts(vec![(8, 9)]));
        assert_eq!(r("bytes=0-1,3-4"), Parts(vec![(0, 1), (3, 4)]));
        assert_eq!(r("bytes=0-"), Whole);
        assert_eq!(r("bytes=abc"), Whole);
        assert_eq!(r("items=0-3"), Whole);
        assert_eq!(r("bytes=0-9,0-9"), Whole, "more bytes than the body");
        assert_eq!(r("bytes=10-12"), Unsatisfiable);
        assert_eq!(r("bytes=5-3"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=1-2,30-40"), Unsatisfiable);
        assert_eq!(ranges(&with_range("bytes=-4"), 0), Unsatisfiable);
        assert_eq!(ranges(&with_range("bytes=0-"), 0), Whole);
        assert_eq!(ranges(&HeaderMap::new(), 10), Whole);
    }
}
