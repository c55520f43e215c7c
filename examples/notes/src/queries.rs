//! The lists the page shows: notes of a notebook or a tag, or whose title matches a search,
//! newest first, a page at a time; and the notebooks and tags with their counts.
//!
//! Lists are Mango queries on the local store. The app creates two JSON indexes at start
//! (in `_design/settee-notes`, so they replicate like any design document): `by-updated` on
//! `[updated_at]` and `by-notebook` on `[notebook, updated_at]`. A list is one `find`
//! sorted by `updated_at` descending on the index that serves it, with `limit`, and
//! `bookmark` for the next page; a tag (`tags` holds it: `$elemMatch`) and a title search
//! (`$regex`, case-insensitive) are conditions on the same scan. A page reads the index
//! entries up to its last row and the documents they name: for a notebook or all notes,
//! `limit` documents; for a tag or a search, the notes it skips too (a search that matches
//! few notes reads them all: there is no full-text index).
//!
//! The notebook and tag counts of the side bar are the one place that needs every note: they
//! are kept per note in memory, built once (at start, off the request path) and brought up
//! to date from the store's changes feed, so a request reads only the notes changed since
//! the previous one.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use settee::{
    AllDocsOptions, ChangesRequest, Documents, FindRequest, Local, ReadOptions, Selector, Seq,
    Sort, UseIndex,
};
use tokio::sync::Mutex;

use crate::note::{Note, ID_PREFIX};
use crate::state::{has_conflicts, Badge, Tracker};
use crate::{Error, Result};

/// The most notes one list request returns.
pub const MAX_LIMIT: usize = 1000;
/// How many notes a list request returns when it does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// How much of a note's text a list row carries.
const EXCERPT_CHARS: usize = 120;

/// The design document holding the app's indexes.
pub const INDEX_DDOC: &str = "_design/settee-notes";
/// Its name as `create_index` and `use_index` take it.
const DDOC_NAME: &str = "settee-notes";
/// All notes, newest first.
const BY_UPDATED: &str = "by-updated";
/// A notebook's notes, newest first.
const BY_NOTEBOOK: &str = "by-notebook";

/// Which notes to list (query parameters of `GET /api/notes`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this notebook.
    pub notebook: Option<String>,
    /// Only notes with this tag.
    pub tag: Option<String>,
    /// Only notes whose title contains this text (case-insensitive).
    pub q: Option<String>,
    /// At most this many (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
    /// Skip this many first.
    pub skip: Option<usize>,
    /// Continue after the previous page (its `bookmark`).
    pub bookmark: Option<String>,
}

/// One row of a list.
#[derive(Debug, Clone, Serialize)]
pub struct NoteSummary {
    /// The note's id.
    pub id: String,
    /// Its current revision.
    pub rev: String,
    /// Its title.
    pub title: String,
    /// The start of its text.
    pub excerpt: String,
    /// Its notebook.
    pub notebook: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was last edited (ms since 1970).
    pub updated_at: i64,
    /// Its sync badge.
    pub state: Badge,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct NoteList {
    /// The rows of this page, newest first (ties: greater id first, the index's order).
    pub notes: Vec<NoteSummary>,
    /// Whether more notes match after this page.
    pub more: bool,
    /// Pass it back as `bookmark` for the next page (when `more`).
    pub bookmark: Option<String>,
}

/// A notebook or tag and how many notes it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The notebook's or tag's name.
    pub name: String,
    /// Its notes.
    pub count: usize,
}

/// Creates the lists' indexes if they are missing ("exists" otherwise), built over the
/// notes already in the store before this returns.
///
/// # Errors
/// The store's errors.
pub async fn create_indexes(db: &Local) -> Result<()> {
    for (name, fields) in [
        (BY_UPDATED, json!(["updated_at"])),
        (BY_NOTEBOOK, json!(["notebook", "updated_at"])),
    ] {
        db.create_index(&json!({
            "index": {"fields": fields},
            "ddoc": DDOC_NAME,
            "name": name,
            "type": "json",
        }))
        .await?;
    }
    Ok(())
}

/// `text` as a regular expression matching it literally.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `find` of a list query.
fn request(query: &ListQuery, limit: usize) -> Result<FindRequest> {
    let mut sel = Map::new();
    sel.insert(
        "_id".into(),
        json!({"$gt": ID_PREFIX, "$lt": format!("{ID_PREFIX}\u{10ffff}")}),
    );
    sel.insert("updated_at".into(), json!({"$gt": null}));
    if let Some(tag) = &query.tag {
        sel.insert("tags".into(), json!({"$elemMatch": {"$eq": tag}}));
    }
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        sel.insert(
            "title".into(),
            json!({"$regex": format!("(?i){}", literal(q))}),
        );
    }
    let bad = |e| Error::BadRequest(format!("invalid list query: {e}"));
    let (index, sort) = match &query.notebook {
        Some(book) => {
            sel.insert("notebook".into(), json!(book));
            (BY_NOTEBOOK, Sort::desc(["notebook", "updated_at"]))
        }
        None => (BY_UPDATED, Sort::desc(["updated_at"])),
    };
    Ok(FindRequest {
        selector: Selector::parse(&Value::Object(sel)).map_err(bad)?,
        sort: sort.map_err(bad)?,
        limit,
        skip: query.skip.unwrap_or(0),
        bookmark: query.bookmark.clone(),
        use_index: UseIndex::Index(DDOC_NAME.into(), index.into()),
        conflicts: true,
        allow_fallback: false,
        ..Default::default()
    })
}

/// The notes matching `query`, newest first, with their badges: one `find` (and, when the
/// page is full, one more of a single row to tell whether more follow).
///
/// # Errors
/// [`Error::BadRequest`] for a limit above [`MAX_LIMIT`] or a bad bookmark; the store's
/// errors.
pub async fn list(db: &Local, tracker: &Tracker, query: &ListQuery) -> Result<NoteList> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(Error::BadRequest(format!(
            "limit {limit} is above the most a page holds, {MAX_LIMIT}"
        )));
    }
    let req = request(query, limit)?;
    let found = db.find(&req).await.map_err(|e| match e.name() {
        "invalid_bookmark" => Error::BadRequest(format!("invalid bookmark: {e}")),
        _ => e.into(),
    })?;
    let more = limit > 0 && found.docs.len() == limit && {
        let next = FindRequest {
            limit: 1,
            skip: 0,
            bookmark: found.bookmark.clone(),
            ..req
        };
        !db.find(&next).await?.docs.is_empty()
    };
    let mut notes = Vec::with_capacity(found.docs.len());
    for doc in &found.docs {
        let Some(n) = Note::from_doc(doc) else {
            continue;
        };
        notes.push(NoteSummary {
            state: tracker.badge(&n.id, has_conflicts(doc)).await?,
            excerpt: n.body.chars().take(EXCERPT_CHARS).collect(),
            id: n.id,
            rev: n.rev,
            title: n.title,
            notebook: n.notebook,
            tags: n.tags,
            updated_at: n.updated_at,
        });
    }
    Ok(NoteList {
        notes,
        more,
        bookmark: found.bookmark.filter(|_| more),
    })
}

/// A note's notebook and tags, as the counts need them.
type Facet = (String, Vec<String>);

#[derive(Debug)]
struct Facets {
    /// The store's update sequence they are current at.
    seq: u64,
    notes: HashMap<String, Facet>,
}

/// The side bar's counts: every live note's notebook and tags, kept current from the
/// store's changes feed.
#[derive(Debug, Default)]
pub struct FacetCache {
    read: Mutex<Option<Facets>>,
}

fn facet(doc: &Value) -> Option<(String, Facet)> {
    let n = Note::from_doc(doc)?;
    Some((n.id, (n.notebook, n.tags)))
}

impl FacetCache {
    /// Reads every note's notebook and tags, or only the notes changed since the last call.
    /// Requests that come meanwhile wait for it instead of reading again.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn refresh(&self, db: &Local) -> Result<()> {
        // tokio's lock: held across the reads, so that one request reads and the others
        // wait for its result. (An error leaves the cache as it was.)
        let mut read = self.read.lock().await;
        // The sequence is taken before the read, so the notes are at least as new as it
        // says: a write in between is read again by the next call.
        let seq = db.info().await?.update_seq;
        match &mut *read {
            Some(f) if f.seq == seq => {}
            Some(f) => {
                let changes = db
                    .changes(&ChangesRequest {
                        since: Some(Seq::from(f.seq)),
                        ..Default::default()
                    })
                    .await?;
                for c in changes.results {
                    if !c.id.starts_with(ID_PREFIX) {
                        continue;
                    }
                    match db.get(&c.id, &ReadOptions::default()).await {
                        Ok(doc) => match facet(&doc) {
                            Some((id, v)) => {
                                f.notes.insert(id, v);
                            }
                            None => {
                                f.notes.remove(&c.id);
                            }
                        },
                        Err(e) if e.is_not_found() => {
                            f.notes.remove(&c.id);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                f.seq = seq;
            }
            None => {
                let all = db
                    .all_docs(&AllDocsOptions {
                        include_docs: true,
                        startkey: Some(ID_PREFIX.to_owned()),
                        endkey: Some(format!("{ID_PREFIX}\u{10ffff}")),
                        ..Default::default()
                    })
                    .await?;
                let notes = all
                    .rows
                    .iter()
                    .filter_map(|r| r.doc.as_ref())
                    .filter_map(facet)
                    .collect();
                *read = Some(Facets { seq, notes });
            }
        }
        Ok(())
    }

    /// Notebooks and tags with their note counts, each sorted by name.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn counts(&self, db: &Local) -> Result<(Vec<Count>, Vec<Count>)> {
        self.refresh(db).await?;
        let read = self.read.lock().await;
        let mut notebooks: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
        for (book, ts) in read.iter().flat_map(|f| f.notes.values()) {
            *notebooks.entry(book).or_default() += 1;
            for t in ts {
                *tags.entry(t).or_default() += 1;
            }
        }
        let counts = |m: BTreeMap<&str, usize>| {
            m.into_iter()
                .map(|(name, count)| Count {
                    name: name.to_owned(),
                    count,
                })
                .collect()
        };
        Ok((counts(notebooks), counts(tags)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(literal("a.b (c)"), "a\\.b \\(c\\)");
        assert_eq!(literal("plain"), "plain");
    }
}
