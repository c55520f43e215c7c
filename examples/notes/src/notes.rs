//! Reading and writing notes in the local store: create, edit, delete, read with every
//! conflicting version, and resolve a conflict, through Settee's `Documents` calls.
//! Notes are read as JSON (`Note::from_doc` shows a malformed note from another writer
//! instead of refusing it), conflicts as `Doc<Value>` leaves merged with `merge_conflict`.
//!
//! Every write checks the revision the page last saw, so an edit made from a stale page is
//! refused (409) and changes nothing, as in CouchDB.

use serde::Deserialize;
use serde_json::Value;
use settee::{Doc, Documents, Local, ReadOptions, Resolution, Rev};

use crate::images::{self, ImageRef};
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
    /// With `merged`: the images to keep, from any version (every version's images when
    /// absent: the union). They become images of the merged note.
    #[serde(default)]
    pub images: Option<Vec<ImageRef>>,
}

/// A note with every current version when it is in conflict.
#[derive(Debug, Clone)]
pub struct NoteVersions {
    /// The note (its winning version).
    pub note: Note,
    /// Every live version, the winner first; empty when there is no conflict.
    pub versions: Vec<Note>,
}

impl NoteVersions {
    /// The suggested merged text of the versions (`None` without a conflict): shared lines
    /// once, differences marked with the versions' sides, "this device" for the ones
    /// edited on `device`.
    pub fn suggested_body(&self, device: &str) -> Option<String> {
        let side = |v: &Note| match v.device.as_deref() {
            Some(d) if d == device => "this device".to_owned(),
            Some(d) => format!("device {d}"),
            None => "another device".to_owned(),
        };
        // This device's version first (whichever the winner is, a revision hash decides), so
        // the merge always reads "this device" above the others.
        let mut ordered: Vec<&Note> = self.versions.iter().collect();
        ordered.sort_by_key(|v| v.device.as_deref() != Some(device));
        let (first, rest) = ordered.split_first()?;
        let mut body = first.body.clone();
        let mut label = side(first);
        for v in rest {
            body = crate::merge::merge_lines(&body, &v.body, &label, &side(v));
            label = "merged".to_owned();
        }
        Some(body)
    }
}

pub(crate) fn parse_rev(rev: &str) -> Result<Rev> {
    rev.parse::<Rev>()
        .map_err(|e| Error::BadRequest(format!("{rev:?} is not a revision: {e}")))
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no note {id}"))
}

/// Reads the winning document of a live note, or `NotFound`.
pub(crate) async fn current(db: &Local, id: &str) -> Result<(Value, Note)> {
    let opts = ReadOptions {
        conflicts: true,
        ..Default::default()
    };
    let doc = match db.get(id, &opts).await {
        Ok(doc) => doc,
        Err(e) if e.is_not_found() => return Err(not_found(id)),
        Err(e) => return Err(e.into()),
    };
    let note = Note::from_doc(&doc).ok_or_else(|| not_found(id))?;
    Ok((doc, note))
}

/// A store write refused as a conflict becomes a stale-revision error naming the note.
pub(crate) fn stale(id: &str, given: &str, current: &str) -> Error {
    Error::Conflict(format!(
        "note {id} was changed since revision {given} (its current revision is {current}); \
         reload it and edit again"
    ))
}

/// Creates a note.
///
/// # Errors
/// [`Error::BadRequest`] for invalid input (or a `rev`); the store's errors.
/// Written as edited on `device`.
pub async fn create(db: &Local, input: &NoteInput, device: &str) -> Result<Note> {
    if input.rev.is_some() {
        return Err(Error::BadRequest(
            "a new note has no rev; to edit a note, PUT /api/notes/{id}".into(),
        ));
    }
    let content = input.content()?;
    let id = new_id();
    let now = now_ms();
    db.put(content.to_doc(&id, None, now, now, device)).await?;
    Ok(current(db, &id).await?.1)
}

/// Edits a note: `input.rev` must be its current revision.
///
/// # Errors
/// [`Error::BadRequest`] for invalid input or a missing `rev`, [`Error::NotFound`],
/// [`Error::Conflict`] for a stale `rev`; the store's errors. Nothing is written on error.
/// Written as edited on `device`.
pub async fn update(db: &Local, id: &str, input: &NoteInput, device: &str) -> Result<Note> {
    let content = input.content()?;
    let rev = input.rev.as_deref().ok_or_else(|| {
        Error::BadRequest("rev is required to edit a note (its current revision)".into())
    })?;
    parse_rev(rev)?;
    let (doc, note) = current(db, id).await?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    write(db, id, &doc, &note, &content, device).await?;
    Ok(current(db, id).await?.1)
}

/// Writes `content` as the next revision of `note` (read as `doc`), keeping the note's
/// attachments (its images): a document written without `_attachments` would drop them.
pub(crate) async fn write(
    db: &Local,
    id: &str,
    current: &Value,
    note: &Note,
    content: &Content,
    device: &str,
) -> Result<()> {
    let mut doc = content.to_doc(id, Some(&note.rev), note.created_at, now_ms(), device);
    if let Some(atts) = current.get("_attachments") {
        doc["_attachments"] = atts.clone();
    }
    match db.put(doc).await {
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
pub async fn delete(db: &Local, id: &str, rev: &str) -> Result<String> {
    let parsed = parse_rev(rev)?;
    let (_, note) = current(db, id).await?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    match db.delete(id, Some(&parsed)).await {
        Ok(r) => Ok(r
            .get("rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()),
        Err(e) if e.is_conflict() => Err(stale(id, rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

/// Reads a note, with every version when it is in conflict.
///
/// # Errors
/// [`Error::NotFound`]; the store's errors.
pub async fn get(db: &Local, id: &str) -> Result<NoteVersions> {
    let (doc, note) = current(db, id).await?;
    let conflicted = doc
        .get("_conflicts")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    let versions = if conflicted {
        live_versions(db, id)
            .await?
            .into_iter()
            .map(|(_, note)| note)
            .collect()
    } else {
        Vec::new()
    };
    Ok(NoteVersions { note, versions })
}

/// Every live leaf of a note, the winner first (CouchDB's order: longer path, then greater
/// revision hash), as Settee's `leaves` gives them, each with the note it reads as (a leaf
/// that is no note, such as a deleted one, is left out).
async fn live_versions(db: &Local, id: &str) -> Result<Vec<(Doc<Value>, Note)>> {
    let leaves = match db.leaves::<Value>(id).await {
        Ok(leaves) => leaves,
        Err(e) if e.is_not_found() => return Err(not_found(id)),
        Err(e) => return Err(e.into()),
    };
    let mut versions = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        if let Some(note) = Note::from_doc(&leaf.to_json()?) {
            versions.push((leaf, note));
        }
    }
    Ok(versions)
}

/// Resolves a conflict with Settee's `resolve_conflict` (keep a version) or
/// `merge_conflict` (the merged content becomes the note's next revision, on the winner):
/// the kept or merged version stays and every other version is deleted, in one atomic store write, so that every device that syncs sees one
/// version again.
///
/// # Errors
/// [`Error::BadRequest`] for neither or both of `keep` and `merged`, a `keep` that is not
/// one of the versions, or invalid merged content; [`Error::NotFound`]; [`Error::Conflict`]
/// when the note is not in conflict or has versions the page did not show. Nothing is
/// written on error.
/// A merge is written as edited on `device`.
pub async fn resolve(db: &Local, id: &str, input: &ResolveInput, device: &str) -> Result<Note> {
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
    current(db, id).await?;
    let versions = live_versions(db, id).await?;
    if versions.len() < 2 {
        return Err(Error::Conflict(format!(
            "note {id} has no conflict (any more); reload it"
        )));
    }
    let mut seen: Vec<&str> = input.revs.iter().map(String::as_str).collect();
    let mut live: Vec<&str> = versions.iter().map(|(_, v)| v.rev.as_str()).collect();
    seen.sort_unstable();
    live.sort_unstable();
    if seen != live {
        return Err(Error::Conflict(format!(
            "note {id} has other versions than the ones shown ({}); review them again",
            live.join(", ")
        )));
    }
    let resolved = match (merged, &input.keep) {
        (Some(m), _) => {
            // INVARIANT: `versions` has at least two entries (checked above).
            let created_at = versions[0].1.created_at;
            let winner = images::gather(db, id, &versions, input.images.as_deref()).await?;
            let merged = Doc {
                body: merged_body(&m, created_at, device),
                ..winner
            };
            db.merge_conflict(&merged).await.map(|_| ())
        }
        (None, Some(keep)) => {
            if !versions.iter().any(|(_, v)| &v.rev == keep) {
                return Err(Error::BadRequest(format!(
                    "{keep} is not one of the versions of note {id}"
                )));
            }
            db.resolve_conflict(id, Resolution::Keep(parse_rev(keep)?))
                .await
                .map(|_| ())
        }
        (None, None) => {
            return Err(Error::BadRequest(
                "give either keep (a version's rev) or merged (the merged note)".into(),
            ))
        }
    };
    match resolved {
        Ok(()) => Ok(current(db, id).await?.1),
        Err(e) if e.is_conflict() || e.is_not_found() => Err(Error::Conflict(format!(
            "note {id} changed while resolving ({e}); reload it"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The body of a merged version (`merge_conflict` writes it with the winner's id and
/// revision).
fn merged_body(content: &Content, created_at: i64, device: &str) -> Value {
    let mut doc = content.to_doc("", None, created_at, now_ms(), device);
    if let Some(map) = doc.as_object_mut() {
        map.remove("_id");
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A note in conflict, written as replication writes it (the store's own call: the
    /// facade writes new edits only).
    fn conflicted() -> (tempfile::TempDir, Local, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let id = "note:c";
        db.store().unwrap().bulk_docs(
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

    #[tokio::test]
    async fn keeping_the_loser_keeps_it_and_deletes_the_other_version() {
        let (_d, db, id) = conflicted();
        let got = get(&db, &id).await.unwrap();
        assert_eq!(got.note.rev, "2-bbb");
        assert_eq!(got.versions.len(), 2);
        let note = resolve(
            &db,
            &id,
            &ResolveInput {
                revs: vec!["2-aaa".into(), "2-bbb".into()],
                keep: Some("2-aaa".into()),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        assert_eq!(note.title, "mine");
        assert_eq!(note.rev, "2-aaa");
        let after = get(&db, &id).await.unwrap();
        assert!(after.versions.is_empty(), "{:?}", after.versions);
        db.store().unwrap().verify().unwrap();
    }

    #[tokio::test]
    async fn merging_writes_the_merged_note_on_the_winner_and_ends_the_conflict() {
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
                merged: Some(merged),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        assert_eq!(note.title, "mine + theirs");
        assert!(note.rev.starts_with("3-"), "{}", note.rev);
        assert_eq!(note.created_at, 1);
        assert!(get(&db, &id).await.unwrap().versions.is_empty());
        db.store().unwrap().verify().unwrap();
    }

    #[tokio::test]
    async fn resolving_with_an_unseen_version_changes_nothing() {
        let (_d, db, id) = conflicted();
        let before = db.info().await.unwrap().update_seq;
        let err = resolve(
            &db,
            &id,
            &ResolveInput {
                revs: vec!["2-aaa".into()],
                keep: Some("2-aaa".into()),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), "conflict", "{err}");
        assert_eq!(db.info().await.unwrap().update_seq, before);
        assert_eq!(get(&db, &id).await.unwrap().versions.len(), 2);
    }
}
