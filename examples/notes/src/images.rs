//! A note's images: attachments of the note document with an `image/*` type, added from a
//! stream (the page's upload goes to the store as it arrives, never whole in memory),
//! removed, read back as a stream, and copied from one revision to another (a conflict's
//! merge keeps every side's images; an undone delete brings them back). Which attachments
//! are images, and their order, is `note.rs`'s [`crate::note::Image`].
//!
//! Why attachments and not data in the body: they sync as CouchDB attachments (streamed,
//! deduplicated by digest), and a text edit or a line merge of the body can never break or
//! duplicate an image. The page shows them under the text (a gallery), not at a marker in
//! it: the editor is a plain text area, and a marker typed over by mistake would orphan its
//! image.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use settee::{AttachmentStream, AttachmentUpload, Doc, Documents, Local, ReadOptions, Rev};

use crate::note::{is_image_type, now_ms, Note};
use crate::notes::{current, parse_rev, stale};
use crate::{Error, Result};

/// The largest image a note takes. A phone's photo is a few megabytes; this leaves room
/// for a large screenshot while a mistaken upload (a video) is refused at once.
pub const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

/// The longest image name kept (a longer one is cut, keeping its extension).
const MAX_NAME_CHARS: usize = 100;

/// One image of one version of a note, as the page names it when it resolves a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// The version's revision.
    pub rev: String,
    /// The image's name in that version.
    pub name: String,
}

/// What an upload says about itself: the name wanted, its type and (when the request
/// said) its length.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub(crate) name: String,
    pub(crate) content_type: String,
    pub(crate) length: Option<u64>,
}

/// Adds an image to note `id` at its current revision `rev`, from `body` (streamed into the
/// store). Returns the note and the name the image got (the one wanted, made safe and
/// unique within the note).
///
/// # Errors
/// [`Error::UnsupportedType`] for a type other than `image/*`; [`Error::TooLarge`] past
/// [`MAX_IMAGE_BYTES`] (said up front or counted while streaming); [`Error::Conflict`] for a
/// stale `rev`; [`Error::NotFound`]; the store's errors. Nothing is written on error.
pub(crate) async fn add<S>(
    db: &Local,
    device: &str,
    id: &str,
    rev: &str,
    up: Upload,
    body: S,
) -> Result<(Note, String)>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    if !is_image_type(&up.content_type) {
        return Err(Error::UnsupportedType(format!(
            "only images can be added to a note, not {:?}",
            up.content_type
        )));
    }
    if up.length.is_some_and(|l| l > MAX_IMAGE_BYTES) {
        return Err(too_large(&up.name));
    }
    let parsed = parse_rev(rev)?;
    let (doc, note) = current(db, id).await?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    let taken = doc.get("_attachments").and_then(Value::as_object);
    let name = unique_name(&safe_name(&up.name), |n| {
        taken.is_some_and(|t| t.contains_key(n))
    });
    // Counted while it streams: a request with no length (or a wrong one) stops at the limit.
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen = 0u64;
    let limited = body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > MAX_IMAGE_BYTES {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "image too large",
            ));
        }
        Ok(chunk)
    });
    let reader = tokio_util::io::StreamReader::new(Box::pin(limited));
    let written = db
        .put_attachment_from(
            id,
            Some(&parsed),
            &name,
            &up.content_type,
            reader,
            up.length,
        )
        .await;
    match written {
        Ok(_) => Ok((edited_on(db, id, device).await?, name)),
        Err(_) if over.load(Ordering::Relaxed) => Err(too_large(&up.name)),
        Err(e) if e.is_conflict() => Err(stale(id, rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

fn too_large(name: &str) -> Error {
    Error::TooLarge(format!(
        "image {name:?} is larger than {} MB, the most a note takes",
        MAX_IMAGE_BYTES / (1024 * 1024)
    ))
}

/// Removes image `name` from note `id` at its current revision `rev`. Returns the note.
///
/// # Errors
/// [`Error::NotFound`] for no such note or image; [`Error::Conflict`] for a stale `rev`;
/// the store's errors.
pub(crate) async fn remove(
    db: &Local,
    device: &str,
    id: &str,
    rev: &str,
    name: &str,
) -> Result<Note> {
    let parsed = parse_rev(rev)?;
    let (_, note) = current(db, id).await?;
    if note.rev != rev {
        return Err(stale(id, rev, &note.rev));
    }
    if !note.images.iter().any(|i| i.name == name) {
        return Err(Error::NotFound(format!("note {id} has no image {name:?}")));
    }
    match db.remove_attachment(id, &parsed, name).await {
        Ok(_) => edited_on(db, id, device).await,
        Err(e) if e.is_conflict() => Err(stale(id, rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

/// Marks note `id`'s current revision as edited on `device` now, and returns the note:
/// adding or removing an image is an edit of the note, and a conflict names its sides by
/// the device and time of their last edit (an image-only edit would otherwise carry the
/// previous edit's device).
async fn edited_on(db: &Local, id: &str, device: &str) -> Result<Note> {
    let (mut doc, note) = current(db, id).await?;
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("_conflicts");
        obj.insert("updated_at".into(), Value::from(now_ms()));
        obj.insert("device".into(), Value::from(device));
    }
    match db.put(doc).await {
        Ok(_) => Ok(current(db, id).await?.1),
        Err(e) if e.is_conflict() => Err(stale(id, &note.rev, "newer")),
        Err(e) => Err(e.into()),
    }
}

/// Image `name` of note `id` (its current version, or version `rev`: a conflict's side),
/// as a stream.
///
/// # Errors
/// [`Error::NotFound`] for no such note, version or image (or one that is no image); the
/// store's errors.
pub(crate) async fn read(
    db: &Local,
    id: &str,
    name: &str,
    rev: Option<&str>,
) -> Result<AttachmentStream> {
    let rev = rev.map(parse_rev).transpose()?;
    let missing = || Error::NotFound(format!("note {id} has no image {name:?}"));
    let att = match db.get_attachment(id, name, rev.as_ref()).await {
        Ok(att) => att,
        Err(e) if e.is_not_found() => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    // Only images are served: another attachment (HTML, say) never runs as this page.
    match att.content_type.as_deref() {
        Some(t) if is_image_type(t) => Ok(att),
        _ => Err(missing()),
    }
}

/// Copies attachment `name` of note `id` at revision `from` onto revision `onto` (a leaf)
/// as `as_name`: a new revision on top of `onto`, returned. The bytes stream from the
/// store to the store; equal bytes are stored once (by digest).
///
/// # Errors
/// `not_found` when `from` no longer has the attachment (compacted away); `conflict` when
/// `onto` is no leaf; the store's errors.
pub(crate) async fn copy(
    db: &Local,
    id: &str,
    from: &Rev,
    name: &str,
    onto: &Rev,
    as_name: &str,
) -> Result<Rev> {
    let att = db.get_attachment(id, name, Some(from)).await?;
    let content_type = att
        .content_type
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let rev = match att.length {
        Some(length) => {
            let upload = AttachmentUpload::new(as_name, &content_type, length, att.body);
            db.put_attachment(id, Some(onto), upload).await?
        }
        None => {
            let reader = tokio_util::io::StreamReader::new(att.body);
            db.put_attachment_from(id, Some(onto), as_name, &content_type, reader, None)
                .await?
        }
    };
    Ok(rev)
}

/// The winner of a conflict (`versions[0]`) with the images of every version the page chose
/// to keep (`keep`; every image when `None`): each chosen image of another version is
/// copied onto the winner (under a new name if the winner uses the name for other bytes;
/// not at all if the winner has the same bytes), and the winner's own images not chosen are
/// left out. Returns the document to merge into; its other attachments stay.
///
/// # Errors
/// The store's errors (a copy that fails leaves extra revisions on the winner, no loss).
pub(crate) async fn gather(
    db: &Local,
    id: &str,
    versions: &[(Doc<Value>, Note)],
    keep: Option<&[ImageRef]>,
) -> Result<Doc<Value>> {
    let Some(((winner, winner_note), others)) = versions.split_first() else {
        return Err(Error::Conflict(format!("note {id} has no version")));
    };
    let wanted = |rev: &str, name: &str| {
        keep.is_none_or(|k| k.iter().any(|r| r.rev == rev && r.name == name))
    };
    // Name -> digest of what the winner holds (after the copies so far).
    let mut names: BTreeMap<String, String> = winner
        .attachments
        .iter()
        .map(|(n, a)| (n.clone(), a.digest.clone()))
        .collect();
    let mut kept: BTreeSet<String> = winner
        .attachments
        .iter()
        .filter(|(n, a)| !is_image_type(&a.content_type) || wanted(&winner_note.rev, n))
        .map(|(n, _)| n.clone())
        .collect();
    let Some(mut rev) = winner.rev.clone() else {
        return Err(Error::Conflict(format!(
            "note {id}'s winner has no revision"
        )));
    };
    let mut copied = false;
    for (_, note) in others {
        let from = parse_rev(&note.rev)?;
        for image in note.images.iter().filter(|i| wanted(&note.rev, &i.name)) {
            if let Some((same, _)) = names.iter().find(|(_, d)| **d == image.digest) {
                kept.insert(same.clone());
                continue;
            }
            let name = unique_name(&image.name, |n| names.contains_key(n));
            rev = copy(db, id, &from, &image.name, &rev, &name).await?;
            copied = true;
            names.insert(name.clone(), image.digest.clone());
            kept.insert(name);
        }
    }
    let mut doc = if copied {
        let opts = ReadOptions {
            rev: Some(rev),
            ..Default::default()
        };
        db.get_doc_with::<Value>(id, &opts).await?
    } else {
        winner.clone()
    };
    doc.attachments.retain(|n, _| kept.contains(n));
    Ok(doc)
}

/// A name fit for an attachment and a URL path segment: the file name alone (no folders),
/// no leading `_` or `.` (CouchDB reserves `_`), no control characters or slashes, at most
/// [`MAX_NAME_CHARS`] characters; "image" when nothing is left.
pub(crate) fn safe_name(wanted: &str) -> String {
    let base = wanted.rsplit(['/', '\\']).next().unwrap_or(wanted);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || c == '?' || c == '#' || c == '%' {
                '-'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches(['_', '.']).to_owned();
    if cleaned.is_empty() {
        return "image".to_owned();
    }
    if cleaned.chars().count() <= MAX_NAME_CHARS {
        return cleaned;
    }
    let (stem, ext) = split_ext(&cleaned);
    let keep = MAX_NAME_CHARS.saturating_sub(ext.chars().count());
    stem.chars().take(keep).collect::<String>() + ext
}

/// `name`, or `stem-2.ext`, `stem-3.ext`... the first that `taken` says is free.
pub(crate) fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    let (stem, ext) = split_ext(name);
    (2u32..)
        .map(|i| format!("{stem}-{i}{ext}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| name.to_owned())
}

/// `photo.jpg` -> (`photo`, `.jpg`); a name without a dot has no extension.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes;
    use crate::NoteInput;

    #[test]
    fn names_are_made_safe_and_unique() {
        assert_eq!(safe_name("C:\\Users\\me\\photo.jpg"), "photo.jpg");
        assert_eq!(safe_name("../_design.png"), "design.png");
        assert_eq!(safe_name("a?b#c.png"), "a-b-c.png");
        assert_eq!(safe_name("  "), "image");
        let long = format!("{}.png", "x".repeat(300));
        let cut = safe_name(&long);
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert!(cut.ends_with(".png"));
        let taken = ["image.png", "image-2.png"];
        assert_eq!(
            unique_name("image.png", |n| taken.contains(&n)),
            "image-3.png"
        );
        assert_eq!(
            unique_name("other.png", |n| taken.contains(&n)),
            "other.png"
        );
    }

    fn bytes(data: &'static [u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::iter([Ok(Bytes::from_static(data))])
    }

    fn upload(name: &str, content_type: &str) -> Upload {
        Upload {
            name: name.into(),
            content_type: content_type.into(),
            length: None,
        }
    }

    #[tokio::test]
    async fn an_image_stays_through_an_edit_and_goes_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let input = NoteInput {
            title: "Cat".into(),
            ..Default::default()
        };
        let note = notes::create(&db, &input, "test").await.unwrap();
        let (with, name) = add(
            &db,
            "phone",
            &note.id,
            &note.rev,
            upload("cat.png", "image/png"),
            bytes(b"PNG"),
        )
        .await
        .unwrap();
        assert_eq!(name, "cat.png");
        assert_eq!(with.images.len(), 1);
        // Adding an image is an edit on this device (a conflict names its sides by it).
        assert_eq!(with.device.as_deref(), Some("phone"));
        assert!(with.updated_at >= note.updated_at);
        // A second one with the same name gets its own.
        let (with, name) = add(
            &db,
            "phone",
            &note.id,
            &with.rev,
            upload("cat.png", "image/png"),
            bytes(b"PNG2"),
        )
        .await
        .unwrap();
        assert_eq!(name, "cat-2.png");
        // Editing the text keeps both.
        let edit = NoteInput {
            rev: Some(with.rev.clone()),
            title: "Cats".into(),
            ..Default::default()
        };
        let edited = notes::update(&db, &note.id, &edit, "test").await.unwrap();
        assert_eq!(edited.images, with.images);
        let removed = remove(&db, "phone", &note.id, &edited.rev, "cat.png")
            .await
            .unwrap();
        let names: Vec<&str> = removed.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(removed.device.as_deref(), Some("phone"));
        assert_eq!(names, ["cat-2.png"]);
        assert!(read(&db, &note.id, "cat.png", None)
            .await
            .unwrap_err()
            .to_string()
            .contains("no image"));
    }

    #[tokio::test]
    async fn wrong_type_stale_rev_and_too_much_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let note = notes::create(&db, &NoteInput::default(), "test")
            .await
            .unwrap();
        let before = db.info().await.unwrap().update_seq;
        let err = add(
            &db,
            "phone",
            &note.id,
            &note.rev,
            upload("a.html", "text/html"),
            bytes(b"<p>"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), "bad_content_type", "{err}");
        let err = add(
            &db,
            "phone",
            &note.id,
            "1-00000000000000000000000000000000",
            upload("a.png", "image/png"),
            bytes(b"x"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), "conflict", "{err}");
        // More bytes than the limit, with no length said: stopped while streaming.
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        let big = futures::stream::iter(
            (0..=MAX_IMAGE_BYTES / (1024 * 1024)).map(move |_| Ok(chunk.clone())),
        );
        let err = add(
            &db,
            "phone",
            &note.id,
            &note.rev,
            upload("big.png", "image/png"),
            big,
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), "attachment_too_large", "{err}");
        assert_eq!(db.info().await.unwrap().update_seq, before);
    }
}
