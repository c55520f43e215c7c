//! Mango on any database: `find`, `explain` and the `_index` calls answer the same shapes for
//! a local store (`settee_store`, which plans with `settee_query`) and for a server (its
//! `_find`, `_explain`, `_index`). Also the other bulk calls an application uses:
//! `bulk_docs` and `resolve_conflict`.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use settee_revtree::Rev;
use settee_store::{CreateIndexResponse, DocResult, FindResponse, IndexList, Resolution};

use super::{blocking, Target};
use crate::{Error, FindRequest, Result};

/// Reads a server's JSON answer into one of the store's answer types (the one shape both
/// kinds of database give).
fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::BadRequest(format!(
            "the server's {what} answer has an unexpected shape: {e}"
        ))
    })
}

impl Target {
    pub(crate) async fn find(self, req: &FindRequest) -> Result<FindResponse> {
        match &self {
            Target::Store(d) => {
                let req = req.clone();
                blocking(d, move |d| d.find(&req)).await
            }
            Target::Http(r) => decode("_find", r.find(&req.to_json()).await?),
        }
    }

    pub(crate) async fn explain(self, req: &FindRequest) -> Result<Value> {
        match &self {
            Target::Store(d) => {
                let req = req.clone();
                blocking(d, move |d| d.explain(&req)).await
            }
            Target::Http(r) => Ok(r.explain(&req.to_json()).await?),
        }
    }

    pub(crate) async fn create_index(self, index: &Value) -> Result<CreateIndexResponse> {
        self.create_index_with_progress(index, |_| {}).await
    }

    pub(crate) async fn create_index_with_progress(
        self,
        index: &Value,
        mut progress: impl FnMut(&settee_store::IndexProgress) + Send + 'static,
    ) -> Result<CreateIndexResponse> {
        match &self {
            Target::Store(d) => {
                let index = index.clone();
                blocking(d, move |d| {
                    d.create_index_with_progress(&index, &mut progress)
                })
                .await
            }
            Target::Http(r) => decode("_index", r.create_index(index).await?),
        }
    }

    pub(crate) async fn get_indexes(self) -> Result<IndexList> {
        match &self {
            Target::Store(d) => blocking(d, |d| d.get_indexes()).await,
            Target::Http(r) => decode("_index", r.get_indexes().await?),
        }
    }

    pub(crate) async fn delete_index(self, ddoc: &str, name: &str) -> Result<()> {
        match &self {
            Target::Store(d) => {
                let (ddoc, name) = (ddoc.to_owned(), name.to_owned());
                blocking(d, move |d| d.delete_index(&ddoc, &name)).await
            }
            Target::Http(r) => Ok(r.delete_index(ddoc, name).await?),
        }
    }

    pub(crate) async fn bulk_get(
        self,
        reqs: &[settee_store::BulkGetRequest],
        opts: &settee_store::BulkGetOptions,
    ) -> Result<Vec<settee_store::BulkGetResult>> {
        use settee_store::{BulkGetDoc, BulkGetError, BulkGetResult};
        match &self {
            Target::Store(d) => {
                let (reqs, opts) = (reqs.to_vec(), *opts);
                blocking(d, move |d| d.bulk_get(&reqs, &opts)).await
            }
            Target::Http(r) => {
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

    pub(crate) async fn bulk_docs(self, docs: Vec<Value>) -> Result<Vec<DocResult>> {
        match &self {
            Target::Store(d) => blocking(d, move |d| d.bulk_docs(docs, true)).await,
            Target::Http(r) => Ok(r.bulk_docs(&docs, true).await?),
        }
    }

    pub(crate) async fn resolve_conflict(self, id: &str, resolution: Resolution) -> Result<Rev> {
        match &self {
            Target::Store(d) => {
                let id = id.to_owned();
                blocking(d, move |d| d.resolve_conflict(&id, resolution)).await
            }
            Target::Http(r) => {
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
