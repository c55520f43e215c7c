//! Resolving a conflict in one atomic write: the chosen leaf (or a merged body written on
//! top of the winner) stays, every other live leaf gets a tombstone, all in one batch that is
//! applied only if every edit is valid.

use serde_json::Value;
use settee_revtree::Rev;

use crate::validate::{parse_doc, ParsedDoc};
use crate::write::{write_edit, BatchState};
use crate::{Database, Error, Result};

/// How [`Database::resolve_conflict`] resolves a document's conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Keep this live leaf as it is; the other live leaves are deleted.
    Keep(Rev),
    /// Write this body (a JSON object; `_id` and `_rev` are set here, attachment stubs refer
    /// to the current winner's attachments) as a new revision on top of the winner; the
    /// other live leaves are deleted.
    Merge(Value),
}

impl Database {
    /// Resolves the conflict of document `id` in one atomic write: after it, the document
    /// has one live leaf (the kept one, or the merged revision), and every other leaf that
    /// was live is deleted (its branch ends in a tombstone, so no branch is lost and the
    /// resolution replicates like any edit). Returns the winner after it.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::{Database, GetOptions, Resolution};
    /// let dir = tempfile::tempdir()?;
    /// let db = Database::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "n", "title": "mine"}))?;
    /// db.bulk_docs(vec![json!({"_id": "n", "_rev": "1-ffff", "title": "theirs"})], false)?;
    /// let rev = db.resolve_conflict("n", Resolution::Merge(json!({"title": "mine + theirs"})))?;
    /// let doc = db.get("n", &GetOptions { conflicts: true, ..Default::default() })?;
    /// assert_eq!((doc["title"].as_str(), doc["_rev"].as_str()), (Some("mine + theirs"), Some(rev.to_string().as_str())));
    /// assert!(doc.get("_conflicts").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the document does not exist or its winner is deleted;
    /// [`Error::Conflict`] if `Keep` names a revision that is not a live leaf;
    /// [`Error::BadRequest`] and the validation errors of [`Database::put`] for a bad merged
    /// body; storage errors. On error nothing is written.
    pub fn resolve_conflict(&self, id: &str, resolution: Resolution) -> Result<Rev> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut st = BatchState::new(inner, *guard, None);
        let rec = st.doc(id)?.ok_or_else(|| Error::not_found(id, "missing"))?;
        if rec.tree.is_deleted() {
            return Err(Error::not_found(id, "deleted"));
        }
        let live: Vec<Rev> = rec
            .tree
            .leaves()
            .into_iter()
            .filter(|l| !l.deleted)
            .map(|l| l.rev)
            .collect();
        let (keep, merged) = match resolution {
            Resolution::Keep(rev) => {
                if !live.contains(&rev) {
                    return Err(Error::Conflict { id: id.to_owned() });
                }
                (rev, None)
            }
            Resolution::Merge(body) => {
                let Value::Object(mut map) = body else {
                    return Err(Error::bad_request("the merged body must be a JSON object"));
                };
                let winner = rec.tree.winner();
                map.insert("_id".into(), Value::String(id.to_owned()));
                map.insert("_rev".into(), Value::String(winner.to_string()));
                map.remove("_deleted");
                let doc = parse_doc(Value::Object(map))?;
                let new_rev = write_edit(&mut st, id, doc)?;
                (new_rev, Some(winner))
            }
        };
        for leaf in live {
            // The merged revision replaced the winner: that branch continues, not deleted.
            if leaf == keep || Some(&leaf) == merged.as_ref() {
                continue;
            }
            let tombstone = ParsedDoc {
                id: Some(id.to_owned()),
                rev: Some(leaf),
                deleted: true,
                ..ParsedDoc::empty()
            };
            write_edit(&mut st, id, tombstone)?;
        }
        if st.dirty {
            st.commit(&mut guard)?;
        }
        Ok(keep)
    }
}
