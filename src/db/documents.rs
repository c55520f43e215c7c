//! The document calls of [`Db`] as CouchDB's JSON: write, read (one revision or every
//! leaf), delete, `_all_docs`, a page of `_changes`, and the conflicted documents. Each call
//! answers the same for a local store and a server.

use serde_json::{json, Value};
use settee_revtree::{Rev, Seq};
use settee_store::{AllDocsOptions, ChangesOptions, GetOptions, OpenRevs};

use super::{blocking, Db};
use crate::owned::HeldStore;
use crate::{Error, Result};

/// Options of [`Db::get`] and [`Db::open_revs`], as the command line gives them.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use serde_json::json;
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Db::open(path)?;
/// let first = notes.put(json!({"_id": "note:1", "title": "draft"})).await?;
/// notes.put(json!({"_id": "note:1", "_rev": first["rev"], "title": "final"})).await?;
/// // The first revision, with its history (`_revisions`).
/// let args = settee::GetArgs {
///     rev: first["rev"].as_str().map(str::to_owned),
///     revs: true,
///     ..Default::default()
/// };
/// let old = notes.get("note:1", &args).await?;
/// assert_eq!(old["title"], "draft");
/// assert_eq!(old["_revisions"]["start"], 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct GetArgs {
    /// A specific revision.
    pub rev: Option<String>,
    /// Include `_revisions`.
    pub revs: bool,
    /// Include `_conflicts`.
    pub conflicts: bool,
    /// `all` or a JSON array of revs.
    pub open_revs: Option<String>,
    /// Attachments with their data (base64) instead of stubs.
    pub attachments: bool,
}

fn rev_arg(rev: &str) -> Result<Rev> {
    Ok(rev.parse::<Rev>()?)
}

impl Db {
    /// Writes a document (`PUT /db/id`, or `POST /db` without `_id`).
    ///
    /// # Errors
    /// `conflict` on a stale `_rev`, validation errors, the peer's errors.
    pub async fn put(&self, doc: Value) -> Result<Value> {
        match self {
            Db::Local(d) => {
                let res = blocking(d, move |d| d.put(doc)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
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

    /// Reads a document.
    ///
    /// # Errors
    /// `not_found`, a malformed `rev`, the peer's errors.
    pub async fn get(&self, id: &str, args: &GetArgs) -> Result<Value> {
        match self {
            Db::Local(d) => {
                let opts = GetOptions {
                    rev: args.rev.as_deref().map(rev_arg).transpose()?,
                    revs: args.revs,
                    conflicts: args.conflicts,
                    ..Default::default()
                };
                let id = id.to_owned();
                blocking(d, move |d| d.get(&id, &opts)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::GetOptions {
                    rev: args.rev.as_deref().map(rev_arg).transpose()?,
                    revs: args.revs,
                    conflicts: args.conflicts,
                    ..Default::default()
                };
                Ok(r.get(id, &opts).await?)
            }
        }
    }

    /// Every requested leaf (`open_revs=all` or a JSON list), each `{"ok": doc}` or
    /// `{"missing": rev}`, with `_revisions`.
    ///
    /// # Errors
    /// A malformed list, the peer's errors.
    pub async fn open_revs(&self, id: &str, args: &GetArgs) -> Result<Vec<Value>> {
        let which = args.open_revs.as_deref().unwrap_or("all");
        match self {
            Db::Local(d) => {
                let revs = if which == "all" {
                    OpenRevs::All
                } else {
                    let list: Vec<String> = serde_json::from_str(which).map_err(|e| {
                        Error::BadRequest(format!(
                            "open_revs must be `all` or a JSON array of revs: {e}"
                        ))
                    })?;
                    OpenRevs::Revs(list.iter().map(|r| rev_arg(r)).collect::<Result<_>>()?)
                };
                let opts = GetOptions {
                    revs: true,
                    attachments: args.attachments,
                    ..Default::default()
                };
                let id = id.to_owned();
                let res = blocking(d, move |d| d.open_revs(&id, revs, &opts)).await?;
                Ok(res
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                // GET ?open_revs=all (every leaf), or one GET per listed rev.
                let reqs: Vec<settee_couch::BulkGetRequest> = if which == "all" {
                    vec![settee_couch::BulkGetRequest {
                        id: id.to_owned(),
                        ..Default::default()
                    }]
                } else {
                    let list: Vec<String> = serde_json::from_str(which).map_err(|e| {
                        Error::BadRequest(format!(
                            "open_revs must be `all` or a JSON array of revs: {e}"
                        ))
                    })?;
                    list.iter()
                        .map(|r| {
                            Ok(settee_couch::BulkGetRequest {
                                id: id.to_owned(),
                                rev: Some(rev_arg(r)?),
                                atts_since: Vec::new(),
                            })
                        })
                        .collect::<Result<_>>()?
                };
                let opts = settee_couch::BulkGetOptions {
                    revs: true,
                    latest: false,
                    attachments: args.attachments,
                };
                let mut out = Vec::new();
                for req in &reqs {
                    for d in r.open_revs(req, &opts).await?.docs {
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

    /// Deletes a document: `rev`, or the current winner when `None`.
    ///
    /// # Errors
    /// `not_found`, `conflict`, the peer's errors.
    pub async fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value> {
        let rev = match rev {
            Some(r) => r.to_owned(),
            None => {
                let doc = self.get(id, &GetArgs::default()).await?;
                doc.get("_rev")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        match self {
            Db::Local(d) => {
                let rev = rev_arg(&rev)?;
                let id = id.to_owned();
                let res = blocking(d, move |d| d.delete(&id, &rev)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let new = r.delete_doc(id, &rev_arg(&rev)?).await?;
                Ok(json!({"ok": true, "id": id, "rev": new}))
            }
        }
    }

    /// `_all_docs` rows.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn all_docs(&self, include_docs: bool) -> Result<Vec<Value>> {
        match self {
            Db::Local(d) => {
                let opts = AllDocsOptions {
                    include_docs,
                    ..Default::default()
                };
                let all = blocking(d, move |d| d.all_docs(&opts)).await?;
                Ok(all
                    .rows
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::AllDocsOptions {
                    include_docs,
                    ..Default::default()
                };
                Ok(r.all_docs(&opts)
                    .await?
                    .rows
                    .into_iter()
                    .map(|row| serde_json::to_value(row).unwrap_or_default())
                    .collect())
            }
        }
    }

    /// One page of `_changes` after `since` (all of it for a local store), and the sequence
    /// to continue from. With `wait`, an empty answer waits for the next change (longpoll).
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn changes(
        &self,
        since: Option<Seq>,
        include_docs: bool,
        wait: bool,
    ) -> Result<(Vec<Value>, Seq)> {
        match self {
            Db::Local(d) => {
                let since = match &since {
                    None => 0,
                    Some(s) => s.as_local().ok_or_else(|| {
                        Error::BadRequest(format!("{s} is not a sequence of a local store"))
                    })?,
                };
                let opts = ChangesOptions {
                    since,
                    include_docs,
                    ..Default::default()
                };
                let mut page = {
                    let o = opts.clone();
                    blocking(d, move |d| d.changes(&o)).await?
                };
                if page.results.is_empty() && wait {
                    use futures::StreamExt;
                    let mut live = Box::pin(d.live_changes(ChangesOptions {
                        since,
                        ..Default::default()
                    }));
                    live.next().await;
                    page = blocking(d, move |d| d.changes(&opts)).await?;
                }
                let last = Seq::from(page.last_seq);
                Ok((
                    page.results
                        .into_iter()
                        .map(|c| serde_json::to_value(c).unwrap_or_default())
                        .collect(),
                    last,
                ))
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::ChangesOptions {
                    feed: if wait {
                        settee_couch::Feed::Longpoll
                    } else {
                        settee_couch::Feed::Normal
                    },
                    style: settee_couch::ChangesStyle::MainOnly,
                    since,
                    include_docs,
                    ..Default::default()
                };
                let resp = r.changes(&opts).await?;
                Ok((
                    resp.results
                        .into_iter()
                        .map(|c| serde_json::to_value(c).unwrap_or_default())
                        .collect(),
                    resp.last_seq,
                ))
            }
        }
    }

    /// Every conflicted document: `{"id", "winner", "conflicts": [...], "leaves": [...]}`
    /// (leaves with their deletion flag), winner first.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn conflicts(&self) -> Result<Vec<Value>> {
        let rows = match self {
            Db::Local(d) => {
                let opts = AllDocsOptions {
                    include_docs: true,
                    conflicts: true,
                    ..Default::default()
                };
                let all = blocking(d, move |d| d.all_docs(&opts)).await?;
                all.rows
                    .into_iter()
                    .filter_map(|r| r.doc)
                    .collect::<Vec<Value>>()
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::AllDocsOptions {
                    include_docs: true,
                    conflicts: true,
                    ..Default::default()
                };
                r.all_docs(&opts)
                    .await?
                    .rows
                    .into_iter()
                    .filter_map(|row| row.doc)
                    .collect()
            }
        };
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
                .open_revs(&id, &GetArgs::default())
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
