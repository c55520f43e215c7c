//! Attachments streamed from source to target, as CouchDB's replicator moves them: a
//! revision the target needs attachments of is fetched with `follows` stubs (no data), and
//! written alone with each attachment's bytes read from the source as a stream
//! (`multipart/related` to a remote database). Which revisions go this way is `write.rs`'s
//! decision; the wire format is `settee-couch`'s.
//!
//! [`store_attachment_body`] and [`store_write`] are the one place that moves attachment
//! bytes out of and into a local store for this: today's store reads an attachment whole
//! (cut into parts here) and takes a replicated revision's attachments only inline, so
//! `store_write` collects each attachment as it arrives and writes the revision with them;
//! a store with streamed reads and writes replaces those two bodies alone.

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::value::RawValue;
use serde_json::Value;
use settee_couch::{AttachmentBody, AttachmentUpload};
use settee_revtree::Rev;
use settee_store::Database;

use crate::blocking::blocking;
use crate::budget::ByteBudget;
use crate::peer::{DocFailure, FetchRequest, Peer};
use crate::{Error, Result};
use settee_couch::BulkGetDoc;

/// Marks the attachments of `doc` (a revision with `_revisions` and attachment stubs that
/// carry `revpos` and `length`) that a reader holding `atts_since` needs as `follows`:
/// those whose `revpos` is above the newest of `atts_since` on the revision's own path
/// (every one when none is on it), CouchDB's `atts_since` rule. The others stay stubs.
pub(crate) fn mark_follows(doc: &mut Value, atts_since: &[Rev]) {
    let path: Vec<Rev> = serde_json::from_value::<settee_revtree::Revisions>(
        doc.get("_revisions").cloned().unwrap_or(Value::Null),
    )
    .ok()
    .and_then(|r| r.to_path().ok())
    .map(|p| p.revs().collect())
    .unwrap_or_default();
    let since = path
        .iter()
        .filter(|r| atts_since.contains(r))
        .map(Rev::pos)
        .max();
    let Some(atts) = doc.get_mut("_attachments").and_then(Value::as_object_mut) else {
        return;
    };
    for stub in atts.values_mut() {
        let Some(stub) = stub.as_object_mut() else {
            continue;
        };
        let revpos = stub.get("revpos").and_then(Value::as_u64);
        let needed = match (since, revpos) {
            (Some(since), Some(revpos)) => revpos > since,
            _ => true,
        };
        if needed && stub.get("length").is_some_and(Value::is_u64) {
            stub.remove("stub");
            stub.insert("follows".into(), Value::Bool(true));
        }
    }
}

/// Whether `doc` (JSON text) has an attachment marked `follows`.
pub(crate) fn has_follows(doc: &RawValue) -> bool {
    // The text test is a cheap filter; the parse decides (a body may say "follows" too).
    doc.get().contains("\"follows\"")
        && serde_json::from_str::<Value>(doc.get())
            .ok()
            .is_some_and(|d| !follows_of(&d).is_empty())
}

/// One attachment a `follows` stub announces.
struct Follows {
    name: String,
    content_type: String,
    length: u64,
}

fn follows_of(doc: &Value) -> Vec<Follows> {
    let Some(atts) = doc.get("_attachments").and_then(Value::as_object) else {
        return Vec::new();
    };
    atts.iter()
        .filter(|(_, s)| s.get("follows").and_then(Value::as_bool) == Some(true))
        .filter_map(|(name, s)| {
            Some(Follows {
                name: name.clone(),
                content_type: s
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                length: s.get("length")?.as_u64()?,
            })
        })
        .collect()
}

/// Writes one revision whose `follows` attachments are read from `source` as streams, while
/// holding as much of the byte budget as they are long (a store that reads an attachment
/// whole holds that much; the whole budget at most, so one larger than it still goes).
/// Returns the target's refusals, and an attachment the source no longer has as this
/// document's failure.
///
/// # Errors
/// The peers' errors other than a missing attachment.
pub(crate) async fn write_one<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    budget: &ByteBudget,
    doc: Box<RawValue>,
    origin: &str,
) -> Result<Vec<DocFailure>> {
    let value: Value = serde_json::from_str(doc.get()).map_err(|e| Error::BadRequest {
        reason: format!("a fetched document is not JSON: {e}"),
    })?;
    let id = value.get("_id").and_then(Value::as_str).unwrap_or_default();
    let rev = value.get("_rev").and_then(Value::as_str);
    let failure = |error: &str, reason: String| DocFailure {
        id: id.to_owned(),
        rev: rev.map(str::to_owned),
        error: error.to_owned(),
        reason,
    };
    let Some(rev) = rev.and_then(|r| r.parse::<Rev>().ok()) else {
        return Ok(vec![failure("bad_request", "no valid _rev".into())]);
    };
    let follows = follows_of(&value);
    let total = follows
        .iter()
        .map(|f| f.length)
        .fold(0, u64::saturating_add);
    let _held = budget.reserve_bytes(total).await;
    let mut uploads = Vec::with_capacity(follows.len());
    for f in follows {
        let body = match source.attachment_body(id, &rev, &f.name).await {
            Ok(body) => body,
            Err(Error::Store { source: e, .. }) if e.is_not_found() => {
                return Ok(vec![failure("not_found", e.to_string())]);
            }
            Err(e) => return Err(e),
        };
        uploads.push(AttachmentUpload {
            name: f.name,
            content_type: f.content_type,
            length: f.length,
            body,
            encoding: None,
        });
    }
    tracing::trace!(%id, %rev, attachments = uploads.len(), bytes = total, "writing a revision with streamed attachments");
    target.write_streamed(doc, uploads, origin).await
}

/// Writes revisions with `follows` attachments (fetched as stubs) by reading them again
/// from `source` in one multipart answer ([`Peer::pull_streamed`]), each written as its
/// parts arrive ([`Peer::write_streamed`]) while holding as much of the byte budget as its
/// attachments are long: CouchDB's replicator's way, one request for all of them, gzipped
/// attachments kept gzipped. A source that cannot answer so, and a revision its answer left
/// out, go through [`write_one`]. Returns the target's refusals and the revisions the source
/// no longer gives.
///
/// # Errors
/// The peers' errors; a connection lost mid-answer is the source's transient error (what
/// the target was given of an unfinished revision is never written: its upload fails).
pub(crate) async fn write_pulled<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    budget: &ByteBudget,
    docs: Vec<Box<RawValue>>,
    origin: &str,
) -> Result<Vec<DocFailure>> {
    let reqs: Vec<Option<FetchRequest>> = docs.iter().map(|d| request_of(d)).collect();
    let asked: Vec<FetchRequest> = reqs.iter().flatten().cloned().collect();
    let pulled = if asked.is_empty() {
        None
    } else {
        source.pull_streamed(asked).await?
    };
    let mut refused = Vec::new();
    let mut answered = vec![false; docs.len()];
    if let Some(mut pulled) = pulled {
        // `request` indexes `asked`; map it back to `docs`.
        let index: Vec<usize> = (0..docs.len()).filter(|&i| reqs[i].is_some()).collect();
        while let Some(d) = pulled.next_doc().await.map_err(Error::Couch)? {
            if let Some(&i) = d.request.and_then(|r| index.get(r)) {
                answered[i] = true;
            }
            match d.doc {
                BulkGetDoc::Ok(doc) => {
                    let total = d
                        .attachments
                        .iter()
                        .map(|a| a.length)
                        .fold(0, u64::saturating_add);
                    let _held = budget.reserve_bytes(total).await;
                    tracing::trace!(id = %d.id, attachments = d.attachments.len(), bytes = total, "writing a pulled revision with streamed attachments");
                    refused.extend(if d.attachments.is_empty() {
                        target.write(vec![doc], origin).await?
                    } else {
                        target.write_streamed(doc, d.attachments, origin).await?
                    });
                }
                BulkGetDoc::Missing(rev) => refused.push(DocFailure {
                    id: d.id,
                    rev: rev.map(|r| r.to_string()),
                    error: "not_found".into(),
                    reason: "missing".into(),
                }),
                BulkGetDoc::Error(e) => refused.push(DocFailure {
                    id: d.id,
                    rev: e.rev,
                    error: e.error,
                    reason: e.reason,
                }),
            }
        }
    }
    for (doc, done) in docs.into_iter().zip(answered) {
        if !done {
            refused.extend(write_one(source, target, budget, doc, origin).await?);
        }
    }
    Ok(refused)
}

/// The request that reads `doc` (a fetched revision with `follows` stubs) again with the
/// same attachments following: `atts_since` is the revision on its path at the newest
/// `revpos` among its other stubs (none when every attachment follows, or the path is
/// stemmed short of it: then all follow, which is correct, only larger).
fn request_of(doc: &RawValue) -> Option<FetchRequest> {
    let value: Value = serde_json::from_str(doc.get()).ok()?;
    let id = value.get("_id")?.as_str()?.to_owned();
    let rev: Rev = value.get("_rev")?.as_str()?.parse().ok()?;
    let kept = value
        .get("_attachments")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, s)| s.get("follows").and_then(Value::as_bool) != Some(true))
        .filter_map(|(_, s)| s.get("revpos").and_then(Value::as_u64))
        .max();
    let path: Vec<Rev> = serde_json::from_value::<settee_revtree::Revisions>(
        value.get("_revisions").cloned().unwrap_or(Value::Null),
    )
    .ok()
    .and_then(|r| r.to_path().ok())
    .map(|p| p.revs().collect())
    .unwrap_or_default();
    let atts_since = kept
        .and_then(|pos| path.into_iter().find(|r| r.pos() == pos))
        .into_iter()
        .collect();
    Some(FetchRequest {
        id,
        rev,
        atts_since,
    })
}

/// The bytes of attachment `name` of `id` at `rev` in a local store, as a stream of parts.
///
/// # Errors
/// The store's (`not_found` when the revision or attachment is gone).
pub(crate) async fn store_attachment_body(
    db: &Database,
    id: &str,
    rev: &Rev,
    name: &str,
) -> Result<AttachmentBody> {
    let (id, rev, name) = (id.to_owned(), rev.clone(), name.to_owned());
    let reader = blocking(db, move |db| db.attachment_reader(&id, Some(&rev), &name)).await?;
    Ok(chunk_stream(reader))
}

/// A store's attachment reader as a stream of its chunks, each read on the blocking pool:
/// one chunk (at most `settee_store::CHUNK_SIZE`) in memory at a time. What every async
/// reader of a local store's attachment uses (the push here, the facade's reads).
pub fn chunk_stream(reader: settee_store::AttachmentReader) -> AttachmentBody {
    let body = futures::stream::try_unfold(reader, |mut reader| async move {
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = reader.next_chunk();
            (reader, chunk)
        })
        .await
        .map_err(std::io::Error::other)?;
        match chunk.map_err(std::io::Error::other)? {
            Some(bytes) => Ok(Some((Bytes::from(bytes), reader))),
            None => Ok(None),
        }
    });
    Box::pin(body)
}

/// Writes `doc` (a replicated revision with `follows` stubs) to a local store with the
/// bytes of `attachments`, as [`Peer::write_streamed`] does for a store. Today's store takes
/// a replicated revision's attachments only inline, so each attachment is base64-encoded as
/// its parts arrive, straight into the document's JSON text (never whole as bytes too), its
/// length checked against the stub's, and the revision written with them
/// (`Database::bulk_docs_json_from`, recording `origin`). A length that does not match is
/// the document's failure.
///
/// # Errors
/// [`Error::AttachmentInterrupted`] when an attachment's stream fails (transient); the
/// store's errors.
pub(crate) async fn store_write(
    db: &Database,
    doc: Box<RawValue>,
    attachments: Vec<AttachmentUpload>,
    origin: &str,
) -> Result<Vec<DocFailure>> {
    let not_json = |e: serde_json::Error| Error::BadRequest {
        reason: format!("a fetched document is not JSON: {e}"),
    };
    let mut value: Value = serde_json::from_str(doc.get()).map_err(not_json)?;
    drop(doc);
    let id = value
        .get("_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let rev = value.get("_rev").and_then(Value::as_str).map(str::to_owned);
    let mut stubs = match value.as_object_mut().and_then(|o| o.remove("_attachments")) {
        Some(Value::Object(stubs)) => stubs,
        _ => serde_json::Map::new(),
    };
    // The text: the document without `_attachments`, then `_attachments` written out here,
    // each streamed attachment's `data` encoded into it part by part.
    let head = serde_json::to_string(&value).map_err(not_json)?;
    drop(value);
    let total: u64 = attachments
        .iter()
        .map(|a| a.length)
        .fold(0, u64::saturating_add);
    let mut text = String::with_capacity(
        head.len() + usize::try_from(total.saturating_mul(4) / 3).unwrap_or(0) + 1024,
    );
    text.push_str(head.strip_suffix('}').unwrap_or("{"));
    if text.len() > 1 {
        text.push(',');
    }
    text.push_str("\"_attachments\":{");
    let mut first = true;
    let mut entry = |text: &mut String, name: &str, stub: &Value| -> Result<()> {
        if !first {
            text.push(',');
        }
        first = false;
        text.push_str(&serde_json::to_string(name).map_err(not_json)?);
        text.push(':');
        text.push_str(&serde_json::to_string(stub).map_err(not_json)?);
        Ok(())
    };
    for mut a in attachments {
        let Some(Value::Object(mut stub)) = stubs.remove(&a.name) else {
            continue;
        };
        for k in ["follows", "length", "digest", "encoding", "encoded_length"] {
            // The store computes the digest and length of the bytes it is given.
            stub.remove(k);
        }
        let empty = stub.is_empty();
        entry(&mut text, &a.name, &Value::Object(stub))?;
        // The stub's closing brace gives way to `"data":"`, the encoded bytes, `"}`.
        text.pop();
        text.push_str(if empty { "\"data\":\"" } else { ",\"data\":\"" });
        let mut encoded = Base64Appender::new("\"}".into());
        let mut read = 0u64;
        while let Some(part) = a.body.next().await {
            let part = part.map_err(|source| Error::AttachmentInterrupted {
                what: format!("attachment {} of {id}", a.name),
                source,
            })?;
            read = read.saturating_add(part.len() as u64);
            // The announced length bounds what is kept: a source that sends more is wrong.
            if read > a.length {
                break;
            }
            encoded.push(&mut text, &part);
        }
        if read != a.length {
            return Ok(vec![DocFailure {
                id,
                rev,
                error: "bad_request".into(),
                reason: format!(
                    "attachment {} has {read} bytes or more, its stub says {}",
                    a.name, a.length
                ),
            }]);
        }
        encoded.finish(&mut text);
    }
    // Stubs of attachments the target already holds, as they came.
    for (name, stub) in &stubs {
        entry(&mut text, name, stub)?;
    }
    text.push_str("}}");
    let raw = RawValue::from_string(text).map_err(not_json)?;
    let origin = origin.to_owned();
    let results = blocking(db, move |db| db.bulk_docs_json_from(&[raw], &origin)).await?;
    Ok(DocFailure::refused(results))
}

/// Base64 of a stream of parts, appended to a text as they come: whole groups of three
/// bytes are encoded at once, the rest carried to the next part.
struct Base64Appender {
    carry: Vec<u8>,
    /// What follows the encoded bytes (`"}`), put back by `finish`.
    tail: String,
}

impl Base64Appender {
    fn new(tail: String) -> Base64Appender {
        Base64Appender {
            carry: Vec::with_capacity(3),
            tail,
        }
    }

    fn push(&mut self, text: &mut String, mut part: &[u8]) {
        use base64::Engine as _;
        if !self.carry.is_empty() {
            let need = (3 - self.carry.len()).min(part.len());
            self.carry.extend_from_slice(&part[..need]);
            part = &part[need..];
            if self.carry.len() < 3 {
                return;
            }
            base64::engine::general_purpose::STANDARD.encode_string(&self.carry, text);
            self.carry.clear();
        }
        let whole = part.len() - part.len() % 3;
        base64::engine::general_purpose::STANDARD.encode_string(&part[..whole], text);
        self.carry.extend_from_slice(&part[whole..]);
    }

    fn finish(self, text: &mut String) {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode_string(&self.carry, text);
        text.push_str(&self.tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "_id": "d", "_rev": "3-c",
            "_revisions": {"start": 3, "ids": ["c", "b", "a"]},
            "_attachments": {
                "old": {"content_type": "text/plain", "revpos": 1, "length": 3, "digest": "md5-x", "stub": true},
                "new": {"content_type": "image/png", "revpos": 3, "length": 5, "digest": "md5-y", "stub": true}
            }
        })
    }

    #[test]
    fn only_attachments_newer_than_atts_since_on_the_path_follow() {
        let mut d = doc();
        mark_follows(&mut d, &["2-b".parse().unwrap()]);
        assert_eq!(d["_attachments"]["old"]["stub"], json!(true));
        assert_eq!(d["_attachments"]["old"].get("follows"), None);
        assert_eq!(d["_attachments"]["new"]["follows"], json!(true));
        assert_eq!(d["_attachments"]["new"].get("stub"), None);
        assert_eq!(d["_attachments"]["new"]["revpos"], json!(3), "revpos kept");
        let names: Vec<String> = follows_of(&d).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["new"]);
    }

    #[test]
    fn a_revision_off_the_path_or_none_sends_every_attachment() {
        for since in [vec![], vec!["2-other".parse().unwrap()]] {
            let mut d = doc();
            mark_follows(&mut d, &since);
            assert_eq!(follows_of(&d).len(), 2, "{since:?}");
            let raw = serde_json::value::to_raw_value(&d).unwrap();
            assert!(has_follows(&raw));
        }
        let raw = serde_json::value::to_raw_value(&json!({"_id": "x", "note": "follows"})).unwrap();
        assert!(!has_follows(&raw));
    }

    #[test]
    fn base64_appended_part_by_part_is_the_whole_base64() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        for cut in [1usize, 2, 3, 4, 5, 64, 999] {
            let mut text = String::from("[");
            let mut enc = Base64Appender::new("]".into());
            for part in data.chunks(cut) {
                enc.push(&mut text, part);
            }
            enc.finish(&mut text);
            let want = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(text, format!("[{want}]"), "parts of {cut}");
        }
    }

    #[tokio::test]
    async fn streamed_attachments_reach_the_store_with_the_held_stubs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        let data: Vec<u8> = (0..settee_store::CHUNK_SIZE + 5)
            .map(|i| (i % 13) as u8)
            .collect();
        let doc = json!({
            "_id": "d", "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}, "n": 1,
            "_attachments": {"x.bin": {"content_type": "application/octet-stream",
                "revpos": 1, "length": data.len(), "follows": true, "digest": "md5-whatever"}}
        });
        let parts: Vec<std::io::Result<Bytes>> = data
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let upload = AttachmentUpload {
            name: "x.bin".into(),
            content_type: "application/octet-stream".into(),
            length: data.len() as u64,
            body: Box::pin(futures::stream::iter(parts)),
            encoding: None,
        };
        let raw = serde_json::value::to_raw_value(&doc).unwrap();
        let refused = store_write(&db, raw, vec![upload], "remote").await.unwrap();
        assert_eq!(refused, vec![]);
        let att = db.attachment("d", None, "x.bin").unwrap();
        assert_eq!(att.data, data);
        assert_eq!(db.get("d", &Default::default()).unwrap()["n"], 1);

        // A stream shorter than its stub is the document's failure, and nothing is written.
        let short = AttachmentUpload {
            name: "x.bin".into(),
            content_type: "text/plain".into(),
            length: 10,
            body: Box::pin(futures::stream::iter(vec![Ok(Bytes::from_static(b"abc"))])),
            encoding: None,
        };
        let doc2 = json!({"_id": "e", "_rev": "1-b", "_revisions": {"start": 1, "ids": ["b"]},
            "_attachments": {"x.bin": {"content_type": "text/plain", "revpos": 1, "length": 10, "follows": true}}});
        let raw = serde_json::value::to_raw_value(&doc2).unwrap();
        let refused = store_write(&db, raw, vec![short], "remote").await.unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].error, "bad_request");
        assert!(db.get("e", &Default::default()).is_err());
    }

    #[tokio::test]
    async fn a_stored_attachment_streams_in_parts_that_add_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        let data: Vec<u8> = (0..settee_store::CHUNK_SIZE * 2 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let r = db
            .put_attachment("d", None, "a.bin", "application/octet-stream", data.clone())
            .unwrap();
        let body = store_attachment_body(&db, "d", r.rev.as_ref().unwrap(), "a.bin")
            .await
            .unwrap();
        use futures::TryStreamExt;
        let parts: Vec<Bytes> = body.try_collect().await.unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), data);
    }
}
