//! The document calls as CouchDB's JSON, for a local store and a server alike: write, read
//! (one revision or every leaf), delete, `_all_docs`, a page of `_changes`, and the
//! conflicted documents. [`crate::Documents`] is their public face.

use serde_json::{json, Value};
use settee_revtree::{Rev, Seq};
use settee_store::{AllDocs, AllDocsOptions, ChangesOptions, GetOptions, OpenRevs};

use super::{blocking, Target};
use crate::{Change, Error, Result};

/// How [`crate::Documents::get`] and [`crate::Documents::open_revs`] read a document.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use serde_json::json;
/// use settee::Documents;
/// # let dir = tempfile::tempdir().unwrap();
/// let notes = settee::Local::open(dir.path().join("notes"))?;
/// let first = notes.put(json!({"_id": "note:1", "title": "draft"})).await?;
/// notes.put(json!({"_id": "note:1", "_rev": first["rev"], "title": "final"})).await?;
/// // The first revision, with its history (`_revisions`).
/// let opts = settee::ReadOptions {
///     rev: Some(first["rev"].as_str().unwrap().parse()?),
///     revs: true,
///     ..Default::default()
/// };
/// let old = notes.get("note:1", &opts).await?;
/// assert_eq!(old["title"], "draft");
/// assert_eq!(old["_revisions"]["start"], 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// A given revision instead of the winner.
    pub rev: Option<Rev>,
    /// Add `_revisions` (the revision's history).
    pub revs: bool,
    /// Add `_conflicts` (the other live leaves).
    pub conflicts: bool,
    /// Attachments with their data (base64) instead of stubs.
    pub attachments: bool,
}

/// What [`crate::Documents::changes`] reads: one page of the changes feed.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use settee::{ChangesRequest, Documents};
/// # let dir = tempfile::tempdir().unwrap();
/// let notes = settee::Local::open(dir.path().join("notes"))?;
/// for id in ["a", "b", "c"] {
///     notes.put(serde_json::json!({"_id": id})).await?;
/// }
/// // Pages of two, each starting where the last one ended.
/// let mut req = ChangesRequest { limit: Some(2), ..Default::default() };
/// let mut ids = Vec::new();
/// loop {
///     let page: settee::ChangesPage = notes.changes(&req).await?;
///     if page.results.is_empty() {
///         break;
///     }
///     ids.extend(page.results.into_iter().map(|c| c.id));
///     req.since = Some(page.last_seq);
/// }
/// assert_eq!(ids, ["a", "b", "c"]);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangesRequest {
    /// Start after this sequence (`None`: from the beginning). A sequence is the
    /// database's own: a local store's does not fit a server and the other way round.
    pub since: Option<Seq>,
    /// Add each changed document (its winning revision).
    pub include_docs: bool,
    /// At most this many rows (`None`: all of them).
    pub limit: Option<usize>,
    /// When nothing changed after `since`, wait for the next change (CouchDB's
    /// `feed=longpoll`) instead of answering an empty page.
    pub wait: bool,
}

/// A page of [`crate::Documents::changes`]: the rows, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    /// The changed documents, in sequence order, each once (its latest revision).
    pub results: Vec<Change>,
    /// Pass it as the next request's `since`.
    pub last_seq: Seq,
}

impl ReadOptions {
    fn wire(&self) -> GetOptions {
        GetOptions {
            rev: self.rev.clone(),
            revs: self.revs,
            conflicts: self.conflicts,
            attachments: self.attachments,
            ..Default::default()
        }
    }
}

impl Target {
    pub(crate) async fn put(self, doc: Value) -> Result<Value> {
        match &self {
            Target::Store(d) => {
                let res = blocking(d, move |d| d.put(doc)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Target::Http(r) => {
                let id = doc
                    .get("_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Error::BadRequest(
                            "the document needs an _id to be written to a remote database".into(),
                        )
                    })?
                    .to_owned();
                let res = r.put(&id, &doc).await?;
                Ok(json!({"ok": true, "id": res.id, "rev": res.rev}))
            }
        }
    }

    pub(crate) async fn get(self, id: &str, opts: &ReadOptions) -> Result<Value> {
        let opts = opts.wire();
        match &self {
            Target::Store(d) => {
                let id = id.to_owned();
                blocking(d, move |d| d.get(&id, &opts)).await
            }
            Target::Http(r) => Ok(r.get(id, &opts).await?),
        }
    }

    pub(crate) async fn open_revs(
        self,
        id: &str,
        which: &OpenRevs,
        opts: &ReadOptions,
    ) -> Result<Vec<Value>> {
        match &self {
            Target::Store(d) => {
                let opts = GetOptions {
                    revs: true,
                    ..opts.wire()
                };
                let (id, which) = (id.to_owned(), which.clone());
                let res = blocking(d, move |d| d.open_revs(&id, which, &opts)).await?;
                Ok(res
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect())
            }
            Target::Http(r) => {
                // GET ?open_revs=all (every leaf), or one GET per listed rev.
                let reqs: Vec<settee_couch::BulkGetRequest> = match which {
                    OpenRevs::All => vec![settee_couch::BulkGetRequest {
                        id: id.to_owned(),
                        ..Default::default()
                    }],
                    OpenRevs::Revs(list) => list
                        .iter()
                        .map(|rev| settee_couch::BulkGetRequest {
                            id: id.to_owned(),
                            rev: Some(rev.clone()),
                            atts_since: Vec::new(),
                        })
                        .collect(),
                };
                let bulk = settee_couch::BulkGetOptions {
                    revs: true,
                    latest: false,
                    attachments: opts.attachments,
                };
                let mut out = Vec::new();
                for req in &reqs {
                    for d in r.open_revs(req, &bulk).await?.docs {
                        out.push(match d {
                            settee_couch::BulkGetDoc::Ok(doc) => json!({"ok": doc}),
                            settee_couch::BulkGetDoc::Missing(rev) => json!({"missing": rev}),
                            settee_couch::BulkGetDoc::Error(e) => json!({"error": e}),
                        });
                    }
                }
                Ok(out)
            }
        }
    }

    pub(crate) async fn delete(self, id: &str, rev: Option<&Rev>) -> Result<Value> {
        let rev = match rev {
            Some(r) => r.clone(),
            None => {
                let doc = self.clone().get(id, &ReadOptions::default()).await?;
                doc.get("_rev")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse::<Rev>().ok())
                    .ok_or_else(|| Error::BadRequest(format!("{id} has no _rev")))?
            }
        };
        match &self {
            Target::Store(d) => {
                let id = id.to_owned();
                let res = blocking(d, move |d| d.delete(&id, &rev)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Target::Http(r) => {
                let new = r.delete_doc(id, &rev).await?;
                Ok(json!({"ok": true, "id": id, "rev": new}))
            }
        }
    }

    pub(crate) async fn all_docs(self, opts: &AllDocsOptions) -> Result<AllDocs> {
        match &self {
            Target::Store(d) => {
                let opts = opts.clone();
                blocking(d, move |d| d.all_docs(&opts)).await
            }
            Target::Http(r) => Ok(r.all_docs(opts).await?),
        }
    }

    pub(crate) async fn changes(self, req: &ChangesRequest) -> Result<ChangesPage> {
        match &self {
            Target::Store(d) => {
                let since = match &req.since {
                    None => 0,
                    Some(s) => s.as_local().ok_or_else(|| {
                        Error::BadRequest(format!("{s} is not a sequence of a local store"))
                    })?,
                };
                let opts = ChangesOptions {
                    since,
                    include_docs: req.include_docs,
                    limit: req.limit,
                    ..Default::default()
                };
                let mut page = {
                    let o = opts.clone();
                    blocking(d, move |d| d.changes(&o)).await?
                };
                if page.results.is_empty() && req.wait {
                    use futures::StreamExt;
                    let mut live = Box::pin(d.live_changes(ChangesOptions {
                        since,
                        ..Default::default()
                    }));
                    live.next().await;
                    page = blocking(d, move |d| d.changes(&opts)).await?;
                }
                Ok(ChangesPage {
                    last_seq: Seq::from(page.last_seq),
                    results: page
                        .results
                        .into_iter()
                        .map(super::feed::from_store)
                        .collect(),
                })
            }
            Target::Http(r) => {
                let opts = settee_couch::ChangesOptions {
                    feed: if req.wait {
                        settee_couch::Feed::Longpoll
                    } else {
                        settee_couch::Feed::Normal
                    },
                    style: settee_couch::ChangesStyle::MainOnly,
                    since: req.since.clone(),
                    include_docs: req.include_docs,
                    limit: req.limit.map(|l| l as u64),
                    ..Default::default()
                };
                let resp = r.changes(&opts).await?;
                Ok(ChangesPage {
                    results: resp.results,
                    last_seq: resp.last_seq,
                })
            }
        }
    }

    pub(crate) async fn conflicts(self) -> Result<Vec<Value>> {
        let opts = AllDocsOptions {
            include_docs: true,
            conflicts: true,
            ..Default::default()
        };
        let rows: Vec<Value> = self
            .clone()
            .all_docs(&opts)
            .await?
            .rows
            .into_iter()
            .filter_map(|r| r.doc)
            .collect();
        let mut out = Vec::new();
        for doc in rows {
            let Some(conflicts) = doc.get("_conflicts").and_then(Value::as_array) else {
                continue;
            };
            if conflicts.is_empty() {
                continue;
            }
            let id = doc["_id"].as_str().unwrap_or_default().to_owned();
            let mut docs: Vec<Value> = self
                .clone()
                .open_revs(&id, &OpenRevs::All, &ReadOptions::default())
                .await?
                .into_iter()
                .filter_map(|l| l.get("ok").cloned())
                .collect();
            // Winner first, as CouchDB ranks leaves: live before deleted, then by rev.
            docs.sort_by_key(|d| {
                let deleted = d.get("_deleted").and_then(Value::as_bool).unwrap_or(false);
                let rev = d["_rev"].as_str().and_then(|r| r.parse::<Rev>().ok());
                std::cmp::Reverse((!deleted, rev))
            });
            let leaves = docs
                .into_iter()
                .map(|d| json!({"rev": d["_rev"], "deleted": d.get("_deleted").cloned().unwrap_or(Value::Bool(false))}))
                .collect::<Vec<_>>();
            out.push(json!({
                "id": id,
                "winner": doc["_rev"],
                "conflicts": conflicts,
                "leaves": leaves,
            }));
        }
        Ok(out)
    }
}
