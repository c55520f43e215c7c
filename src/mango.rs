//! Mango on any database: `find`, `explain` and the `_index` calls answer the same shapes for
//! a local store (`settee_store`, which plans with `settee_query`) and for a server (its
//! `_find`, `_explain`, `_index`). Also the other bulk calls an application uses:
//! `bulk_docs` and `resolve_conflict`.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use settee_revtree::Rev;
use settee_store::{CreateIndexResponse, DocResult, FindResponse, IndexList, Resolution};

use crate::db::blocking;
use crate::owned::HeldStore;
use crate::{Db, Error, FindRequest, Result};

/// Reads a server's JSON answer into one of the store's answer types (the one shape both
/// kinds of database give).
fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::BadRequest(format!(
            "the server's {what} answer has an unexpected shape: {e}"
        ))
    })
}

impl Db {
    /// The documents matching a Mango query (`_find`), CouchDB's semantics on both kinds of
    /// database: a sort needs an index that serves it (`no_usable_index` otherwise); without
    /// a usable index the query scans everything and the answer's `warning` says so; pages
    /// continue with `bookmark`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use serde_json::json;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// db.put(json!({"_id": "a", "type": "task", "done": false})).await?;
    /// let req = settee::FindRequest::parse(&json!({"selector": {"type": "task"}}))?;
    /// let found = db.find(&req).await?;
    /// assert_eq!(found.docs[0]["_id"], "a");
    /// assert!(found.warning.unwrap().contains("No matching index"));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The query's errors (`no_usable_index`, `invalid_index`, `invalid_bookmark`), the
    /// peer's errors.
    pub async fn find(&self, req: &FindRequest) -> Result<FindResponse> {
        match self {
            Db::Local(d) => {
                let req = req.clone();
                blocking(d, move |d| d.find(&req)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                decode("_find", r.find(&req.to_json()).await?)
            }
        }
    }

    /// How [`Db::find`] would run a query (`_explain`): the index, the range, the other
    /// candidates.
    ///
    /// # Errors
    /// As [`Db::find`].
    pub async fn explain(&self, req: &FindRequest) -> Result<Value> {
        match self {
            Db::Local(d) => {
                let req = req.clone();
                blocking(d, move |d| d.explain(&req)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                Ok(r.explain(&req.to_json()).await?)
            }
        }
    }

    /// Creates a JSON index (`POST /db/_index` with CouchDB's body, `{"index": {"fields":
    /// [...]}, "ddoc"?, "name"?}`); a local store builds it over its documents before this
    /// returns. The index is a design document, so it replicates.
    ///
    /// # Errors
    /// A bad definition (CouchDB's error names), the peer's errors.
    pub async fn create_index(&self, index: &Value) -> Result<CreateIndexResponse> {
        self.create_index_with_progress(index, |_| {}).await
    }

    /// [`Db::create_index`] with the progress of a local build (documents read so far, of
    /// how many), called after each batch. A server reports none.
    ///
    /// # Errors
    /// As [`Db::create_index`].
    pub async fn create_index_with_progress(
        &self,
        index: &Value,
        mut progress: impl FnMut(&settee_store::IndexProgress) + Send + 'static,
    ) -> Result<CreateIndexResponse> {
        match self {
            Db::Local(d) => {
                let index = index.clone();
                blocking(d, move |d| {
                    d.create_index_with_progress(&index, &mut progress)
                })
                .await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                decode("_index", r.create_index(index).await?)
            }
        }
    }

    /// The indexes (`GET /db/_index`), `_all_docs` first.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn get_indexes(&self) -> Result<IndexList> {
        match self {
            Db::Local(d) => blocking(d, |d| d.get_indexes()).await,
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                decode("_index", r.get_indexes().await?)
            }
        }
    }

    /// Deletes an index (`DELETE /db/_index/{ddoc}/json/{name}`).
    ///
    /// # Errors
    /// `not_found` if there is no such index; the peer's errors.
    pub async fn delete_index(&self, ddoc: &str, name: &str) -> Result<()> {
        match self {
            Db::Local(d) => {
                let (ddoc, name) = (ddoc.to_owned(), name.to_owned());
                blocking(d, move |d| d.delete_index(&ddoc, &name)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                Ok(r.delete_index(ddoc, name).await?)
            }
        }
    }

    /// Reads many documents, or given revisions of them, in one request (`_bulk_get`): one
    /// result per request, in order, each with one entry per revision read (every leaf when
    /// no `rev` is given), a document or its error (`not_found` with `missing` or
    /// `deleted`). The answers are the store's types for a store and a server alike.
    ///
    /// ```
    /// # async fn demo(db: settee::Db) -> Result<(), settee::Error> {
    /// use settee::store::{BulkGetDoc, BulkGetRequest};
    /// let reqs = [BulkGetRequest { id: "note:1".into(), rev: None, atts_since: vec![] }];
    /// for result in db.bulk_get(&reqs, &Default::default()).await? {
    ///     for doc in result.docs {
    ///         if let BulkGetDoc::Ok(doc) = doc {
    ///             println!("{}", doc["_rev"]);
    ///         }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The request's errors (a missing document or revision is its entry's error).
    pub async fn bulk_get(
        &self,
        reqs: &[settee_store::BulkGetRequest],
        opts: &settee_store::BulkGetOptions,
    ) -> Result<Vec<settee_store::BulkGetResult>> {
        use settee_store::{BulkGetDoc, BulkGetError, BulkGetResult};
        match self {
            Db::Local(d) => {
                let (reqs, opts) = (reqs.to_vec(), *opts);
                blocking(d, move |d| d.bulk_get(&reqs, &opts)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                // The store's answer forms: a `missing` entry (`open_revs`, pouchdb-server)
                // becomes CouchDB's `not_found` error object, naming the revision asked for.
                let answers = r.bulk_get(reqs, opts).await?;
                Ok(answers
                    .into_iter()
                    .zip(reqs)
                    .map(|(a, q)| {
                        let asked = || q.rev.as_ref().map_or("undefined".into(), Rev::to_string);
                        let docs = a
                            .docs
                            .into_iter()
                            .map(|d| match d {
                                BulkGetDoc::Ok(doc) => BulkGetDoc::Ok(doc),
                                BulkGetDoc::Missing(rev) => BulkGetDoc::Error(BulkGetError {
                                    id: q.id.clone(),
                                    rev: Some(rev.map_or_else(asked, |r| r.to_string())),
                                    error: "not_found".into(),
                                    reason: "missing".into(),
                                }),
                                BulkGetDoc::Error(e) => BulkGetDoc::Error(BulkGetError {
                                    id: if e.id.is_empty() { q.id.clone() } else { e.id },
                                    rev: Some(e.rev.unwrap_or_else(asked)),
                                    error: e.error,
                                    reason: e.reason,
                                }),
                            })
                            .collect();
                        BulkGetResult { id: a.id, docs }
                    })
                    .collect())
            }
        }
    }

    /// Writes many documents in one request (`_bulk_docs`, new edits): one result per
    /// document, in order. On a local store the call is one atomic batch.
    ///
    /// # Errors
    /// The request's errors (each document's own rejection is its result).
    pub async fn bulk_docs(&self, docs: Vec<Value>) -> Result<Vec<DocResult>> {
        match self {
            Db::Local(d) => blocking(d, move |d| d.bulk_docs(docs, true)).await,
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                Ok(r.bulk_docs(&docs, true).await?)
            }
        }
    }

    /// Resolves document `id`'s conflict: keeps one leaf ([`Resolution::Keep`]) or writes a
    /// merged body on top of the winner ([`Resolution::Merge`]), and deletes every other
    /// live leaf. A local store does it in one atomic write. A server gets one `_bulk_docs`
    /// request with the new revision and the tombstones; CouchDB applies the revisions of
    /// one document in that request together, and a leaf that changed meanwhile answers
    /// `conflict` (the other revisions of the request are then still written: resolve
    /// again). Returns the winner after it.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use serde_json::json;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// db.put(json!({"_id": "n", "title": "ours"})).await?;
    /// let settee::Db::Local(store) = &db else { unreachable!() };
    /// store.bulk_docs(vec![json!({"_id": "n", "_rev": "1-ffff", "title": "theirs"})], false)?;
    /// let winner = db.resolve_conflict("n", settee::Resolution::Merge(json!({"title": "both"}))).await?;
    /// let doc = db.get("n", &settee::GetArgs { conflicts: true, ..Default::default() }).await?;
    /// assert_eq!(doc["title"], "both");
    /// assert_eq!(doc["_rev"], winner.to_string());
    /// assert!(doc.get("_conflicts").is_none());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `not_found`; `conflict` if a kept revision is not a live leaf or a leaf changed
    /// meanwhile; validation errors of the merged body; the peer's errors.
    pub async fn resolve_conflict(&self, id: &str, resolution: Resolution) -> Result<Rev> {
        match self {
            Db::Local(d) => {
                let id = id.to_owned();
                blocking(d, move |d| d.resolve_conflict(&id, resolution)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::GetOptions {
                    conflicts: true,
                    ..Default::default()
                };
                let current = r.get(id, &opts).await?;
                let winner: Rev = current["_rev"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::BadRequest(format!("{id} has no _rev")))?;
                let mut live: Vec<Rev> = vec![winner.clone()];
                if let Some(c) = current["_conflicts"].as_array() {
                    live.extend(c.iter().filter_map(|v| v.as_str()?.parse().ok()));
                }
                let mut docs = Vec::new();
                let keep = match resolution {
                    Resolution::Keep(rev) => {
                        if !live.contains(&rev) {
                            return Err(Error::Store(settee_store::Error::Conflict {
                                id: id.to_owned(),
                            }));
                        }
                        Some(rev)
                    }
                    Resolution::Merge(body) => {
                        let Value::Object(mut map) = body else {
                            return Err(Error::BadRequest(
                                "the merged body must be a JSON object".into(),
                            ));
                        };
                        map.insert("_id".into(), json!(id));
                        map.insert("_rev".into(), json!(winner.to_string()));
                        docs.push(Value::Object(map));
                        None
                    }
                };
                for leaf in &live {
                    let kept = match &keep {
                        Some(k) => k == leaf,
                        None => *leaf == winner,
                    };
                    if !kept {
                        docs.push(json!({"_id": id, "_rev": leaf.to_string(), "_deleted": true}));
                    }
                }
                let results = r.bulk_docs(&docs, true).await?;
                for res in &results {
                    if !res.is_ok() {
                        return Err(crate::doc::doc_error(
                            id,
                            res.error.clone(),
                            res.reason.clone(),
                        ));
                    }
                }
                match keep {
                    Some(k) => Ok(k),
                    None => results
                        .first()
                        .and_then(|r| r.rev.clone())
                        .ok_or_else(|| Error::BadRequest(format!("no revision written for {id}"))),
                }
            }
        }
    }
}
