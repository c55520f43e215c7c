//! Reading and writing notes in the local store: create, edit, delete, read with every
//! conflicting version, and resolve a conflict. All calls are blocking (the store is
//! synchronous); `api.rs` runs them on tokio's blocking pool.
//!
//! Every write checks the revision the page last saw, so an edit made from a stale page is
//! refused (409) and changes nothing, as in CouchDB.

use serde::Deserialize;
use serde_json::Value;
use settee::store::{GetOptions, OpenRevResult, OpenRevs};
use settee::{Database, Resolution, Rev};

use crate::note::{new_id, now_ms, Content, Note, NoteInput};
use crate::{Error, Result};

/// What the page sends to resolve a conflict: the versions it showed, and either the one
/// to keep or a merged content.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    /// The revisions of every version the page showed. If the note has other versions by
    /// now (another device's edit arrived), the resolution is refused.
    pub revs: Vec<String>,
    /// Keep this version as it is.
    #[serde(default)]
    pub keep: Option<String>,
    /// Or write this merged content.
    #[serde(default)]
    pub merged: Option<NoteInput>,
}

/// A note with every current version when it is in conflict.
#[derive(Debug, Clone)]
pub struct NoteVersions {
    /// The note (its winning version).
    pub note: Note,
    /// Every live version, the winner first; empty when there is no conflict.
    pub versions: Vec<Note>,
}

fn parse_rev(rev: &str) -> Result<Rev> {
    rev.parse::<Rev>()
        .map_err(|e| Error::BadRequest(format!("{rev:?} is not a revision: {e}")))
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no note {id}"))
}

/// Reads the winning document of a live note, or `NotFound`.
fn current(db: &Database, id: &str) -> Result<(Value, Note)> {
    let doc = match db.get(
        id,
        &GetOptions {
            conflicts: true,
            ..Default::default()
        },
    ) {
        Ok(doc) => doc,
        Err(e) if e.is_not_found() => return Err(not_found(id)),
        Err(e) => return Err(e.into()),
    };
    let note = Note::from_doc(&doc).ok_or_else(|| not_found(id))?;
    Ok((doc, note))
}

/// A store write refused as a conflict becomes a stale-revision error naming the note.
fn stale(id: &str, given: &str, current: &str) -> Error {
    Error::Conflict(format!(
        "note {id} was changed since revision {given} (its current revision is {current}); \
         reload it and edit again"
    ))
}

/// Creates a note.
///
/// # Errors
/// [`Error::BadRequest`] for invalid input (or a `rev`); the store's errors.
pub fn create(db: &Database, input: &NoteInput) -> Result<Note> {
    if input.rev.is_some() {
        return Err(Error::BadRequest(
            "a new note has no rev; to edit a note, PUT /api/notes/{id}".into(),
        ));
    }
    let content = input.content()?;
    let id = new_id();
    let now = now_ms();
    db.put(content.to_doc(&id, None, now, now))?;
    Ok(current(db, &id)?.1)
}

/// Edits a note: `input.rev` must be its current revision.
///
/// # Errors
/// [`Error::BadRequest`] for invalid input or a missing `rev`, [`Error::NotFound`],
/// [`Error::Conflict`] for a stale `rev`; the store's errors. Nothing is written on error.
pub fn update(db: &Database, id: &str, input: &NoteInput) -> Result<Note> {
    let content = input.content()?;
    let rev = input.rev.as_deref().ok_or_else(|| {
        Error::BadRequest("rev is required to edit a note (its current revision)".into())
    })?;
    parse_rev(rev)?;
    let (_, note) = current(db, id)?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    write(db, id, &note, &content)?;
    Ok(current(db, id)?.1)
}

fn write(db: &Database, id: &str, note: &Note, content: &Content) -> Result<()> {
    match db.put(content.to_doc(id, Some(&note.rev), note.created_at, now_ms())) {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Err(stale(id, &note.rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a note: `rev` must be its current revision. Returns the deletion's revision.
///
/// # Errors
/// [`Error::BadRequest`] for a malformed `rev`, [`Error::NotFound`], [`Error::Conflict`]
/// for a stale `rev`; the store's errors.
pub fn delete(db: &Database, id: &str, rev: &str) -> Result<String> {
    let parsed = parse_rev(rev)?;
    let (_, note) = current(db, id)?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    match db.delete(id, &parsed) {
        Ok(r) => Ok(r.rev.map(|r| r.to_string()).unwrap_or_default()),
        Err(e) if e.is_conflict() => Err(stale(id, rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

/// Reads a note, with every version when it is in conflict.
///
/// # Errors
/// [`Error::NotFound`]; the store's errors.
pub fn get(db: &Database, id: &str) -> Result<NoteVersions> {
    let (doc, note) = current(db, id)?;
    let conflicted = doc
        .get("_conflicts")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    let versions = if conflicted {
        live_versions(db, id)?
    } else {
        Vec::new()
    };
    Ok(NoteVersions { note, versions })
}

/// Every live leaf of a note, the winner first (CouchDB's order: longer path, then greater
/// revision hash).
fn live_versions(db: &Database, id: &str) -> Result<Vec<Note>> {
    let leaves = db.open_revs(id, OpenRevs::All, &GetOptions::default())?;
    let mut versions: Vec<(Rev, Note)> = leaves
        .into_iter()
        .filter_map(|l| match l {
            OpenRevResult::Ok(doc) => {
                let note = Note::from_doc(&doc)?;
                Some((note.rev.parse::<Rev>().ok()?, note))
            }
            OpenRevResult::Missing(_) => None,
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(versions.into_iter().map(|(_, n)| n).collect())
}

/// Resolves a conflict with Settee's `resolve_conflict`: the kept version stays as it is
/// (or the merged content becomes the note's next revision, on the winner) and every other
/// version is deleted, in one atomic store write, so that every device that syncs sees one
/// version again.
///
/// # Errors
/// [`Error::BadRequest`] for neither or both of `keep` and `merged`, a `keep` that is not
/// one of the versions, or invalid merged content; [`Error::NotFound`]; [`Error::Conflict`]
/// when the note is not in conflict or has versions the page did not show. Nothing is
/// written on error.
pub fn resolve(db: &Database, id: &str, input: &ResolveInput) -> Result<Note> {
    let merged = match (&input.keep, &input.merged) {
        (Some(_), None) => None,
        (None, Some(m)) => Some(m.content()?),
        _ => return Err(Error::BadRequest(
            "give either keep (a version's rev) or merged (the merged note), not both or neither"
                .into(),
        )),
    };
    for rev in &input.revs {
        parse_rev(rev)?;
    }
    let (_, winner) = current(db, id)?;
    let versions = live_versions(db, id)?;
    if versions.len() < 2 {
        return Err(Error::Conflict(format!(
            "note {id} has no conflict (any more); reload it"
        )));
    }
    let mut seen: Vec<&str> = input.revs.iter().map(String::as_str).collect();
    let mut live: Vec<&str> = versions.iter().map(|v| v.rev.as_str()).collect();
    seen.sort_unstable();
    live.sort_unstable();
    if seen != live {
        return Err(Error::Conflict(format!(
            "note {id} has other versions than the ones shown ({}); review them again",
            live.join(", ")
        )));
    }
    let resolution = match (merged, &input.keep) {
        (Some(m), _) => Resolution::Merge(merged_body(&m, winner.created_at)),
        (None, Some(keep)) => {
            if !versions.iter().any(|v| &v.rev == keep) {
                return Err(Error::BadRequest(format!(
                    "{keep} is not one of the versions of note {id}"
                )));
            }
            Resolution::Keep(parse_rev(keep)?)
        }
        (None, None) => {
            return Err(Error::BadRequest(
                "give either keep (a version's rev) or merged (the merged note)".into(),
            ))
        }
    };
    match db.resolve_conflict(id, resolution) {
        Ok(_) => Ok(current(db, id)?.1),
        Err(e) if e.is_conflict() || e.is_not_found() => Err(Error::Conflict(format!(
            "note {id} changed while resolving ({e}); reload it"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The body of a merged version (`resolve_conflict` sets `_id` and `_rev`).
fn merged_body(content: &Content, created_at: i64) -> Value {
    let mut doc = content.to_doc("", None, created_at, now_ms());
    if let Some(map) = doc.as_object_mut() {
        map.remove("_id");
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conflicted() -> (tempfile::TempDir, Database, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("s")).unwrap();
        let id = "note:c";
        db.bulk_docs(
            vec![
                json!({"_id": id, "_rev": "2-aaa", "_revisions": {"start": 2, "ids": ["aaa", "base"]},
                       "type": "note", "title": "mine", "created_at": 1, "updated_at": 2}),
                json!({"_id": id, "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "base"]},
                       "type": "note", "title": "theirs", "created_at": 1, "updated_at": 3}),
            ],
            false,
        )
        .unwrap();
        (dir, db, id.to_owned())
    }

    #[test]
    fn keeping_the_loser_keeps_it_and_deletes_the_other_version() {
        let (_d, db, id) = conflicted();
        let got = get(&db, &id).unwrap();
        assert_eq!(got.note.rev, "2-bbb");
        assert_eq!(got.versions.len(), 2);
        let note = resolve(
            &db,
            &id,
            &ResolveInput {
                revs: vec!["2-aaa".into(), "2-bbb".into()],
                keep: Some("2-aaa".into()),
                merged: None,
            },
        )
        .unwrap();
        assert_eq!(note.title, "mine");
        assert_eq!(note.rev, "2-aaa");
        let after = get(&db, &id).unwrap();
        assert!(after.versions.is_empty(), "{:?}", after.versions);
        db.verify().unwrap();
    }

    #[test]
    fn merging_writes_the_merged_note_on_the_winner_and_ends_the_conflict() {
        let (_d, db, id) = conflicted();
        let merged = NoteInput {
            title: "mine + theirs".into(),
            ..Default::default()
        };
        let note = resolve(
            &db,
            &id,
            &ResolveInput {
                revs: vec!["2-aaa".into(), "2-bbb".into()],
                keep: None,
                merged: Some(merged),
            },
        )
        .unwrap();
        assert_eq!(note.title, "mine + theirs");
        assert!(note.rev.starts_with("3-"), "{}", note.rev);
        assert_eq!(note.created_at, 1);
        assert!(get(&db, &id).unwrap().versions.is_empty());
        db.verify().unwrap();
    }

    #[test]
    fn resolving_with_an_unseen_version_changes_nothing() {
        let (_d, db, id) = conflicted();
        let before = db.info().unwrap().update_seq;
        let err = resolve(
            &db,
            &id,
            &ResolveInput {
                revs: vec!["2-aaa".into()],
                keep: Some("2-aaa".into()),
                merged: None,
            },
        )
        .unwrap_err();
        assert_eq!(err.name(), "conflict", "{err}");
        assert_eq!(db.info().unwrap().update_seq, before);
        assert_eq!(get(&db, &id).unwrap().versions.len(), 2);
    }
}
