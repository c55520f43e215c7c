//! Tests of the incremental multipart parser: the same bodies cut into every piece size.

use super::*;

/// What a parser made of a body: each part's headers and bytes, and whether it ended.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    parts: Vec<(PartHeaders, Vec<u8>)>,
    ended: bool,
}

/// Feeds `body` in pieces of the sizes `sizes` gives (cycled), collecting events and
/// checking their order.
fn parse_in(body: &[u8], boundary: &str, sizes: &[usize]) -> Result<Parsed, MultipartError> {
    let mut parser = MultipartParser::new(boundary);
    let mut parsed = Parsed {
        parts: Vec::new(),
        ended: false,
    };
    let mut in_part = false;
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = sizes[i % sizes.len()].max(1).min(body.len() - at);
        i += 1;
        parser.feed(&body[at..at + n]);
        at += n;
        while let Some(event) = parser.next_event()? {
            match event {
                MultipartEvent::Headers(h) => {
                    assert!(!in_part && !parsed.ended);
                    in_part = true;
                    parsed.parts.push((h, Vec::new()));
                }
                MultipartEvent::Body(bytes) => {
                    assert!(in_part && !bytes.is_empty());
                    parsed
                        .parts
                        .last_mut()
                        .expect("in a part")
                        .1
                        .extend_from_slice(bytes);
                }
                MultipartEvent::PartEnd => {
                    assert!(in_part);
                    in_part = false;
                }
                MultipartEvent::End => {
                    assert!(!in_part && !parsed.ended);
                    parsed.ended = true;
                }
            }
        }
    }
    parser.finish()?;
    Ok(parsed)
}

/// A small deterministic generator of piece sizes (no rand dependency in this crate).
fn random_sizes(seed: u64, n: usize) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 40) as usize + 1
        })
        .collect()
}

/// Parses `body` whole, byte by byte, 7 bytes at a time and in random pieces; all must
/// agree.
fn parse_every_way(body: &[u8], boundary: &str) -> Result<Parsed, MultipartError> {
    let whole = parse_in(body, boundary, &[body.len().max(1)])?;
    for sizes in [vec![1], vec![7], vec![2, 3, 5], random_sizes(42, 64)] {
        assert_eq!(parse_in(body, boundary, &sizes)?, whole, "pieces {sizes:?}");
    }
    for seed in 1..20 {
        assert_eq!(parse_in(body, boundary, &random_sizes(seed, 32))?, whole);
    }
    Ok(whole)
}

fn body_of(p: &Parsed, i: usize) -> &[u8] {
    &p.parts[i].1
}

#[test]
fn two_parts_with_headers_and_an_epilogue() {
    let body = b"preamble text\r\n--xyz\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n--xyz\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\r\n--xyz--\r\nepilogue --xyz\r\n";
    let p = parse_every_way(body, "xyz").unwrap();
    assert!(p.ended);
    assert_eq!(p.parts.len(), 2);
    assert_eq!(p.parts[0].0.content_type(), Some("application/json"));
    assert_eq!(body_of(&p, 0), b"{\"a\":1}");
    assert_eq!(p.parts[1].0.content_length(), Ok(Some(5)));
    assert_eq!(body_of(&p, 1), b"hello");
}

#[test]
fn body_bytes_that_look_like_a_boundary_are_kept() {
    // CRLF and dashes in the body, and the delimiter followed by other text.
    let body = b"--b\r\n\r\n\r\n-\r\n--\r\n--bx\r\n--b\r\n\r\n\r\n--b--";
    let p = parse_every_way(body, "b").unwrap();
    assert_eq!(body_of(&p, 0), b"\r\n-\r\n--\r\n--bx");
    assert_eq!(body_of(&p, 1), b"");
    assert_eq!(p.parts[0].0, PartHeaders::default());
}

#[test]
fn transport_padding_after_a_boundary_is_skipped() {
    let body = b"--b \t\r\nA: 1\r\n\r\nx\r\n--b--";
    let p = parse_every_way(body, "b").unwrap();
    assert_eq!(p.parts[0].0.get("a"), Some("1"));
    assert_eq!(body_of(&p, 0), b"x");
}

#[test]
fn folded_header_lines_continue_the_value() {
    let body = b"--b\r\nContent-Disposition: attachment;\r\n filename=\"a.txt\"\r\n\r\nx\r\n--b--";
    let p = parse_every_way(body, "b").unwrap();
    assert_eq!(p.parts[0].0.filename().as_deref(), Some("a.txt"));
}

#[test]
fn a_nested_multipart_is_read_by_an_inner_parser() {
    // CouchDB's open_revs / _bulk_get answer: the outer part is multipart/related with a
    // boundary that itself begins with "--", unquoted.
    let inner = "----inner\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"d\"}\r\n----inner\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\n\x00\x01\x02\r\n----inner--";
    for ct in [
        "multipart/related; boundary=--inner",
        "multipart/related; boundary=\"--inner\"",
    ] {
        let body = format!(
            "--outer\r\nContent-Type: {ct}\r\nX-Doc-Id: d\r\n\r\n{inner}\r\n--outer\r\nContent-Type: application/json\r\n\r\n{{\"_id\":\"e\"}}\r\n--outer--"
        );
        let outer = parse_every_way(body.as_bytes(), "outer").unwrap();
        assert_eq!(outer.parts.len(), 2);
        let headers = &outer.parts[0].0;
        assert_eq!(
            media_type(headers.content_type().unwrap()),
            "multipart/related"
        );
        let b = boundary(headers.content_type().unwrap()).unwrap();
        assert_eq!(b, "--inner");
        let nested = parse_every_way(body_of(&outer, 0), &b).unwrap();
        assert_eq!(nested.parts.len(), 2);
        assert_eq!(body_of(&nested, 0), b"{\"_id\":\"d\"}");
        assert_eq!(body_of(&nested, 1), b"\x00\x01\x02");
        assert_eq!(nested.parts[1].0.filename().as_deref(), Some("a.bin"));
        assert_eq!(body_of(&outer, 1), b"{\"_id\":\"e\"}");
    }
}

#[test]
fn a_truncated_body_is_an_error_at_finish() {
    let body = b"--b\r\nContent-Length: 10\r\n\r\n01234";
    for sizes in [vec![1], vec![7], vec![100]] {
        assert_eq!(parse_in(body, "b", &sizes), Err(MultipartError::Truncated));
    }
    // Cut right after a part's end: still not the closing boundary.
    let cut = b"--b\r\n\r\nx\r\n--b";
    assert_eq!(parse_in(cut, "b", &[1]), Err(MultipartError::Truncated));
    assert_eq!(parse_in(b"", "b", &[1]), Err(MultipartError::Truncated));
}

#[test]
fn a_truncated_body_never_hands_out_a_partial_delimiter() {
    // The body is "abc" then the start of a delimiter: what was handed out before the cut
    // must not include the "\r\n--" that may be the delimiter.
    let mut parser = MultipartParser::new("boundary");
    parser.feed(b"--boundary\r\n\r\nabc\r\n--bou");
    let mut got = Vec::new();
    while let Some(event) = parser.next_event().unwrap() {
        if let MultipartEvent::Body(b) = event {
            got.extend_from_slice(b);
        }
    }
    assert_eq!(got, b"abc");
    assert_eq!(parser.finish(), Err(MultipartError::Truncated));
}

#[test]
fn oversized_headers_are_refused() {
    let mut body = b"--b\r\nX: ".to_vec();
    body.extend(std::iter::repeat_n(b'a', 200));
    body.extend_from_slice(b"\r\n\r\nx\r\n--b--");
    let mut parser = MultipartParser::with_max_header_bytes("b", 64);
    parser.feed(&body);
    assert_eq!(
        parser.next_event(),
        Err(MultipartError::HeadersTooLarge { limit: 64 })
    );
    // Fed a byte at a time, it stops as soon as the block passes the limit.
    let mut parser = MultipartParser::with_max_header_bytes("b", 64);
    let mut failed = None;
    for (i, byte) in body.iter().enumerate() {
        parser.feed(std::slice::from_ref(byte));
        if let Err(e) = parser.next_event() {
            failed = Some((i, e));
            break;
        }
    }
    let (at, err) = failed.expect("refused");
    assert!(at < 80, "refused only at byte {at}");
    assert_eq!(err, MultipartError::HeadersTooLarge { limit: 64 });
}

#[test]
fn a_bad_boundary_line_or_header_is_malformed() {
    assert!(matches!(
        parse_in(b"--b\r\nno colon here\r\n\r\nx\r\n--b--", "b", &[3]),
        Err(MultipartError::Malformed { .. })
    ));
    assert!(matches!(
        parse_in(b"--b \tx\r\n\r\n--b--", "b", &[1]),
        Err(MultipartError::Malformed { .. })
    ));
}

#[test]
fn memory_holds_one_piece_not_a_whole_part() {
    let mut parser = MultipartParser::new("b");
    parser.feed(b"--b\r\n\r\n");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(MultipartEvent::Headers(_)))
    ));
    let piece = vec![b'x'; 64 * 1024];
    let mut total = 0;
    for _ in 0..64 {
        parser.feed(&piece);
        while let Some(MultipartEvent::Body(b)) = parser.next_event().unwrap() {
            total += b.len();
        }
        assert!(parser.buf.capacity() < 4 * piece.len());
    }
    assert_eq!(total, 64 * piece.len());
}

#[test]
fn content_type_parameters() {
    assert_eq!(
        boundary("multipart/mixed;boundary=\"abc\"; charset=x").as_deref(),
        Some("abc")
    );
    assert_eq!(
        boundary("multipart/mixed; charset=\"a;b\"; BOUNDARY=z").as_deref(),
        Some("z")
    );
    assert_eq!(boundary("multipart/mixed"), None);
    assert_eq!(boundary("multipart/mixed; boundary="), None);
    assert_eq!(
        param("application/json; error=\"true\"", "error").as_deref(),
        Some("true")
    );
    assert_eq!(
        media_type(" Application/JSON ; error=true"),
        "application/json"
    );
    let h = PartHeaders::from_pairs([("Content-Length", "x1")]);
    assert!(h.content_length().is_err());
}
