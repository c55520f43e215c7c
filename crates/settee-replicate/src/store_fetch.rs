//! Reading revisions from a local store for the replicator's `Peer::fetch` and
//! `Peer::fetch_streamed` (`peer_store.rs` maps the rest of `Peer` onto the store): a few
//! requests at a time on the blocking pool, stopping once the answer passes its byte limit.

use serde_json::value::to_raw_value;
use settee_revtree::Rev;
use settee_store::{BulkGetDoc, BulkGetRequest, Database, GetOptions};

use crate::blocking::blocking;
use crate::peer::{DocFailure, FetchRequest, Fetched, Peer};
use crate::{Error, Result};

/// Revisions read from the store between checks of a fetch's size.
const FETCH_PART: usize = 50;

/// `fetch` and `fetch_streamed`: with `streamed`, attachment data stays in the store and the
/// attachments the reader lacks come as `follows` stubs (`streamed::mark_follows`).
pub(crate) async fn fetch_from(
    db: &Database,
    reqs: Vec<FetchRequest>,
    max_bytes: u64,
    streamed: bool,
) -> Result<Vec<Fetched>> {
    let reqs: Vec<BulkGetRequest> = reqs
        .into_iter()
        .map(|r| BulkGetRequest {
            id: r.id,
            rev: Some(r.rev),
            atts_since: r.atts_since,
        })
        .collect();
    // With the encoding of encoded attachments, always: a `follows` stub then says the
    // bytes `streamed::store_attachment_body` sends are encoded.
    let opts = GetOptions {
        revs: true,
        latest: true,
        attachments: !streamed,
        att_encoding_info: true,
        ..Default::default()
    };
    // Serialized on the blocking thread too: the documents travel as JSON text. Read a
    // few requests at a time, so that a fetch over `max_bytes` stops soon after it is.
    let fetched = blocking(db, move |db| {
        let mut out = Vec::with_capacity(reqs.len());
        let mut bytes = 0u64;
        for part in reqs.chunks(FETCH_PART) {
            let results = db.bulk_get_with(part, &opts)?;
            for (req, r) in part.iter().zip(results) {
                if r.docs.is_empty() {
                    out.push(Fetched::Failed(DocFailure {
                        id: req.id.clone(),
                        rev: req.rev.as_ref().map(Rev::to_string),
                        error: "not_found".into(),
                        reason: "missing".into(),
                    }));
                }
                for d in r.docs {
                    out.push(match d {
                        BulkGetDoc::Ok(mut doc) => {
                            if streamed {
                                crate::streamed::mark_follows(&mut doc, &req.atts_since);
                            } else {
                                encoded_inline(&db, &mut doc)?;
                            }
                            let raw = to_raw_value(&doc).expect("a JSON value always serializes");
                            bytes = bytes.saturating_add(raw.get().len() as u64);
                            Fetched::Doc(raw)
                        }
                        BulkGetDoc::Error(e) => Fetched::Failed(DocFailure {
                            id: e.id,
                            rev: e.rev,
                            error: e.error,
                            reason: e.reason,
                        }),
                        // The store answers `_bulk_get`'s forms, never `open_revs`'
                        // `missing`; were it to, the revision is not there all the same.
                        BulkGetDoc::Missing(rev) => Fetched::Failed(DocFailure {
                            id: r.id.clone(),
                            rev: rev.map(|r| r.to_string()),
                            error: "not_found".into(),
                            reason: "missing".into(),
                        }),
                    });
                }
            }
            if bytes > max_bytes {
                return Ok(None);
            }
        }
        Ok(Some(out))
    })
    .await?;
    fetched.ok_or_else(|| Error::FetchTooLarge {
        peer: Peer::describe(db),
        limit: max_bytes,
    })
}

/// Puts the ENCODED bytes of `doc`'s encoded inline attachments in their `data` (the store
/// reads them decoded, as CouchDB sends inline data): the form a store writes back encoded
/// (its digest is then that of `data`; see `settee_store`'s `validate::encoded_inline`), so
/// that store-to-store replication, which goes inline, keeps CouchDB's digests.
fn encoded_inline(db: &Database, doc: &mut serde_json::Value) -> settee_store::Result<()> {
    use base64::Engine as _;
    let (Some(id), Some(rev)) = (
        doc.get("_id").and_then(|v| v.as_str()).map(str::to_owned),
        doc.get("_rev")
            .and_then(|v| v.as_str())
            .and_then(|r| r.parse::<Rev>().ok()),
    ) else {
        return Ok(());
    };
    let Some(atts) = doc
        .get_mut("_attachments")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return Ok(());
    };
    for (name, att) in atts.iter_mut() {
        let Some(att) = att.as_object_mut() else {
            continue;
        };
        if att.get("data").is_none() || att.get("encoding").is_none() {
            continue;
        }
        let mut raw = Vec::new();
        let mut reader = db.attachment_reader_raw(&id, Some(&rev), name)?;
        while let Some(chunk) = reader.next_chunk()? {
            raw.extend_from_slice(&chunk);
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&raw);
        att.insert("data".into(), serde_json::Value::String(data));
        // Inline data comes without `length` (CouchDB's form); the decoded one is needed.
        att.insert("length".into(), reader.decoded_length().into());
    }
    Ok(())
}
