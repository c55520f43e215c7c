//! A note: its shape as a document in the store (and on the CouchDB server), what the page
//! sends to create or edit one, and the checks on that input. Reading and writing them is
//! `notes.rs`'s job.
//!
//! A note is stored as `{"_id": "note:<hex>", "type": "note", "title", "body", "notebook",
//! "tags": [...], "created_at", "updated_at"}`, times in milliseconds since 1970. Documents
//! from elsewhere (another device, a CouchDB user) may be malformed: [`Note::from_doc`]
//! reads what it can and never fails on a wrong field type.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Error, Result};

/// Every note's id starts with this, so that other documents (design documents the server
/// holds, anything another app writes) are never taken for notes.
pub const ID_PREFIX: &str = "note:";

/// The notebook a note goes to when none is given.
pub const DEFAULT_NOTEBOOK: &str = "Inbox";

/// Limits on input, so that one request cannot make a note the server will refuse for its
/// size (CouchDB's default `max_document_size` is 8 MB) or a page that cannot render.
const MAX_TITLE_CHARS: usize = 500;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_NOTEBOOK_CHARS: usize = 100;
const MAX_TAGS: usize = 50;
const MAX_TAG_CHARS: usize = 50;

/// A note as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    /// The document id (`note:...`).
    pub id: String,
    /// The current (winning) revision.
    pub rev: String,
    /// The title (may be empty).
    pub title: String,
    /// The text.
    pub body: String,
    /// The notebook's name.
    pub notebook: String,
    /// Tags, without duplicates.
    pub tags: Vec<String>,
    /// When it was created, milliseconds since 1970.
    pub created_at: i64,
    /// When it was last edited, milliseconds since 1970.
    pub updated_at: i64,
    /// The device it was last edited on (each app names itself; notes written before
    /// devices had names have none).
    pub device: Option<String>,
    /// Its images (attachments of type `image/*`), in the order they were added.
    pub images: Vec<Image>,
}

/// An image of a note: one of the note document's attachments whose type is `image/*`
/// (`images.rs` adds and removes them; other attachments are kept but not shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// The attachment's name, unique within the note.
    pub name: String,
    /// Its MIME type (`image/png`, ...).
    pub content_type: String,
    /// Its length in bytes.
    pub length: u64,
    /// CouchDB's digest of its bytes: the same image has the same digest on every device.
    pub digest: String,
    /// The revision position it was added at (for the order).
    #[serde(skip)]
    revpos: u64,
}

impl Image {
    /// The images among a document's `_attachments` (stubs or inline), oldest first.
    fn all_of(doc: &Value) -> Vec<Image> {
        let Some(atts) = doc.get("_attachments").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut images: Vec<Image> = atts
            .iter()
            .filter_map(|(name, att)| {
                let content_type = att.get("content_type")?.as_str()?;
                is_image_type(content_type).then(|| Image {
                    name: name.clone(),
                    content_type: content_type.to_owned(),
                    length: att.get("length").and_then(Value::as_u64).unwrap_or(0),
                    digest: att
                        .get("digest")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    revpos: att.get("revpos").and_then(Value::as_u64).unwrap_or(0),
                })
            })
            .collect();
        images.sort_by(|a, b| (a.revpos, &a.name).cmp(&(b.revpos, &b.name)));
        images
    }
}

/// Whether a MIME type is an image's (`image/...`, parameters and case aside).
pub(crate) fn is_image_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.len() > "image/".len() && essence[..6].eq_ignore_ascii_case("image/")
}

impl Note {
    /// Reads a note from a stored document, or `None` if the document is not a live note.
    /// Fields of the wrong type read as empty: a malformed document from another writer is
    /// shown, not dropped.
    pub fn from_doc(doc: &Value) -> Option<Note> {
        let id = doc.get("_id")?.as_str()?;
        if !id.starts_with(ID_PREFIX) || doc.get("_deleted") == Some(&Value::Bool(true)) {
            return None;
        }
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let time = |k: &str| doc.get(k).and_then(Value::as_i64).unwrap_or(0);
        let notebook = match text("notebook") {
            n if n.is_empty() => DEFAULT_NOTEBOOK.to_owned(),
            n => n,
        };
        Some(Note {
            id: id.to_owned(),
            rev: text("_rev"),
            title: text("title"),
            body: text("body"),
            notebook,
            tags: doc
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            created_at: time("created_at"),
            updated_at: time("updated_at"),
            device: doc.get("device").and_then(Value::as_str).map(str::to_owned),
            images: Image::all_of(doc),
        })
    }
}

/// What the page sends to create a note, or to edit one (with `rev`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    /// The revision being edited (required for an edit, refused for a create).
    #[serde(default)]
    pub rev: Option<String>,
    /// The title.
    #[serde(default)]
    pub title: String,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// The notebook (default [`DEFAULT_NOTEBOOK`]).
    #[serde(default)]
    pub notebook: Option<String>,
    /// Tags (trimmed; empty ones and duplicates dropped).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The checked content of a note, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) notebook: String,
    pub(crate) tags: Vec<String>,
}

impl NoteInput {
    /// Checks the input and normalises it (trimmed title, notebook and tags).
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming the field that is too long or malformed.
    pub fn content(&self) -> Result<Content> {
        let title = self.title.trim().to_owned();
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::BadRequest(format!(
                "title is longer than {MAX_TITLE_CHARS} characters"
            )));
        }
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::BadRequest(format!(
                "body is larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        let notebook = match self.notebook.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_NOTEBOOK.to_owned(),
            Some(n) if n.chars().count() > MAX_NOTEBOOK_CHARS => {
                return Err(Error::BadRequest(format!(
                    "notebook is longer than {MAX_NOTEBOOK_CHARS} characters"
                )))
            }
            Some(n) => n.to_owned(),
        };
        let mut tags: Vec<String> = Vec::new();
        for tag in &self.tags {
            let tag = tag.trim();
            if tag.chars().count() > MAX_TAG_CHARS {
                return Err(Error::BadRequest(format!(
                    "tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
                )));
            }
            if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::BadRequest(format!(
                "a note has at most {MAX_TAGS} tags"
            )));
        }
        Ok(Content {
            title,
            body: self.body.clone(),
            notebook,
            tags,
        })
    }
}

impl Content {
    /// The document to store for this content, edited on `device` now.
    pub(crate) fn to_doc(
        &self,
        id: &str,
        rev: Option<&str>,
        created_at: i64,
        now: i64,
        device: &str,
    ) -> Value {
        let mut doc = json!({
            "_id": id,
            "type": "note",
            "title": self.title,
            "body": self.body,
            "notebook": self.notebook,
            "tags": self.tags,
            "created_at": created_at,
            "updated_at": now,
            "device": device,
        });
        if let Some(rev) = rev {
            doc["_rev"] = Value::String(rev.to_owned());
        }
        doc
    }
}

/// This app's device name: read from `<store>.device` beside the store, or made once (the
/// machine's host name and four random hex digits, so two stores on one machine differ)
/// and written there.
pub(crate) fn device_name(store: &std::path::Path) -> String {
    let mut path = store.as_os_str().to_owned();
    path.push(".device");
    let path = std::path::PathBuf::from(path);
    if let Ok(name) = std::fs::read_to_string(&path) {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".to_owned());
    let name = format!("{host}-{:04x}", rand::random::<u16>());
    if let Err(e) = std::fs::write(&path, &name) {
        tracing::warn!(error = %e, "remembering the device name");
    }
    name
}

/// A new note id: the prefix and 128 random bits, so two devices never pick the same one.
pub(crate) fn new_id() -> String {
    format!("{ID_PREFIX}{:032x}", rand::random::<u128>())
}

/// Now, in milliseconds since 1970; strictly increasing within the process, so that notes
/// edited in one millisecond still list in the order they were edited.
pub(crate) fn now_ms() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(wall.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    wall.max(prev.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_trimmed_and_tags_deduplicated() {
        let input = NoteInput {
            title: "  Groceries ".into(),
            notebook: Some("  ".into()),
            tags: vec![" home".into(), "home".into(), "".into(), "food ".into()],
            ..Default::default()
        };
        let c = input.content().unwrap();
        assert_eq!(c.title, "Groceries");
        assert_eq!(c.notebook, DEFAULT_NOTEBOOK);
        assert_eq!(c.tags, ["home", "food"]);
    }

    #[test]
    fn too_long_title_is_refused_by_name() {
        let input = NoteInput {
            title: "x".repeat(MAX_TITLE_CHARS + 1),
            ..Default::default()
        };
        let err = input.content().unwrap_err().to_string();
        assert!(err.contains("title"), "{err}");
    }

    #[test]
    fn the_page_stops_a_title_at_the_apps_limit() {
        let page = include_str!("../web/index.html");
        assert!(
            page.contains(&format!(
                r#"id="title" placeholder="Title" autocomplete="off" maxlength="{MAX_TITLE_CHARS}""#
            )),
            "web/index.html's title input must have maxlength={MAX_TITLE_CHARS}"
        );
    }

    #[test]
    fn malformed_document_reads_with_empty_fields() {
        let doc = json!({"_id": "note:1", "_rev": "1-a", "title": 7, "tags": ["a", 3, "b"]});
        let note = Note::from_doc(&doc).unwrap();
        assert_eq!(note.title, "");
        assert_eq!(note.tags, ["a", "b"]);
        assert_eq!(note.notebook, DEFAULT_NOTEBOOK);
        assert!(Note::from_doc(&json!({"_id": "_design/x"})).is_none());
        assert!(Note::from_doc(&json!({"_id": "note:2", "_deleted": true})).is_none());
    }

    #[test]
    fn images_are_the_image_attachments_oldest_first() {
        let doc = json!({"_id": "note:1", "_rev": "3-a", "_attachments": {
            "b.png": {"content_type": "image/png", "digest": "md5-b", "length": 2, "revpos": 2, "stub": true},
            "a.jpg": {"content_type": "IMAGE/JPEG", "digest": "md5-a", "length": 1, "revpos": 3, "stub": true},
            "notes.txt": {"content_type": "text/plain", "digest": "md5-t", "length": 3, "revpos": 1, "stub": true},
        }});
        let note = Note::from_doc(&doc).unwrap();
        let names: Vec<&str> = note.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b.png", "a.jpg"]);
        assert_eq!(note.images[0].length, 2);
        assert!(!is_image_type("image/") && !is_image_type("text/html"));
        assert!(is_image_type("image/svg+xml; charset=utf-8"));
    }

    #[test]
    fn clock_never_repeats() {
        let mut last = now_ms();
        for _ in 0..1000 {
            let now = now_ms();
            assert!(now > last);
            last = now;
        }
    }
}
