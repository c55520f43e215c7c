//! `_changes`: a row ([`Change`]), a one-response answer ([`Changes`]) and the `style`
//! parameter ([`ChangesStyle`]). How a feed is requested and read (continuous, longpoll,
//! filters) is the client's business; which rows exist is the store's.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use settee_revtree::{Rev, Seq};

/// `style=`: which revisions each change row lists.
///
/// The derived default is CouchDB's own (`main_only`); a caller that replicates asks for
/// [`ChangesStyle::AllDocs`] (the client's `ChangesOptions` does by default), because a
/// replicator that sees only winners loses conflicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ChangesStyle {
    /// Only the winning revision (`style=main_only`, CouchDB's default).
    #[default]
    MainOnly,
    /// Every leaf, deleted and conflicting ones included (`style=all_docs`).
    AllDocs,
}

impl ChangesStyle {
    /// The query parameter's value: `"main_only"` or `"all_docs"`.
    ///
    /// ```
    /// assert_eq!(settee_wire::ChangesStyle::AllDocs.as_str(), "all_docs");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChangesStyle::MainOnly => "main_only",
            ChangesStyle::AllDocs => "all_docs",
        }
    }
}

/// One row of a `_changes` answer (a line of a continuous feed, an item of `results`):
/// `{"seq", "id", "changes": [{"rev"}], "deleted"?, "doc"?}`.
///
/// `S` is how sequences come: the store's own are integers (`Change<u64>`, what it
/// answers); a remote server's are opaque [`Seq`]s, stored and sent back, never compared.
/// Only `Change<Seq>` is read from JSON (servers' answers; a `seq` left out reads as
/// `null`, as between `seq_interval` rows).
///
/// A revision a server lists that is not a valid [`Rev`] (Apache CouchDB stores some that
/// no `Rev` can hold: a negative position, one beyond `u64`) does not fail the row or the
/// feed: it is kept, as sent, in [`Change::invalid_revs`] for the caller to report (the
/// replicator reports such a document as not replicated). The store never has any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change<S = Seq> {
    /// Where this change is in the feed: the `since` that resumes after it.
    pub seq: S,
    /// The document id.
    pub id: String,
    /// The winner, or every leaf with `style=all_docs` (serialised as `[{"rev": ...}]`).
    #[serde(serialize_with = "rev_objects")]
    pub changes: Vec<Rev>,
    /// The row's revisions that are not valid revision ids, as sent (a value that is not a
    /// string, as its JSON text). Not part of CouchDB's row: serialised only when not empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_revs: Vec<String>,
    /// Whether the winning revision is deleted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The winning document, with `include_docs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Value>,
}

fn rev_objects<S: Serializer>(revs: &[Rev], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct RevObject<'a> {
        rev: &'a Rev,
    }
    let mut seq = s.serialize_seq(Some(revs.len()))?;
    for rev in revs {
        seq.serialize_element(&RevObject { rev })?;
    }
    seq.end()
}

/// A row as sent, before its revisions are sorted into valid and invalid ones.
#[derive(Deserialize)]
struct RawChange {
    #[serde(default = "null_seq")]
    seq: Seq,
    id: String,
    changes: Vec<RawRev>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    doc: Option<Value>,
}

/// `{"rev": ...}`: the rev, or the text of what stood there instead.
#[derive(Deserialize)]
struct RawRev {
    #[serde(default)]
    rev: Value,
}

fn null_seq() -> Seq {
    Seq::from_json(Value::Null)
}

impl<'de> Deserialize<'de> for Change<Seq> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Change<Seq>, D::Error> {
        let raw = RawChange::deserialize(d)?;
        let mut changes = Vec::with_capacity(raw.changes.len());
        let mut invalid_revs = Vec::new();
        for RawRev { rev } in raw.changes {
            let parsed = match &rev {
                Value::String(text) => text.parse::<Rev>().ok(),
                _ => None,
            };
            match (parsed, rev) {
                (Some(r), _) => changes.push(r),
                (None, Value::String(text)) => invalid_revs.push(text),
                (None, other) => invalid_revs.push(other.to_string()),
            }
        }
        Ok(Change {
            seq: raw.seq,
            id: raw.id,
            changes,
            invalid_revs,
            deleted: raw.deleted,
            doc: raw.doc,
        })
    }
}

/// The answer of `_changes` with `feed=normal` or `feed=longpoll`:
/// `{"results": [...], "last_seq", "pending"?}`.
///
/// `S` as for [`Change`]: the store answers `Changes<u64>`; the client reads
/// `Changes<Seq>` (its `ChangesResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize",
    deserialize = "Change<S>: Deserialize<'de>, S: Deserialize<'de>"
))]
pub struct Changes<S = Seq> {
    /// The rows.
    pub results: Vec<Change<S>>,
    /// Where to continue from (`since` of the next call).
    pub last_seq: S,
    /// Changes after `last_seq` not returned (because of `limit`). CouchDB 2+ and the
    /// store send it; other servers leave it out (`None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rev(s: &str) -> Rev {
        s.parse().unwrap()
    }

    #[test]
    fn a_store_row_serialises_as_couchdb_sends_it() {
        let row = Change {
            seq: 7u64,
            id: "a".into(),
            changes: vec![rev("2-b"), rev("2-c")],
            invalid_revs: vec![],
            deleted: false,
            doc: None,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"seq":7,"id":"a","changes":[{"rev":"2-b"},{"rev":"2-c"}]}"#
        );
        let gone = Change {
            deleted: true,
            doc: Some(json!({"_id": "a", "_deleted": true})),
            ..row
        };
        assert_eq!(
            serde_json::to_value(&gone).unwrap(),
            json!({"seq": 7, "id": "a", "changes": [{"rev": "2-b"}, {"rev": "2-c"}],
                   "deleted": true, "doc": {"_id": "a", "_deleted": true}})
        );
    }

    #[test]
    fn couchdb_rows_round_trip_with_opaque_seqs() {
        let text = r#"{"seq":"12-g1AAAA","id":"a","changes":[{"rev":"1-x"},{"rev":"2-y"}],"deleted":true}"#;
        let row: Change = serde_json::from_str(text).unwrap();
        assert_eq!(row.seq.as_json(), &json!("12-g1AAAA"));
        assert_eq!(row.changes, [rev("1-x"), rev("2-y")]);
        assert!(row.deleted && row.doc.is_none() && row.invalid_revs.is_empty());
        assert_eq!(serde_json::to_string(&row).unwrap(), text);
    }

    #[test]
    fn a_row_without_seq_reads_as_null_and_pouchdb_numbers_stay_numbers() {
        // Between `seq_interval` rows CouchDB sends `"seq": null`; a row without one reads
        // the same way.
        let row: Change = serde_json::from_str(r#"{"id":"a","changes":[{"rev":"1-x"}]}"#).unwrap();
        assert_eq!(row.seq.as_json(), &Value::Null);
        // pouchdb-server's sequences are integers.
        let row: Change = serde_json::from_str(
            r#"{"seq":3,"id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a"}}"#,
        )
        .unwrap();
        assert_eq!(row.seq, Seq::from(3));
        assert_eq!(row.doc, Some(json!({"_id": "a"})));
    }

    #[test]
    fn revisions_no_rev_can_hold_are_kept_aside_and_listed_apart() {
        let row: Change = serde_json::from_str(
            r#"{"seq":"9-g","id":"odd","changes":[{"rev":"-1-b"},{"rev":"0-"},{"rev":7},{"rev":"99999999999999999999999-x"}]}"#,
        )
        .unwrap();
        assert_eq!(row.changes, [rev("0-")]);
        assert_eq!(row.invalid_revs, ["-1-b", "7", "99999999999999999999999-x"]);
        let back = serde_json::to_value(&row).unwrap();
        assert_eq!(
            back["invalid_revs"],
            json!(["-1-b", "7", "99999999999999999999999-x"])
        );
        assert_eq!(back["changes"], json!([{"rev": "0-"}]));
    }

    #[test]
    fn answers_of_both_servers_and_of_the_store_round_trip() {
        // Apache CouchDB 3: opaque string sequences and `pending`.
        let couch = json!({"results": [{"seq": "1-g", "id": "a", "changes": [{"rev": "1-a"}]}],
                           "last_seq": "1-g", "pending": 0});
        let page: Changes = serde_json::from_value(couch.clone()).unwrap();
        assert_eq!(page.pending, Some(0));
        assert_eq!(serde_json::to_value(&page).unwrap(), couch);
        // pouchdb-server: integer sequences, no `pending`.
        let pouch = json!({"results": [{"seq": 2, "id": "b", "changes": [{"rev": "2-b"}],
                                        "deleted": true}], "last_seq": 2});
        let page: Changes = serde_json::from_value(pouch.clone()).unwrap();
        assert_eq!(page.pending, None);
        assert_eq!(page.last_seq, Seq::from(2));
        assert_eq!(serde_json::to_value(&page).unwrap(), pouch);
        // The store's answer.
        let store = Changes {
            results: vec![Change {
                seq: 4u64,
                id: "c".into(),
                changes: vec![rev("1-c")],
                invalid_revs: vec![],
                deleted: false,
                doc: None,
            }],
            last_seq: 4u64,
            pending: Some(3),
        };
        assert_eq!(
            serde_json::to_value(&store).unwrap(),
            json!({"results": [{"seq": 4, "id": "c", "changes": [{"rev": "1-c"}]}],
                   "last_seq": 4, "pending": 3})
        );
    }

    #[test]
    fn style_names_are_couchdbs_and_main_only_is_the_default() {
        assert_eq!(ChangesStyle::default(), ChangesStyle::MainOnly);
        assert_eq!(ChangesStyle::MainOnly.as_str(), "main_only");
    }
}
