//! MIME multipart bodies (RFC 2046) read incrementally, without I/O: [`MultipartParser`] is
//! fed byte slices as they arrive and hands back [`MultipartEvent`]s (a part's headers, its
//! body bytes, its end, the end of the whole body). It holds one fed slice plus a boundary's
//! length of carried-over bytes, never a whole part, so a reader can stream a part of any
//! size. Helpers read the parameters of a `Content-Type` ([`boundary`], [`media_type`],
//! [`param`]) and a part's headers ([`PartHeaders`]).
//!
//! CouchDB speaks multipart in `multipart/related` documents (the JSON, then the bytes of
//! each `"follows": true` attachment) and in the `multipart/mixed` answers of `open_revs`
//! and `_bulk_get` (one part per revision, itself `multipart/related` when it carries
//! attachment bytes). A nested body is the caller's business: for a part whose type is
//! `multipart/*` it creates an inner parser and feeds it that part's body bytes.
//!
//! **Boundary:** bytes in, events out. What a part means (a document, an attachment), and
//! checking a part's length against its `Content-Length`, belong to the caller.

use std::fmt;

use memchr::memmem;

/// The largest header block of one part that [`MultipartParser::new`] accepts: CouchDB's
/// part headers are a few lines; a bigger block is an error rather than a growing buffer.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultipartError {
    /// The body ended before its closing boundary (`--boundary--`).
    Truncated,
    /// A part's header block is longer than the parser's limit.
    HeadersTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not multipart as RFC 2046 writes it.
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

impl MultipartError {
    fn malformed(reason: impl Into<String>) -> Self {
        MultipartError::Malformed {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::Truncated => {
                f.write_str("multipart body ended before its closing boundary")
            }
            MultipartError::HeadersTooLarge { limit } => {
                write!(f, "multipart part headers longer than {limit} bytes")
            }
            MultipartError::Malformed { reason } => write!(f, "malformed multipart body: {reason}"),
        }
    }
}

impl std::error::Error for MultipartError {}

/// A part's headers, in the order sent; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    fields: Vec<(String, String)>,
}

impl PartHeaders {
    /// The value of the first header named `name` (any case).
    ///
    /// ```
    /// let headers = settee_wire::PartHeaders::from_pairs([("Content-Type", "text/plain")]);
    /// assert_eq!(headers.get("content-type"), Some("text/plain"));
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Headers from `(name, value)` pairs (for tests and for callers that build parts).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        PartHeaders {
            fields: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every `(name, value)`, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `Content-Type`, when sent.
    pub fn content_type(&self) -> Option<&str> {
        self.get("content-type")
    }

    /// `Content-Length`, when sent.
    ///
    /// # Errors
    /// [`MultipartError::Malformed`] when it is not a decimal number.
    pub fn content_length(&self) -> Result<Option<u64>, MultipartError> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                MultipartError::malformed(format!("Content-Length {v:?} is not a number"))
            }),
        }
    }

    /// The `filename` parameter of `Content-Disposition`, when sent.
    pub fn filename(&self) -> Option<String> {
        param(self.get("content-disposition")?, "filename")
    }
}

/// What [`MultipartParser::next_event`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartEvent<'a> {
    /// A part begins; its headers.
    Headers(PartHeaders),
    /// The next bytes of the current part's body (never empty; a part's body may come in
    /// any number of these).
    Body(&'a [u8]),
    /// The current part's body is complete.
    PartEnd,
    /// The closing boundary: the body is complete (an epilogue after it is ignored).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// Where the delimiter is in the unread bytes.
enum Scan {
    /// A delimiter starts here.
    Found(usize),
    /// No delimiter yet; the bytes before this index cannot belong to one.
    Before(usize),
}

/// An incremental multipart reader: [`feed`](Self::feed) it bytes, then call
/// [`next_event`](Self::next_event) until it answers `None` (it needs more bytes); when the
/// input ends, [`finish`](Self::finish) says whether the body was complete.
///
/// ```
/// use settee_wire::{MultipartEvent, MultipartParser};
/// let body = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
/// let mut parser = MultipartParser::new("b");
/// let mut text = Vec::new();
/// for piece in body.chunks(3) {
///     parser.feed(piece);
///     while let Some(event) = parser.next_event()? {
///         if let MultipartEvent::Body(bytes) = event {
///             text.extend_from_slice(bytes);
///         }
///     }
/// }
/// parser.finish()?;
/// assert_eq!(text, b"hello");
/// # Ok::<(), settee_wire::MultipartError>(())
/// ```
pub struct MultipartParser {
    /// `CRLF--boundary`: every delimiter, the first included (the body is read as if a
    /// CRLF came before it, so a delimiter on the first line needs no special case).
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    buf: Vec<u8>,
    /// How much of `buf` has been handed out or skipped.
    pos: usize,
    state: State,
    max_header_bytes: usize,
}

impl fmt::Debug for MultipartParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartParser")
            .field("delimiter", &String::from_utf8_lossy(&self.delimiter))
            .field("state", &self.state)
            .field("buffered", &(self.buf.len() - self.pos))
            .finish()
    }
}

impl MultipartParser {
    /// A parser for a body whose boundary is `boundary` (the parameter's value, quotes
    /// removed: see [`boundary`]), with part headers up to [`DEFAULT_MAX_HEADER_BYTES`].
    pub fn new(boundary: &str) -> Self {
        Self::with_max_header_bytes(boundary, DEFAULT_MAX_HEADER_BYTES)
    }

    /// As [`new`](Self::new), with part headers up to `max_header_bytes`.
    pub fn with_max_header_bytes(boundary: &str, max_header_bytes: usize) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        let finder = memmem::Finder::new(&delimiter).into_owned();
        MultipartParser {
            delimiter,
            finder,
            buf: b"\r\n".to_vec(),
            pos: 0,
            state: State::Preamble,
            max_header_bytes,
        }
    }

    /// Adds the next bytes of the body. Bytes after the closing boundary are ignored.
    pub fn feed(&mut self, data: &[u8]) {
        if self.state == State::Done {
            return;
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.extend_from_slice(data);
    }

    /// Whether the closing boundary has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Says that the input has ended.
    ///
    /// # Errors
    /// [`MultipartError::Truncated`] unless the closing boundary was read.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(MultipartError::Truncated),
        }
    }

    /// The next event from the bytes fed so far, or `None` when more are needed (or the
    /// body is complete). A [`MultipartEvent::Body`] borrows the parser: copy or forward
    /// it before the next call.
    ///
    /// # Errors
    /// [`MultipartError::HeadersTooLarge`]; [`MultipartError::Malformed`] for a boundary
    /// line or header block that is not RFC 2046's. After an error the parser is unusable.
    pub fn next_event(&mut self) -> Result<Option<MultipartEvent<'_>>, MultipartError> {
        loop {
            match self.state {
                State::Done => {
                    self.pos = self.buf.len();
                    return Ok(None);
                }
                State::Preamble => match self.scan() {
                    Scan::Found(at) => {
                        self.pos = at + self.delimiter.len();
                        self.state = State::AfterDelimiter;
                    }
                    Scan::Before(at) => {
                        self.pos = at;
                        return Ok(None);
                    }
                },
                State::AfterDelimiter => {
                    if !self.boundary_line()? {
                        return Ok(None);
                    }
                    if self.state == State::Done {
                        return Ok(Some(MultipartEvent::End));
                    }
                }
                State::Headers => {
                    return match self.headers()? {
                        Some(headers) => {
                            self.state = State::Body;
                            Ok(Some(MultipartEvent::Headers(headers)))
                        }
                        None => Ok(None),
                    };
                }
                State::Body => {
                    let start = self.pos;
                    return Ok(match self.scan() {
                        Scan::Found(at) if at == start => {
                            self.pos = at + self.delimiter.len();
                            self.state = State::AfterDelimiter;
                            Some(MultipartEvent::PartEnd)
                        }
                        Scan::Found(at) | Scan::Before(at) if at > start => {
                            self.pos = at;
                            Some(MultipartEvent::Body(&self.buf[start..at]))
                        }
                        _ => None,
                    });
                }
            }
        }
    }

    /// Looks for the next delimiter in the unread bytes. A match must be followed by `--`
    /// (the closing delimiter), transport padding or CRLF; anything else is body bytes
    /// that merely begin like a delimiter (RFC 2046 forbids them, but a nested boundary
    /// that extends the outer one would produce them).
    fn scan(&self) -> Scan {
        let len = self.delimiter.len();
        let mut from = self.pos;
        while let Some(found) = self.finder.find(&self.buf[from..]) {
            let at = from + found;
            match self.buf.get(at + len..at + len + 2) {
                Some([b'-', b'-']) | Some([b' ' | b'\t' | b'\r', _]) => return Scan::Found(at),
                Some(_) => {}
                None => match self.buf.get(at + len) {
                    None | Some(b'-' | b' ' | b'\t' | b'\r') => return Scan::Before(at),
                    Some(_) => {}
                },
            }
            from = at + 1;
        }
        // The longest tail of the buffer that could begin a delimiter must wait for more.
        let tail_from = self.buf.len().saturating_sub(len - 1).max(from);
        let keep = (tail_from..self.buf.len())
            .find(|&i| self.delimiter.starts_with(&self.buf[i..]))
            .unwrap_or(self.buf.len());
        Scan::Before(keep)
    }

    /// Reads the rest of a boundary line: `--` closes the body; otherwise transport padding
    /// then CRLF begins a part. `Ok(false)` when more bytes are needed.
    fn boundary_line(&mut self) -> Result<bool, MultipartError> {
        let rest = &self.buf[self.pos..];
        if rest.starts_with(b"--") {
            self.state = State::Done;
            self.pos = self.buf.len();
            return Ok(true);
        }
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        match rest.get(padding..padding + 2) {
            Some(b"\r\n") => {
                self.pos += padding + 2;
                self.state = State::Headers;
                Ok(true)
            }
            Some(_) => Err(MultipartError::malformed(
                "a boundary is followed by neither CRLF nor --",
            )),
            None if rest == b"-" || padding <= self.max_header_bytes => Ok(false),
            None => Err(MultipartError::HeadersTooLarge {
                limit: self.max_header_bytes,
            }),
        }
    }

    /// Reads a part's header block, up to and including the empty line after it.
    fn headers(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        let rest = &self.buf[self.pos..];
        if rest.starts_with(b"\r\n") {
            self.pos += 2;
            return Ok(Some(PartHeaders::default()));
        }
        let Some(end) = memmem::find(rest, b"\r\n\r\n") else {
            if rest.len() > self.max_header_bytes {
                return Err(MultipartError::HeadersTooLarge {
                    limit: self.max_header_bytes,
                });
            }
            return Ok(None);
        };
        if end > self.max_header_bytes {
            return Err(MultipartError::HeadersTooLarge {
                limit: self.max_header_bytes,
            });
        }
        let block = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 4;
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                // An obsolete folded line continues the previous header's value.
                let Some((_, value)) = fields.last_mut() else {
                    return Err(MultipartError::malformed("a part's headers begin folded"));
                };
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| MultipartError::malformed(format!("bad part header {line:?}")))?;
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Some(PartHeaders { fields }))
    }
}

/// The media type of a `Content-Type` value, lowercased, without parameters:
/// `"multipart/related"` for `"Multipart/Related; boundary=x"`.
///
/// ```
/// assert_eq!(settee_wire::media_type("Multipart/Mixed; boundary=x"), "multipart/mixed");
/// ```
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a multipart `Content-Type`, unquoted. CouchDB's nested
/// `multipart/related` parts send it unquoted and beginning with `--`.
///
/// ```
/// assert_eq!(settee_wire::boundary("multipart/related; boundary=--abc").as_deref(), Some("--abc"));
/// assert_eq!(settee_wire::boundary(r#"multipart/mixed; boundary="a b""#).as_deref(), Some("a b"));
/// ```
pub fn boundary(content_type: &str) -> Option<String> {
    param(content_type, "boundary").filter(|b| !b.is_empty())
}

/// The parameter `name` (any case) of a header value with `;`-separated parameters
/// (`Content-Type`, `Content-Disposition`), its quotes and backslash escapes removed.
///
/// ```
/// let cd = r#"attachment; filename="a \"b\".txt""#;
/// assert_eq!(settee_wire::param(cd, "filename").as_deref(), Some(r#"a "b".txt"#));
/// ```
pub fn param(value: &str, name: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..eq].trim();
        if !rest[eq..].starts_with('=') {
            rest = &rest[eq..];
            continue;
        }
        rest = rest[eq + 1..].trim_start();
        let parsed;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => out.push(c),
                }
            }
            parsed = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let stop = rest.find(';').unwrap_or(rest.len());
            parsed = rest[..stop].trim().to_owned();
            rest = &rest[stop..];
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(parsed);
        }
    }
}

#[cfg(test)]
#[path = "multipart_tests.rs"]
mod tests;
