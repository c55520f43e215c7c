//! JSON answers with attachments inline (`attachments=true` asked as JSON: `GET
//! /{db}/{docid}`, `open_revs`, `_bulk_get`, which PouchDB pulls with) written as they are
//! sent: the answer's JSON is built with each inlined attachment's `data` a token
//! ([`Inliner::doc`]), and its text goes out around the tokens, each attachment's bytes
//! read from the store and put in base64 as the answer reaches them (one store chunk in
//! memory). So an answer inlining a 1 GiB attachment costs the server what a small one
//! does, and its `Content-Length` is known before the first byte (base64 has a known
//! length). Which attachments are inlined is [`Follows::mark`]'s rule.
//!
//! [`Follows::mark`]: crate::multipart_answer::Follows::mark

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use crate::att_stream::{ByteStream, Segments};
use crate::error::HttpError;
use crate::multipart_answer::Follows;
use crate::registry::OpenDb;

/// The attachments of one JSON answer, by the token standing for each one's `data`.
pub(crate) struct Inliner {
    /// What every token starts with: random, so that no stored text is taken for one.
    prefix: String,
    /// How many tokens were given out.
    tokens: usize,
    files: HashMap<String, (ByteStream, u64)>,
}

impl Inliner {
    pub(crate) fn new() -> Inliner {
        Inliner {
            prefix: format!("settee-inline-{:032x}-", rand::random::<u128>()),
            tokens: 0,
            files: HashMap::new(),
        }
    }

    /// `doc`'s JSON, the attachments it sends inline with their `data` a token of this
    /// answer.
    pub(crate) fn doc(&mut self, open: &Arc<OpenDb>, doc: Follows) -> Value {
        let (prefix, tokens) = (&self.prefix, &mut self.tokens);
        let (value, files) = doc.inline(open, &mut || {
            *tokens += 1;
            format!("{prefix}{tokens}")
        });
        for (token, bytes, length) in files {
            self.files.insert(token, (bytes, length));
        }
        value
    }

    /// The answer `value` (holding documents made by [`Inliner::doc`]) with each token
    /// replaced by its attachment's bytes in base64.
    ///
    /// # Errors
    /// 500 when `value` cannot be serialized.
    pub(crate) fn response(
        mut self,
        status: StatusCode,
        value: &Value,
    ) -> Result<Response, HttpError> {
        let mut text = serde_json::to_string(value)
            .map_err(|e| HttpError::internal(format!("cannot serialize the response: {e}")))?;
        text.push('\n');
        // Where each token is: (start, end, its bytes); the text is then cut there.
        let quoted = format!("\"{}", self.prefix);
        let mut cuts = Vec::new();
        let mut from = 0;
        while let Some(at) = text[from..].find(&quoted).map(|i| from + i) {
            // The token's text, to its closing quote.
            let start = at + 1;
            let Some(end) = text[start..].find('"').map(|i| start + i) else {
                break;
            };
            // Another text that looks like a token (a document's) is kept as it is.
            if let Some(file) = self.files.remove(&text[start..end]) {
                cuts.push((start, end, file));
            }
            from = end;
        }
        let text = Bytes::from(text);
        let mut out = Segments::new();
        let mut from = 0;
        for (start, end, (bytes, length)) in cuts {
            out.bytes(text.slice(from..start));
            out.stream(base64_stream(bytes), base64_length(length));
            from = end;
        }
        out.bytes(text.slice(from..));
        let length = out.length();
        let mut res = Response::new(out.into_body());
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Ok(res)
    }
}

/// The length of the base64 (padded) of `n` bytes.
fn base64_length(n: u64) -> u64 {
    n.div_ceil(3) * 4
}

/// `bytes` in base64 (standard, padded), encoded as they come: at most two bytes wait for
/// the next piece.
fn base64_stream(mut bytes: ByteStream) -> ByteStream {
    let stream = async_stream::try_stream! {
        let mut carry: Vec<u8> = Vec::with_capacity(2);
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk?;
            carry.extend_from_slice(&chunk);
            let whole = carry.len() / 3 * 3;
            if whole > 0 {
                let text = base64::engine::general_purpose::STANDARD.encode(&carry[..whole]);
                carry.drain(..whole);
                yield Bytes::from(text);
            }
        }
        if !carry.is_empty() {
            yield Bytes::from(base64::engine::general_purpose::STANDARD.encode(&carry));
        }
    };
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn base64_of_pieces_is_the_base64_of_the_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        for piece in [1, 2, 3, 4, 5, 64, 1000] {
            for len in [0, 1, 2, 3, 10, 999, 1000] {
                let pieces: Vec<std::io::Result<Bytes>> = data[..len]
                    .chunks(piece)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let got: Vec<Bytes> = base64_stream(futures::stream::iter(pieces).boxed())
                    .map(|b| b.unwrap())
                    .collect()
                    .await;
                let got: Vec<u8> = got.concat();
                let want = base64::engine::general_purpose::STANDARD.encode(&data[..len]);
                assert_eq!(got, want.as_bytes(), "pieces of {piece}, {len} bytes");
                assert_eq!(base64_length(len as u64), want.len() as u64);
            }
        }
    }
}
