//! The lists the page shows: notes of a notebook or a tag, or that a search finds in their
//! titles and bodies, newest first, a page at a time; and the notebooks and tags with their
//! counts.
//!
//! Lists are Mango queries on the local store. The app creates two JSON indexes at start
//! (in `_design/settee-notes`, so they replicate like any design document): `by-updated` on
//! `[updated_at]` and `by-notebook` on `[notebook, updated_at]`. A list is one `find`
//! sorted by `updated_at` descending on the index that serves it, with `limit`, and
//! `bookmark` for the next page; a tag (`tags` holds it: `$elemMatch`) is a condition on
//! the same scan. A page reads the index entries up to its last row and the documents
//! they name: for a notebook or all notes, `limit` documents; for a tag, the notes it skips
//! too.
//!
//! A search is not a Mango query (a `$regex` over bodies reads every note): the word index
//! of `search.rs` names the notes, sorted here by time, and only the page's notes are read.
//!
//! The notebook and tag counts of the side bar and the word index need every note: they
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

use crate::note::{Image, Note, ID_PREFIX};
use crate::search::{self, WordIndex};
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
    /// Only notes found by this search: each term starts a word of the title or the body
    /// (case-insensitive), and occurs there as typed.
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
    /// Its first image (the list's thumbnail), if it has one.
    pub image: Option<Image>,
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
pub async fn list(
    db: &Local,
    tracker: &Tracker,
    facets: &FacetCache,
    query: &ListQuery,
) -> Result<NoteList> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(Error::BadRequest(format!(
            "limit {limit} is above the most a page holds, {MAX_LIMIT}"
        )));
    }
    if let Some(search) = query.q.as_deref().and_then(search::Query::parse) {
        return search_list(db, tracker, facets, &search, query, limit).await;
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
        if let Some(row) = summary(tracker, doc).await? {
            notes.push(row);
        }
    }
    Ok(NoteList {
        notes,
        more,
        bookmark: found.bookmark.filter(|_| more),
    })
}

/// What the counts and the search need of a note.
#[derive(Debug)]
struct Facet {
    notebook: String,
    tags: Vec<String>,
    updated_at: i64,
}

#[derive(Debug)]
struct Facets {
    /// The store's update sequence they are current at.
    seq: u64,
    notes: HashMap<String, Facet>,
    /// The words of every note's title and body.
    words: WordIndex,
}

impl Facets {
    fn put(&mut self, n: Note) {
        self.words.insert(&n.id, &n.title, &n.body);
        let f = Facet {
            notebook: n.notebook,
            tags: n.tags,
            updated_at: n.updated_at,
        };
        self.notes.insert(n.id, f);
    }

    fn remove(&mut self, id: &str) {
        self.words.remove(id);
        self.notes.remove(id);
    }
}

/// The side bar's counts and the search: every live note's notebook, tags, time and words,
/// kept current from the store's changes feed.
#[derive(Debug, Default)]
pub struct FacetCache {
    read: Mutex<Option<Facets>>,
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
                        Ok(doc) => match Note::from_doc(&doc) {
                            Some(n) => f.put(n),
                            None => f.remove(&c.id),
                        },
                        Err(e) if e.is_not_found() => f.remove(&c.id),
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
                let mut f = Facets {
                    seq,
                    notes: HashMap::new(),
                    words: WordIndex::default(),
                };
                for n in all
                    .rows
                    .iter()
                    .filter_map(|r| r.doc.as_ref())
                    .filter_map(Note::from_doc)
                {
                    f.put(n);
                }
                *read = Some(f);
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
        for f in read.iter().flat_map(|f| f.notes.values()) {
            *notebooks.entry(&f.notebook).or_default() += 1;
            for t in &f.tags {
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

    /// The ids of the notes matching `search` (and the query's notebook and tag), newest
    /// first (ties: greater id first, as the lists' index orders them): `limit` of them
    /// from `offset`, and whether more follow.
    ///
    /// # Errors
    /// The store's errors.
    async fn search(
        &self,
        db: &Local,
        search: &search::Query,
        query: &ListQuery,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<String>, bool)> {
        self.refresh(db).await?;
        let read = self.read.lock().await;
        let Some(f) = &*read else {
            return Ok((Vec::new(), false));
        };
        let mut hits: Vec<(i64, &str)> = f
            .words
            .matching(search)
            .into_iter()
            .filter_map(|id| {
                let n = f.notes.get(id)?;
                let book = query.notebook.as_ref().is_none_or(|b| *b == n.notebook);
                let tag = query.tag.as_ref().is_none_or(|t| n.tags.contains(t));
                (book && tag).then_some((n.updated_at, id))
            })
            .collect();
        hits.sort_unstable_by(|a, b| b.cmp(a));
        let more = hits.len() > offset.saturating_add(limit);
        let page = hits
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(_, id)| id.to_owned())
            .collect();
        Ok((page, more))
    }
}

/// A search's bookmark: where the next page starts (Mango's bookmarks are opaque strings
/// too; this one is the app's own, marked so that it is never taken for Mango's).
const SEARCH_BOOKMARK: &str = "words:";

/// A search's page: the notes the word index finds, read from the store.
async fn search_list(
    db: &Local,
    tracker: &Tracker,
    facets: &FacetCache,
    search: &search::Query,
    query: &ListQuery,
    limit: usize,
) -> Result<NoteList> {
    let offset = match &query.bookmark {
        Some(b) => b
            .strip_prefix(SEARCH_BOOKMARK)
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::BadRequest(format!("invalid bookmark: {b:?}")))?,
        None => query.skip.unwrap_or(0),
    };
    let (ids, more) = facets.search(db, search, query, offset, limit).await?;
    let opts = ReadOptions {
        conflicts: true,
        ..Default::default()
    };
    let mut notes = Vec::with_capacity(ids.len());
    for id in ids {
        let doc = match db.get(&id, &opts).await {
            Ok(doc) => doc,
            // Deleted since the index was read: the next refresh drops it.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(row) = summary(tracker, &doc).await? {
            notes.push(row);
        }
    }
    Ok(NoteList {
        notes,
        more,
        bookmark: more.then(|| format!("{SEARCH_BOOKMARK}{}", offset + limit)),
    })
}

/// A list row of a stored note (`None` if the document is no live note).
async fn summary(tracker: &Tracker, doc: &Value) -> Result<Option<NoteSummary>> {
    let Some(n) = Note::from_doc(doc) else {
        return Ok(None);
    };
    Ok(Some(NoteSummary {
        state: tracker.badge(&n.id, has_conflicts(doc)).await?,
        excerpt: n.body.chars().take(EXCERPT_CHARS).collect(),
        image: n.images.into_iter().next(),
        id: n.id,
        rev: n.rev,
        title: n.title,
        notebook: n.notebook,
        tags: n.tags,
        updated_at: n.updated_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_search_finds_bodies_and_follows_edits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let tracker = Tracker::open(db.clone()).await.unwrap();
        let facets = FacetCache::default();
        let mut ids = Vec::new();
        for (title, body) in [
            ("one", "apples and pears"),
            ("two", "Pear tart"),
            ("three", "x"),
        ] {
            let input = crate::NoteInput {
                title: title.into(),
                body: body.into(),
                ..Default::default()
            };
            ids.push(crate::notes::create(&db, &input, "test").await.unwrap());
        }
        let titles = |l: NoteList| l.notes.into_iter().map(|n| n.title).collect::<Vec<_>>();
        let q = |text: &str, limit| ListQuery {
            q: Some(text.into()),
            limit: Some(limit),
            ..Default::default()
        };
        let found = list(&db, &tracker, &facets, &q("pear", 10)).await.unwrap();
        assert_eq!(titles(found), ["two", "one"]);
        let first = list(&db, &tracker, &facets, &q("pear", 1)).await.unwrap();
        assert!(first.more);
        let next = ListQuery {
            bookmark: first.bookmark.clone(),
            ..q("pear", 1)
        };
        assert_eq!(titles(first), ["two"]);
        assert_eq!(
            titles(list(&db, &tracker, &facets, &next).await.unwrap()),
            ["one"]
        );
        // An edit is found by its new words only.
        let three = &ids[2];
        let edit = crate::NoteInput {
            rev: Some(three.rev.clone()),
            title: "three".into(),
            body: "pear jam".into(),
            ..Default::default()
        };
        crate::notes::update(&db, &three.id, &edit, "test")
            .await
            .unwrap();
        let found = list(&db, &tracker, &facets, &q("pear", 10)).await.unwrap();
        assert_eq!(titles(found), ["three", "two", "one"]);
        let gone = list(&db, &tracker, &facets, &q("apples", 10))
            .await
            .unwrap();
        assert_eq!(titles(gone), ["one"]);
    }
}
