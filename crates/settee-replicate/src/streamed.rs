//! Attachments streamed from source to target, as CouchDB's replicator moves them: a
//! revision the target needs attachments of is fetched with `follows` stubs (no data), and
//! written alone with each attachment's bytes read from the source as a stream
//! (`multipart/related` to a remote database). Which revisions go this way is `write.rs`'s
//! decision; the wire format is `settee-couch`'s.
//!
//! [`store_attachment_body`] and [`store_write`] are the one place that moves attachment
//! bytes out of and into a local store for this, a chunk at a time both ways, and as the
//! store keeps them: an encoded attachment (CouchDB's gzipped text) leaves encoded, its
//! `follows` stub saying so (the store's fetch asks `att_encoding_info`), and arrives
//! staged encoded, so its digest stays CouchDB's. Whether a remote target takes encoded
//! bytes is `peer_couch.rs`'s decision; [`decoded`] is what it sends one that does not.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;
use settee_couch::{AttachmentBody, AttachmentEncoding, AttachmentUpload};
use settee_revtree::Rev;
use settee_store::{Database, Encoding, StagedAttachment};

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
    /// The number of bytes the source gives: the encoded length when `encoding` is set.
    length: u64,
    /// Set when the stub says the source keeps the attachment encoded
    /// (`att_encoding_info`): the source's [`Peer::attachment_body`] then gives the encoded
    /// bytes, as a store's does ([`store_attachment_body`]). A source whose reads decode
    /// must not say so in its `follows` stubs.
    encoding: Option<AttachmentEncoding>,
}

/// The encoding a stub reports (`encoding`, `encoded_length`, `length`, `digest`), with the
/// encoded length; `None` for an attachment kept as it is, or a stub that does not say all.
fn encoding_of(stub: &Value) -> Option<(AttachmentEncoding, u64)> {
    let encoding = stub.get("encoding")?.as_str()?;
    if encoding == "identity" {
        return None;
    }
    Some((
        AttachmentEncoding {
            encoding: encoding.to_owned(),
            length: stub.get("length")?.as_u64()?,
            digest: stub.get("digest")?.as_str()?.to_owned(),
        },
        stub.get("encoded_length")?.as_u64()?,
    ))
}

fn follows_of(doc: &Value) -> Vec<Follows> {
    let Some(atts) = doc.get("_attachments").and_then(Value::as_object) else {
        return Vec::new();
    };
    atts.iter()
        .filter(|(_, s)| s.get("follows").and_then(Value::as_bool) == Some(true))
        .filter_map(|(name, s)| {
            let (encoding, length) = match encoding_of(s) {
                Some((e, encoded_length)) => (Some(e), encoded_length),
                None => (None, s.get("length")?.as_u64()?),
            };
            Some(Follows {
                name: name.clone(),
                content_type: s
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                length,
                encoding,
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
            encoding: f.encoding,
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

/// The bytes of attachment `name` of `id` at `rev` in a local store, as a stream of parts,
/// as the store keeps them: encoded for an encoded attachment, as its `follows` stub from
/// the store's fetch says (`store_fetch.rs` always asks `att_encoding_info`).
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
    let reader = blocking(db, move |db| {
        db.attachment_reader_raw(&id, Some(&rev), &name)
    })
    .await?;
    Ok(chunk_stream(reader))
}

/// `upload` with its bytes decoded, for a target that does not keep encodings: gunzipped
/// as they stream (inflate's state and a buffer in memory), its length the decoded one, no
/// digest (the target computes its own). An upload that is not encoded is returned as is.
pub(crate) fn decoded(upload: AttachmentUpload) -> AttachmentUpload {
    let Some(e) = upload.encoding else {
        return upload;
    };
    let reader = tokio::io::BufReader::new(tokio_util::io::StreamReader::new(upload.body));
    let gunzip = async_compression::tokio::bufread::GzipDecoder::new(reader);
    AttachmentUpload::new(
        upload.name,
        upload.content_type,
        e.length,
        Box::pin(tokio_util::io::ReaderStream::new(gunzip)),
    )
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
/// bytes of `attachments`, as [`Peer::write_streamed`] does for a store: each attachment is
/// staged into the store as its parts arrive ([`stage_upload`]: one chunk of it in memory,
/// never base64), encoded ones as they are, then the revision is written with them in one
/// call (`Database::bulk_doc_staged_from`, recording `origin`). A length, digest or
/// encoding that does not check is the document's failure, and what was staged is removed.
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
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "_id", default)]
        id: String,
        #[serde(rename = "_rev")]
        rev: Option<String>,
    }
    let head: Head = serde_json::from_str(doc.get()).map_err(|e| Error::BadRequest {
        reason: format!("a fetched document is not JSON: {e}"),
    })?;
    let mut staged = Vec::with_capacity(attachments.len());
    for upload in attachments {
        let name = upload.name.clone();
        match stage_upload(db, upload, &head.id).await? {
            Ok(s) => staged.push((name, s)),
            Err(reason) => {
                return Ok(vec![DocFailure {
                    id: head.id,
                    rev: head.rev,
                    error: "bad_request".into(),
                    reason: format!("attachment {name}: {reason}"),
                }]);
            }
        }
    }
    let origin = origin.to_owned();
    let result = blocking(db, move |db| db.bulk_doc_staged_from(&doc, staged, &origin)).await?;
    Ok(DocFailure::refused(vec![result]))
}

/// Stages one upload into the store as its parts arrive: the stream read through a
/// synchronous bridge on the blocking pool, so the store takes it a chunk at a time. An
/// encoded upload is staged encoded (`Database::stage_attachment_encoded`, which checks
/// its digest and decoded length); either way the bytes must be exactly `length` long.
/// `Ok(Err(reason))` when the bytes do not check (the document's failure; nothing staged
/// stays).
///
/// # Errors
/// [`Error::AttachmentInterrupted`] when the stream fails; the store's other errors.
async fn stage_upload(
    db: &Database,
    upload: AttachmentUpload,
    id: &str,
) -> Result<std::result::Result<StagedAttachment, String>> {
    let AttachmentUpload {
        name,
        length,
        body,
        encoding,
        ..
    } = upload;
    let (kind, decoded_length, digest) = match encoding {
        None => (Encoding::Identity, length, None),
        Some(e) => match e.encoding.parse::<Encoding>() {
            Ok(kind) => (kind, e.length, Some(e.digest)),
            Err(_) => return Ok(Err(format!("unknown encoding {:?}", e.encoding))),
        },
    };
    let store = db.clone(); // cheap: an Arc-backed handle
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    // One byte past the announced length is enough to know a source sends too many.
    let staged = tokio::task::spawn_blocking(move || {
        let reader = std::io::Read::take(reader, length.saturating_add(1));
        store.stage_attachment_encoded(reader, kind, decoded_length, digest.as_deref())
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    match staged {
        Ok(s) if s.stored_length() == length => Ok(Ok(s)),
        Ok(s) => Ok(Err(format!(
            "{} bytes or more arrived, the stub says {length}",
            s.stored_length()
        ))),
        Err(settee_store::Error::AttachmentSource { source }) => {
            Err(Error::AttachmentInterrupted {
                what: format!("attachment {name} of {id}"),
                source,
            })
        }
        Err(e) if e.name() == "bad_request" => Ok(Err(e.to_string())),
        Err(source) => Err(Error::Store {
            path: db.path().display().to_string(),
            source,
        }),
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

    async fn gzip(data: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(data)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    fn parts(bytes: &[u8]) -> AttachmentBody {
        let parts: Vec<std::io::Result<Bytes>> = bytes
            .chunks(4000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    #[tokio::test]
    async fn an_encoded_upload_is_kept_encoded_and_pushed_encoded_or_decoded() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        let text = b"a line of text, again and again. ".repeat(30_000);
        let gz = gzip(&text).await;
        let digest = settee_store::attachment_digest(&gz);
        let upload = |digest: &str| AttachmentUpload {
            name: "t.txt".into(),
            content_type: "text/plain".into(),
            length: gz.len() as u64,
            body: parts(&gz),
            encoding: Some(AttachmentEncoding {
                encoding: "gzip".into(),
                length: text.len() as u64,
                digest: digest.into(),
            }),
        };
        let doc = |id: &str| {
            serde_json::value::to_raw_value(&json!({"_id": id, "_rev": "1-a",
                "_attachments": {"t.txt": {"content_type": "text/plain", "revpos": 1,
                    "follows": true, "length": text.len(), "encoding": "gzip",
                    "encoded_length": gz.len(), "digest": digest}}}))
            .unwrap()
        };
        // Another digest than the bytes' is the document's failure; nothing is staged.
        let refused = store_write(&db, doc("bad"), vec![upload("md5-other")], "r")
            .await
            .unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].reason.contains("digest"), "{refused:?}");
        assert_eq!(db.verify().unwrap().staged_attachments, 0);

        let refused = store_write(&db, doc("t"), vec![upload(&digest)], "r")
            .await
            .unwrap();
        assert_eq!(refused, vec![]);
        assert!(db.attachment("t", None, "t.txt").unwrap().data == text);

        // The push: the store's fetch says the encoding, the body gives the gzip bytes.
        let req = crate::peer::FetchRequest {
            id: "t".into(),
            rev: "1-a".parse().unwrap(),
            atts_since: Vec::new(),
        };
        let fetched = crate::store_fetch::fetch_from(&db, vec![req], u64::MAX, true)
            .await
            .unwrap();
        let crate::peer::Fetched::Doc(raw) = &fetched[0] else {
            panic!("{fetched:?}");
        };
        let value: Value = serde_json::from_str(raw.get()).unwrap();
        let follows = follows_of(&value);
        assert_eq!(follows[0].length, gz.len() as u64);
        assert_eq!(follows[0].encoding.as_ref().unwrap().digest, digest);
        let body = store_attachment_body(&db, "t", &"1-a".parse().unwrap(), "t.txt")
            .await
            .unwrap();
        let raw: Vec<Bytes> = body.try_collect().await.unwrap();
        assert!(raw.concat() == gz, "the stored gzip bytes");
        // For a target that keeps no encoding: decoded as it streams.
        let plain = decoded(upload(&digest));
        assert_eq!(
            (plain.length, plain.encoding.is_none()),
            (text.len() as u64, true)
        );
        let bytes: Vec<Bytes> = plain.body.try_collect().await.unwrap();
        assert!(bytes.concat() == text, "decoded bytes");
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
