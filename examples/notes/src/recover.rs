//! Taking work back: bringing a deleted note back ("Undo" after a delete), and going back
//! to the server's version of a note whose edit the server refused. Ordinary reads and
//! writes are `notes.rs`'s; this module only writes a new revision whose content is an
//! earlier one's.

use serde_json::Value;
use settee::{Documents, Local, ReadOptions};

use crate::images;
use crate::note::{now_ms, Content, Note};
use crate::notes::{current, not_found, parse_rev, write};
use crate::{Error, Result};

/// Brings back note `id` deleted at revision `deleted` with the content it had at revision
/// `from` (the revision the deletion replaced): a new revision on top of the deletion, as
/// CouchDB revives a deleted document, so that every device that synced the deletion gets
/// the note back.
///
/// # Errors
/// [`Error::BadRequest`] for malformed revisions; [`Error::NotFound`] when `from` is not a
/// revision of the note the store still holds; [`Error::Conflict`] when the note is not
/// deleted at `deleted` (edited or brought back elsewhere since). Nothing is written on
/// error.
pub async fn undelete(
    db: &Local,
    id: &str,
    deleted: &str,
    from: &str,
    device: &str,
) -> Result<Note> {
    let deleted_rev = parse_rev(deleted)?;
    let from_rev = parse_rev(from)?;
    let old = db
        .get(
            id,
            &ReadOptions {
                rev: Some(from_rev.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e.is_not_found() {
            true => Error::NotFound(format!("note {id} has no revision {from} any more")),
            false => e.into(),
        })?;
    let mut body = old;
    let Some(map) = body.as_object_mut() else {
        return Err(not_found(id));
    };
    map.insert("_rev".into(), Value::String(deleted_rev.to_string()));
    map.remove("_deleted");
    map.insert("updated_at".into(), Value::from(now_ms()));
    map.insert("device".into(), Value::from(device));
    // The deletion has no attachments to keep as stubs: the images are copied back from
    // `from` once the note is back.
    let attachments: Vec<String> = map
        .remove("_attachments")
        .and_then(|a| a.as_object().map(|a| a.keys().cloned().collect()))
        .unwrap_or_default();
    match db.put(body).await {
        Ok(res) => {
            let mut rev = res
                .get("rev")
                .and_then(Value::as_str)
                .map(parse_rev)
                .transpose()?;
            for name in &attachments {
                let Some(onto) = rev.clone() else { break };
                match images::copy(db, id, &from_rev, name, &onto, name).await {
                    Ok(next) => rev = Some(next),
                    // Compacted away since the delete: the note comes back without it.
                    Err(e) => tracing::warn!(id, name, error = %e, "bringing an image back"),
                }
            }
            Ok(current(db, id).await?.1)
        }
        Err(e) if e.is_conflict() => Err(Error::Conflict(format!(
            "note {id} changed since it was deleted (revision {deleted}); it cannot be undone"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the current version of note `id` with the server's version of it (after the
/// server refused an edit): a new revision here, on top of the refused one, whose content
/// is the server's; once pushed, the note is synced again. Reads the server.
///
/// # Errors
/// [`Error::NotFound`] when the note is not here or the server has no version of it
/// (a new note the server refused: delete it or edit it); the server's errors (offline,
/// unauthorized). Nothing is written on error.
pub async fn revert_to_server(
    db: &Local,
    server: &settee::Remote,
    id: &str,
    device: &str,
) -> Result<Note> {
    let (mut doc, note) = current(db, id).await?;
    let theirs_doc = match server.get(id, &ReadOptions::default()).await {
        Ok(doc) => doc,
        Err(e) if e.is_not_found() => {
            return Err(Error::NotFound(format!(
                "the server has no version of note {id}; delete it or edit it"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let Some(theirs) = Note::from_doc(&theirs_doc) else {
        return Err(Error::NotFound(format!(
            "the server's version of {id} is deleted or not a note"
        )));
    };
    let content = Content {
        title: theirs.title,
        body: theirs.body,
        notebook: theirs.notebook,
        tags: theirs.tags,
    };
    // The server's images too: this device's attachments that the server has as they are
    // stay (as stubs, no bytes move); the others go, and the server's that are not here
    // are read from it into the new revision.
    let their_atts = theirs_doc
        .get("_attachments")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let same = |name: &str, stub: &Value| {
        their_atts
            .get(name)
            .is_some_and(|t| t.get("digest").is_some() && t.get("digest") == stub.get("digest"))
    };
    let mut kept = serde_json::Map::new();
    if let Some(atts) = doc.get("_attachments").and_then(Value::as_object) {
        for (name, stub) in atts {
            if same(name, stub) {
                kept.insert(name.clone(), stub.clone());
            }
        }
    }
    let missing: Vec<String> = their_atts
        .keys()
        .filter(|n| !kept.contains_key(*n))
        .cloned()
        .collect();
    if let Some(obj) = doc.as_object_mut() {
        if kept.is_empty() {
            obj.remove("_attachments");
        } else {
            obj.insert("_attachments".into(), Value::Object(kept));
        }
    }
    write(db, id, &doc, &note, &content, device).await?;
    let their_rev = theirs_doc
        .get("_rev")
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<settee::Rev>().ok());
    for name in missing {
        let att = server.get_attachment(id, &name, their_rev.as_ref()).await?;
        let content_type = att
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let onto = parse_rev(&current(db, id).await?.1.rev)?;
        let reader = tokio_util::io::StreamReader::new(att.body);
        db.put_attachment_from(id, Some(&onto), &name, &content_type, reader, att.length)
            .await?;
    }
    Ok(current(db, id).await?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes;
    use crate::NoteInput;

    #[tokio::test]
    async fn a_deleted_note_comes_back_with_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let input = NoteInput {
            title: "Keep me".into(),
            body: "precious".into(),
            ..Default::default()
        };
        let note = notes::create(&db, &input, "test").await.unwrap();
        let deleted = notes::delete(&db, &note.id, &note.rev).await.unwrap();
        assert!(notes::get(&db, &note.id).await.is_err());
        let back = undelete(&db, &note.id, &deleted, &note.rev, "test")
            .await
            .unwrap();
        assert_eq!(
            (back.title.as_str(), back.body.as_str()),
            ("Keep me", "precious")
        );
        assert!(back.rev.starts_with("3-"), "{}", back.rev);
        assert_eq!(back.created_at, note.created_at);
        // Undone once: a second undo of the same deletion is refused.
        let again = undelete(&db, &note.id, &deleted, &note.rev, "test")
            .await
            .unwrap_err();
        assert_eq!(again.name(), "conflict", "{again}");
    }
}
