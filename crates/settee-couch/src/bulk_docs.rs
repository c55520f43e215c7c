//! `_bulk_docs`: writing many documents, typically replicated revisions with
//! `new_edits=false`. Per-document failures are results ([`DocResult`], `settee_wire`'s),
//! not errors.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::{DocResult, Error, RemoteDb, Result, Rev};

/// A document [`RemoteDb::bulk_docs`] can send: parsed (`Value`) or JSON text
/// (`Box<RawValue>`, sent as it is).
pub trait JsonDoc: Serialize + Sync {
    /// The document's `_id`, if it has a string one.
    fn doc_id(&self) -> Option<String>;

    /// The document's `_rev`, if it has a valid one (for the result of a document the
    /// server refused). None unless implemented.
    fn doc_rev(&self) -> Option<Rev> {
        None
    }
}

impl JsonDoc for Value {
    fn doc_id(&self) -> Option<String> {
        self.get("_id").and_then(Value::as_str).map(str::to_owned)
    }

    fn doc_rev(&self) -> Option<Rev> {
        self.get("_rev")?.as_str()?.parse().ok()
    }
}

/// The members of a document that name it, read from its JSON text (the rest is skipped).
#[derive(Deserialize)]
struct DocName {
    #[serde(rename = "_id")]
    id: Option<String>,
    #[serde(rename = "_rev")]
    rev: Option<String>,
}

impl JsonDoc for Box<RawValue> {
    fn doc_id(&self) -> Option<String> {
        serde_json::from_str::<DocName>(self.get()).ok()?.id
    }

    fn doc_rev(&self) -> Option<Rev> {
        serde_json::from_str::<DocName>(self.get())
            .ok()?
            .rev?
            .parse()
            .ok()
    }
}

/// Whether a failed `_bulk_docs` request may have been refused for one of its documents, so
/// that sending its documents in smaller requests gets the others written: 413 (too large),
/// 400 (a document CouchDB cannot accept, e.g. an attachment name starting with `_`), 412
/// other than `file_exists` (`missing_stub`: CouchDB fails the whole request for one bad
/// attachment stub) and 415.
fn refused_for_a_document(e: &Error, new_edits: bool) -> bool {
    match e {
        Error::TooLarge(_) => true,
        // Only a replicated write is split on these: CouchDB may have applied part of the
        // request before failing it (shards answer on their own), which is harmless when
        // the same revisions are sent again, but not for new edits.
        Error::BadRequest(_) | Error::Http(_) if !new_edits => {
            matches!(e.status(), Some(400 | 412 | 415))
        }
        _ => false,
    }
}

impl RemoteDb {
    /// `POST /{db}/_bulk_docs`.
    ///
    /// With `new_edits = false` the revisions are stored as given (`_rev` and `_revisions`
    /// from the source), and CouchDB 2+ and pouchdb-server list only the documents that
    /// failed: an empty answer means every document was written. With `new_edits = true`
    /// there is one result per document. Match results to documents by `id`: the order is
    /// the server's (pouchdb-server's is not always the request's).
    ///
    /// A request the server finds too large (413) is split in halves and each half sent
    /// again, as CouchDB's replicator does; a single document that is still too large gets
    /// a `too_large` result instead of failing the batch. With `new_edits = false` a request
    /// refused with 400, 412 (other than `file_exists`) or 415 is split the same way: Apache
    /// CouchDB fails a whole request for one document's bad attachment stub (412
    /// `missing_stub`) or attachment name (400), so halving down to that document gets the
    /// others written, and the document gets a result with the server's `error` and
    /// `reason` (and its `_rev`).
    ///
    /// # Errors
    /// Only whole-request failures: [`Error::NotFound`] (no database),
    /// [`Error::Unauthorized`], [`Error::BadRequest`] (with `new_edits = true`),
    /// [`Error::Transport`]. Per-document `conflict`, `forbidden`, `unauthorized`,
    /// `too_large` and, with `new_edits = false`, the errors above are [`DocResult`]s.
    pub async fn bulk_docs<D: JsonDoc>(
        &self,
        docs: &[D],
        new_edits: bool,
    ) -> Result<Vec<DocResult>> {
        let mut results = Vec::new();
        // Work list instead of recursion: each entry is a slice still to send.
        let mut pending: Vec<&[D]> = vec![docs];
        while let Some(batch) = pending.pop() {
            if batch.is_empty() {
                continue;
            }
            match self.bulk_docs_once(batch, new_edits).await {
                Ok(mut r) => results.append(&mut r),
                Err(e) if refused_for_a_document(&e, new_edits) && batch.len() > 1 => {
                    tracing::debug!(error = %e, docs = batch.len(), "_bulk_docs refused; splitting");
                    let (a, b) = batch.split_at(batch.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
                Err(e) if refused_for_a_document(&e, new_edits) => {
                    let doc = &batch[0];
                    let id = doc.doc_id().unwrap_or_default();
                    let (error, reason) = match e.failure() {
                        Some(f) if !f.error().is_empty() => (f.error(), f.reason()),
                        Some(f) => (e.name(), f.reason()),
                        None => (e.name(), ""),
                    };
                    let error = if e.status() == Some(413) {
                        "too_large"
                    } else {
                        error
                    };
                    tracing::warn!(%id, %error, %reason, "document refused by the server; skipped");
                    results.push(DocResult {
                        id,
                        rev: doc.doc_rev(),
                        error: Some(error.to_owned()),
                        reason: Some(reason.to_owned()),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    async fn bulk_docs_once<D: JsonDoc>(
        &self,
        docs: &[D],
        new_edits: bool,
    ) -> Result<Vec<DocResult>> {
        // Serialized straight from the slice (`json!` would copy every document first).
        #[derive(Serialize)]
        struct Request<'a, D> {
            docs: &'a [D],
            new_edits: bool,
        }
        let body = Request { docs, new_edits };
        let mut call = self
            .client
            .json_call(Method::POST, self.join(&["_bulk_docs"]), &body)?;
        if !new_edits {
            // Storing the same revisions twice changes nothing, so a retry is safe.
            call = call.idempotent();
        }
        self.client.send_json(call).await
    }
}
