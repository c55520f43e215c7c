//! The typed calls: [`crate::Doc<T>`] in and out of a local store or a server, over the
//! JSON calls, and the typed changes feed ([`DocChange`]).

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use settee_revtree::{Rev, Seq};
use settee_store::{AllDocsOptions, OpenRevs, Resolution};

use super::Target;
use crate::doc::doc_error;
use crate::{ChangesFeed, Doc, Error, FindRequest, Found, ReadOptions, Result};

/// One item of [`crate::Documents::changes_docs`]: a changed document, typed.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use futures::TryStreamExt;
/// use settee::{Doc, DocChange, Documents};
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Note { title: String }
/// # let dir = tempfile::tempdir().unwrap();
/// let notes = settee::Local::open(dir.path().join("notes"))?;
/// let kept = notes.put_doc(&Doc::new("kept", Note { title: "hi".into() })).await?;
/// let gone = notes.put_doc(&Doc::new("gone", Note { title: "bye".into() })).await?;
/// notes.delete_doc(&gone).await?;
/// let changes: Vec<DocChange<Note>> = notes.changes_docs(Default::default()).try_collect().await?;
/// assert_eq!(changes[0].doc.as_ref().unwrap().body, kept.body);
/// assert_eq!((changes[1].id.as_str(), changes[1].doc.is_none()), ("gone", true));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DocChange<T> {
    /// Where this change is in the feed (the `since` that resumes after it).
    pub seq: Seq,
    /// The document's id.
    pub id: String,
    /// Its winning revision.
    pub rev: Option<Rev>,
    /// The document as it is now, or `None` when it was deleted.
    pub doc: Option<Doc<T>>,
}

/// The revision a write answered, as `{"rev": ...}`.
fn answered_rev(id: &str, res: &Value) -> Result<Rev> {
    res.get("rev")
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<Rev>().ok())
        .ok_or_else(|| Error::BadRequest(format!("no revision in the answer for {id}")))
}

impl Target {
    pub(crate) async fn put_doc<T: Serialize + Clone>(self, doc: &Doc<T>) -> Result<Doc<T>> {
        let json = doc.to_json()?;
        let res = self.put(json).await?;
        let rev = answered_rev(&doc.id, &res)?;
        Ok(doc.written(rev))
    }

    pub(crate) async fn get_doc<T: DeserializeOwned>(self, id: &str) -> Result<Doc<T>> {
        Doc::from_json(self.get(id, &ReadOptions::default()).await?)
    }

    pub(crate) async fn get_doc_with<T: DeserializeOwned>(
        self,
        id: &str,
        opts: &ReadOptions,
    ) -> Result<Doc<T>> {
        Doc::from_json(self.get(id, opts).await?)
    }

    pub(crate) async fn leaves<T: DeserializeOwned>(self, id: &str) -> Result<Vec<Doc<T>>> {
        let leaves = self
            .open_revs(id, &OpenRevs::All, &ReadOptions::default())
            .await?;
        let mut docs = Vec::new();
        for leaf in leaves {
            let Some(doc) = leaf.get("ok") else { continue };
            if doc.get("_deleted").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let mut doc = doc.clone();
            if let Some(map) = doc.as_object_mut() {
                map.shift_remove("_revisions");
            }
            docs.push(Doc::<T>::from_json(doc)?);
        }
        if docs.is_empty() {
            return Err(Error::Store(settee_store::Error::NotFound {
                id: id.to_owned(),
                reason: "deleted".into(),
            }));
        }
        // The winner first, as CouchDB ranks live leaves: the longest, then the highest.
        docs.sort_by(|a, b| b.rev.cmp(&a.rev));
        Ok(docs)
    }

    pub(crate) async fn merge_conflict<T: Serialize + Clone>(
        self,
        merged: &Doc<T>,
    ) -> Result<Doc<T>> {
        let mut body = merged.to_json()?;
        if let Some(map) = body.as_object_mut() {
            map.shift_remove("_id");
            map.shift_remove("_rev");
        }
        let rev = self
            .resolve_conflict(&merged.id, Resolution::Merge(body))
            .await?;
        Ok(merged.written(rev))
    }

    pub(crate) async fn delete_doc(self, id: &str, rev: Option<&Rev>) -> Result<Rev> {
        let Some(rev) = rev else {
            return Err(Error::Store(settee_store::Error::Conflict {
                id: id.to_owned(),
            }));
        };
        let res = self.delete(id, Some(rev)).await?;
        answered_rev(id, &res)
    }

    pub(crate) async fn get_docs<T: DeserializeOwned>(
        self,
        ids: &[&str],
    ) -> Result<Vec<Result<Doc<T>>>> {
        let opts = AllDocsOptions {
            keys: Some(ids.iter().map(|s| (*s).to_owned()).collect()),
            include_docs: true,
            ..Default::default()
        };
        let rows = self.all_docs(&opts).await?.rows;
        Ok(rows
            .into_iter()
            .map(|row| match row.doc.filter(|d| !d.is_null()) {
                Some(d) => Doc::from_json(d),
                None => Err(Error::Store(settee_store::Error::NotFound {
                    id: row.key,
                    reason: "missing".into(),
                })),
            })
            .collect())
    }

    pub(crate) async fn put_docs<T: Serialize + Clone>(
        self,
        docs: &[Doc<T>],
    ) -> Result<Vec<Result<Doc<T>>>> {
        let json = docs.iter().map(Doc::to_json).collect::<Result<Vec<_>>>()?;
        let results = self.bulk_docs(json).await?;
        Ok(docs
            .iter()
            .zip(results)
            .map(|(doc, r)| match (r.error, r.rev) {
                (None, Some(rev)) => Ok(doc.written(rev)),
                (error, _) => Err(doc_error(&doc.id, error, r.reason)),
            })
            .collect())
    }

    pub(crate) async fn find_docs<T: DeserializeOwned>(
        self,
        req: &FindRequest,
    ) -> Result<Found<T>> {
        let page = self.find(req).await?;
        Ok(Found {
            docs: page
                .docs
                .into_iter()
                .map(Doc::from_json)
                .collect::<Result<_>>()?,
            bookmark: page.bookmark,
            warning: page.warning,
        })
    }

    pub(crate) fn changes_docs<T: DeserializeOwned + Send + 'static>(
        self,
        feed: ChangesFeed,
    ) -> impl Stream<Item = Result<DocChange<T>>> + Send + 'static {
        let feed = ChangesFeed {
            include_docs: true,
            ..feed
        };
        self.changes_stream(feed).map(|item| {
            let change = item?;
            let doc = match change.doc {
                Some(doc) if !change.deleted && !doc.is_null() => Some(Doc::from_json(doc)?),
                _ => None,
            };
            Ok(DocChange {
                seq: change.seq,
                id: change.id,
                rev: change.changes.into_iter().next(),
                doc,
            })
        })
    }
}
