//! The lists the page shows: notes of a notebook or a tag, or whose title matches a search,
//! newest first; and the notebooks and tags with their counts.
//!
//! FIXME(#12): provisional. Settee has no Mango `find` or indexes yet, so every query reads
//! all the notes (`_all_docs` over the `note:` ids) and filters and sorts them in memory:
//! O(notes) per request. When issue 12 lands, the app creates indexes on
//! `[notebook, updated_at]`, `[tags, updated_at]` and `[updated_at]` at start and [`list`]
//! becomes a `find` with `sort: [{updated_at: desc}]`, `limit` and `skip`; the interface
//! (a [`ListQuery`] in, a [`NoteList`] out) stays, and [`NotesCache`] goes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use settee::store::AllDocsOptions;
use settee::Database;

use crate::note::{Note, ID_PREFIX};
use crate::state::{Badge, StateView};
use crate::{Error, Result};

/// The most notes one list request returns.
pub const MAX_LIMIT: usize = 1000;
/// How many notes a list request returns when it does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// How much of a note's text a list row carries.
const EXCERPT_CHARS: usize = 120;

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
    /// Skip this many first (paging).
    pub skip: Option<usize>,
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
    /// How many notes match (all pages).
    pub total: usize,
    /// The rows of this page, newest first.
    pub notes: Vec<NoteSummary>,
}

/// A notebook or tag and how many notes it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The notebook's or tag's name.
    pub name: String,
    /// Its notes.
    pub count: usize,
}

/// Every live note. Blocking.
fn all_notes(db: &Database) -> Result<Vec<Note>> {
    let all = db.all_docs(&AllDocsOptions {
        include_docs: true,
        startkey: Some(ID_PREFIX.to_owned()),
        endkey: Some(format!("{ID_PREFIX}\u{10ffff}")),
        ..Default::default()
    })?;
    Ok(all
        .rows
        .iter()
        .filter_map(|r| r.doc.as_ref())
        .filter_map(Note::from_doc)
        .collect())
}

/// The notes as read at the store's last update sequence, shared by the requests that come
/// before the next write (a page asks for its list and its notebooks at once: one read of
/// the store serves both).
#[derive(Debug, Default)]
pub struct NotesCache {
    read: Mutex<Option<(u64, Arc<Vec<Note>>)>>,
}

impl NotesCache {
    /// Every live note, read again only if the store changed. Blocking: requests that come
    /// while the store is being read wait for that read instead of reading it again.
    fn notes(&self, db: &Database) -> Result<Arc<Vec<Note>>> {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        // The sequence is taken before the read, so the notes are at least as new as it
        // says: a write in between makes the next request read again.
        let seq = db.info()?.update_seq;
        if let Some((at, notes)) = &*read {
            if *at == seq {
                return Ok(notes.clone());
            }
        }
        let notes = Arc::new(all_notes(db)?);
        *read = Some((seq, notes.clone()));
        Ok(notes)
    }
}

/// The notes matching `query`, newest first (ties by id), with their badges. Blocking.
///
/// # Errors
/// [`Error::BadRequest`] for a limit above [`MAX_LIMIT`]; the store's errors.
pub fn list(
    db: &Database,
    cache: &NotesCache,
    view: &StateView,
    query: &ListQuery,
) -> Result<NoteList> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(Error::BadRequest(format!(
            "limit {limit} is above the most a page holds, {MAX_LIMIT}"
        )));
    }
    let q = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let all = cache.notes(db)?;
    let mut notes: Vec<&Note> = all
        .iter()
        .filter(|n| query.notebook.as_ref().is_none_or(|b| &n.notebook == b))
        .filter(|n| query.tag.as_ref().is_none_or(|t| n.tags.contains(t)))
        .filter(|n| {
            q.as_ref()
                .is_none_or(|q| n.title.to_lowercase().contains(q.as_str()))
        })
        .collect();
    notes.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
    let total = notes.len();
    let notes = notes
        .into_iter()
        .skip(query.skip.unwrap_or(0))
        .take(limit)
        .map(|n| NoteSummary {
            state: view.badge(&n.id, &n.rev),
            excerpt: n.body.chars().take(EXCERPT_CHARS).collect(),
            id: n.id.clone(),
            rev: n.rev.clone(),
            title: n.title.clone(),
            notebook: n.notebook.clone(),
            tags: n.tags.clone(),
            updated_at: n.updated_at,
        })
        .collect();
    Ok(NoteList { total, notes })
}

/// Notebooks and tags with their note counts, each sorted by name. Blocking.
///
/// # Errors
/// The store's errors.
pub fn notebooks_and_tags(db: &Database, cache: &NotesCache) -> Result<(Vec<Count>, Vec<Count>)> {
    let mut notebooks: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for n in cache.notes(db)?.iter() {
        *notebooks.entry(n.notebook.clone()).or_default() += 1;
        for t in &n.tags {
            *tags.entry(t.clone()).or_default() += 1;
        }
    }
    let counts = |m: BTreeMap<String, usize>| {
        m.into_iter()
            .map(|(name, count)| Count { name, count })
            .collect()
    };
    Ok((counts(notebooks), counts(tags)))
}
