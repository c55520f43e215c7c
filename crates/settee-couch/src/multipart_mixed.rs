//! Reading a `multipart/mixed` answer (`_bulk_get` and `open_revs` with
//! `Accept: multipart/mixed`) as it arrives: [`Wire`] turns the response's byte stream into
//! [`Item`]s (a document part, its nested `multipart/related` parts and their bytes), and
//! [`Reader`] is what a document's attachment streams ([`AttachmentPart`]) and the document
//! reader (`bulk_get_multipart.rs`) share: the one response, read in order. The byte-level
//! parsing is `settee_wire::MultipartParser`'s.
//!
//! Memory: a network read, plus the [`Item`]s one read produces (its bytes copied once);
//! never a whole attachment.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use settee_wire::{boundary, media_type, MultipartEvent, MultipartParser, PartHeaders};

use crate::{Error, RedactedUrl, Result};

/// A response body as reqwest gives it.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One step through a `multipart/mixed` answer.
pub(crate) enum Item {
    /// A document's part begins (`multipart/related` or `application/json`).
    Doc(PartHeaders),
    /// Bytes of a document part that is not multipart (its JSON).
    DocBytes(Bytes),
    /// A part of a `multipart/related` document begins (its JSON first, then each
    /// attachment).
    Part(PartHeaders),
    /// Bytes of the current nested part.
    PartBytes(Bytes),
    /// The current nested part is complete.
    PartEnd,
    /// The document's part is complete.
    DocEnd,
    /// The answer is complete (repeated once reached).
    End,
}

impl Item {
    /// What the item is, for messages (never its bytes).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Item::Doc(_) => "a document part",
            Item::DocBytes(_) => "a document's bytes",
            Item::Part(_) => "a nested part",
            Item::PartBytes(_) => "a nested part's bytes",
            Item::PartEnd => "a nested part's end",
            Item::DocEnd => "a document's end",
            Item::End => "the answer's end",
        }
    }
}

/// The parsers over one response.
pub(crate) struct Wire {
    body: ByteStream,
    outer: MultipartParser,
    inner: Option<MultipartParser>,
    /// Items one fed read produced and not yet handed out.
    queue: VecDeque<Item>,
    eof: bool,
    method: Method,
    shown: RedactedUrl,
}

impl Wire {
    /// A reader of `body`, a `multipart/mixed` body whose boundary is `boundary`.
    pub(crate) fn new(
        body: ByteStream,
        boundary: &str,
        method: Method,
        shown: RedactedUrl,
    ) -> Wire {
        Wire {
            body,
            outer: MultipartParser::new(boundary),
            inner: None,
            queue: VecDeque::new(),
            eof: false,
            method,
            shown,
        }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Item>> {
        let invalid = |method: &Method, shown: &RedactedUrl, e: &dyn std::fmt::Display| {
            Error::invalid(method, shown, format!("multipart answer: {e}"))
        };
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Poll::Ready(Ok(item));
            }
            let event = self
                .outer
                .next_event()
                .map_err(|e| invalid(&self.method, &self.shown, &e))?;
            match event {
                Some(MultipartEvent::Headers(h)) => {
                    let ct = h.content_type().unwrap_or("application/json");
                    if media_type(ct).starts_with("multipart/") {
                        let Some(b) = boundary(ct) else {
                            return Poll::Ready(Err(invalid(
                                &self.method,
                                &self.shown,
                                &"a nested multipart part has no boundary",
                            )));
                        };
                        self.inner = Some(MultipartParser::new(&b));
                    }
                    self.queue.push_back(Item::Doc(h));
                }
                Some(MultipartEvent::Body(bytes)) => match &mut self.inner {
                    None => self
                        .queue
                        .push_back(Item::DocBytes(Bytes::copy_from_slice(bytes))),
                    Some(inner) => {
                        inner.feed(bytes);
                        while let Some(e) = inner
                            .next_event()
                            .map_err(|e| invalid(&self.method, &self.shown, &e))?
                        {
                            self.queue.push_back(match e {
                                MultipartEvent::Headers(h) => Item::Part(h),
                                MultipartEvent::Body(b) => {
                                    Item::PartBytes(Bytes::copy_from_slice(b))
                                }
                                MultipartEvent::PartEnd => Item::PartEnd,
                                MultipartEvent::End => continue,
                            });
                        }
                    }
                },
                Some(MultipartEvent::PartEnd) => {
                    if let Some(inner) = self.inner.take() {
                        inner.finish().map_err(|_| {
                            invalid(
                                &self.method,
                                &self.shown,
                                &"a document's nested parts end early",
                            )
                        })?;
                    }
                    self.queue.push_back(Item::DocEnd);
                }
                Some(MultipartEvent::End) => self.queue.push_back(Item::End),
                None => {
                    if self.outer.is_done() {
                        return Poll::Ready(Ok(Item::End));
                    }
                    if self.eof {
                        return Poll::Ready(Err(invalid(
                            &self.method,
                            &self.shown,
                            &"the answer ended before its closing boundary",
                        )));
                    }
                    match ready!(self.body.as_mut().poll_next(cx)) {
                        Some(Ok(chunk)) => self.outer.feed(&chunk),
                        Some(Err(e)) => {
                            return Poll::Ready(Err(Error::transport(&self.method, &self.shown, e)))
                        }
                        None => self.eof = true,
                    }
                }
            }
        }
    }
}

/// What the document reader and the attachment streams of one answer share.
pub(crate) struct Reader {
    /// The response being read; `None` between `open_revs` responses.
    pub(crate) wire: Option<Wire>,
    /// Counts the documents handed out: an attachment stream of an earlier one is stale.
    pub(crate) doc_seq: u64,
    /// Whether the current document's part has not reached [`Item::DocEnd`].
    pub(crate) doc_open: bool,
    /// The index of the next nested part of the current document (0 is its JSON).
    pub(crate) part_next: usize,
    /// Whether a nested part's bytes are being read.
    pub(crate) in_part: bool,
    /// Once reading failed, why; every later read fails too.
    failed: Option<String>,
    method: Method,
    shown: RedactedUrl,
}

impl Reader {
    pub(crate) fn new(wire: Option<Wire>, method: Method, shown: RedactedUrl) -> Reader {
        Reader {
            wire,
            doc_seq: 0,
            doc_open: false,
            part_next: 0,
            in_part: false,
            failed: None,
            method,
            shown,
        }
    }

    pub(crate) fn invalid(&self, detail: impl std::fmt::Display) -> Error {
        Error::invalid(
            &self.method,
            &self.shown,
            format!("multipart answer: {detail}"),
        )
    }

    /// Marks the answer failed (later reads fail) and returns the error.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// The next item of the current response ([`Item::End`] when there is none).
    pub(crate) fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Item>> {
        if let Some(why) = &self.failed {
            return Poll::Ready(Err(self.invalid(format!("an earlier read failed: {why}"))));
        }
        let Some(wire) = &mut self.wire else {
            return Poll::Ready(Ok(Item::End));
        };
        match ready!(wire.poll_item(cx)) {
            Ok(Item::DocEnd) => {
                self.doc_open = false;
                Poll::Ready(Ok(Item::DocEnd))
            }
            Ok(Item::Doc(h)) => {
                self.doc_open = true;
                Poll::Ready(Ok(Item::Doc(h)))
            }
            Ok(item) => Poll::Ready(Ok(item)),
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }
}

/// Locks `shared`; a panic elsewhere while it was held leaves the reader as it was, which
/// is safe to read on (every step leaves it consistent).
pub(crate) fn lock(shared: &Mutex<Reader>) -> MutexGuard<'_, Reader> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartState {
    Waiting,
    Reading,
    Done,
}

/// The bytes of one attachment of a `multipart/related` document, read from the shared
/// answer: nested part `index` of document `doc_seq`. It ends only after its part's closing
/// boundary, with exactly `expected` bytes given; anything else is an error.
pub(crate) struct AttachmentPart {
    shared: Arc<Mutex<Reader>>,
    doc_seq: u64,
    index: usize,
    name: String,
    expected: u64,
    read: u64,
    state: PartState,
}

impl AttachmentPart {
    pub(crate) fn new(
        shared: Arc<Mutex<Reader>>,
        doc_seq: u64,
        index: usize,
        name: String,
        expected: u64,
    ) -> AttachmentPart {
        AttachmentPart {
            shared,
            doc_seq,
            index,
            name,
            expected,
            read: 0,
            state: PartState::Waiting,
        }
    }

    fn error(&mut self, reader: &mut Reader, detail: String) -> std::io::Error {
        self.state = PartState::Done;
        let e = reader.invalid(format!("attachment {}: {detail}", self.name));
        std::io::Error::other(reader.fail(e))
    }

    fn poll_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let shared = self.shared.clone();
        let mut reader = lock(&shared);
        if reader.doc_seq != self.doc_seq {
            self.state = PartState::Done;
            return Poll::Ready(Some(Err(std::io::Error::other(reader.invalid(format!(
                "attachment {} read after its document was left",
                self.name
            ))))));
        }
        loop {
            let item = match ready!(reader.poll_item(cx)) {
                Ok(item) => item,
                Err(e) => {
                    self.state = PartState::Done;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
            };
            match (self.state, item) {
                (PartState::Reading, Item::PartBytes(b)) => {
                    self.read = self.read.saturating_add(b.len() as u64);
                    if self.read > self.expected {
                        let detail = format!("more than the {} bytes its stub says", self.expected);
                        return Poll::Ready(Some(Err(self.error(&mut reader, detail))));
                    }
                    return Poll::Ready(Some(Ok(b)));
                }
                (PartState::Reading, Item::PartEnd) => {
                    reader.in_part = false;
                    if self.read != self.expected {
                        let detail =
                            format!("{} bytes, its stub says {}", self.read, self.expected);
                        return Poll::Ready(Some(Err(self.error(&mut reader, detail))));
                    }
                    self.state = PartState::Done;
                    return Poll::Ready(None);
                }
                // The rest of an earlier attachment that its reader left unread.
                (PartState::Waiting, Item::PartBytes(_)) if reader.in_part => {}
                (PartState::Waiting, Item::PartEnd) if reader.in_part => reader.in_part = false,
                (PartState::Waiting, Item::Part(h)) if !reader.in_part => {
                    let at = reader.part_next;
                    reader.part_next += 1;
                    reader.in_part = true;
                    if at > self.index {
                        let detail = "read after a later attachment".to_owned();
                        return Poll::Ready(Some(Err(self.error(&mut reader, detail))));
                    }
                    if at == self.index {
                        match h.content_length() {
                            Ok(None) => {}
                            Ok(Some(n)) if n == self.expected => {}
                            Ok(Some(n)) => {
                                let detail =
                                    format!("Content-Length {n}, its stub says {}", self.expected);
                                return Poll::Ready(Some(Err(self.error(&mut reader, detail))));
                            }
                            Err(e) => {
                                return Poll::Ready(Some(Err(
                                    self.error(&mut reader, e.to_string())
                                )))
                            }
                        }
                        self.state = PartState::Reading;
                    }
                }
                (_, item) => {
                    let detail = format!("expected its bytes, found {}", item.name());
                    return Poll::Ready(Some(Err(self.error(&mut reader, detail))));
                }
            }
        }
    }
}

impl Stream for AttachmentPart {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.state == PartState::Done {
            return Poll::Ready(None);
        }
        this.poll_bytes(cx)
    }
}
