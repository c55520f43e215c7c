//! `GET /{db}`: database information ([`DbInfo`], [`Sizes`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use settee_revtree::Seq;

/// Sizes in bytes, as in CouchDB's database information.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes the database's files take on disk.
    #[serde(default)]
    pub file: u64,
    /// Bytes of live data (the store does not compute it: `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<u64>,
    /// Bytes of document bodies and attachments, uncompressed (the store does not compute
    /// it: `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<u64>,
}

/// Database information, the answer of `GET /{db}`.
///
/// `S` is how sequences come: the store's are integers (`DbInfo<u64>`, what it answers);
/// a remote server's are opaque [`Seq`]s. The store fills every field; servers send what
/// they have (pouchdb-server sends no `doc_del_count`, `purge_seq`, `sizes` or
/// `disk_format_version`, CouchDB no `uuid`), and every member this type does not name is
/// kept in [`DbInfo::other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct DbInfo<S = Seq> {
    /// The database's name (for the store: its directory's last component).
    pub db_name: String,
    /// Documents whose winner is not deleted (`_local` documents are not counted).
    pub doc_count: u64,
    /// Documents whose winner is deleted (0 when the server does not say).
    #[serde(default)]
    pub doc_del_count: u64,
    /// The sequence of the latest write.
    pub update_seq: S,
    /// How many purge requests have been applied (CouchDB 3 sends an opaque sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_seq: Option<S>,
    /// A random id made when the store was created, stable for its life (servers do not
    /// send one in database information).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Disk and data sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<Sizes>,
    /// The storage format version (0 when the server does not say, as pouchdb-server).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_format_version: u32,
    /// Changes when the database is reopened on CouchDB 1.x and pouchdb-server; always
    /// `"0"` on CouchDB 2+ and the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_start_time: Option<String>,
    /// Every other member (`props`, `cluster`, `compact_running`, pouchdb-server's
    /// `adapter`, ...), as sent. The store sends none.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_store_answer_serialises_in_couchdbs_order() {
        let info = DbInfo {
            db_name: "notes".into(),
            doc_count: 2,
            doc_del_count: 1,
            update_seq: 9u64,
            purge_seq: Some(0),
            uuid: Some("0123".into()),
            sizes: Some(Sizes {
                file: 4096,
                active: None,
                external: None,
            }),
            disk_format_version: 6,
            instance_start_time: Some("0".into()),
            other: Map::new(),
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"db_name":"notes","doc_count":2,"doc_del_count":1,"update_seq":9,"purge_seq":0,"uuid":"0123","sizes":{"file":4096},"disk_format_version":6,"instance_start_time":"0"}"#
        );
    }

    #[test]
    fn couchdb_answer_round_trips() {
        let couch = json!({"instance_start_time": "0", "db_name": "d",
            "purge_seq": "0-g1AAAA", "update_seq": "12-g1AAAB",
            "sizes": {"file": 100, "external": 20, "active": 30},
            "props": {}, "doc_del_count": 3, "doc_count": 4, "disk_format_version": 8,
            "compact_running": false, "cluster": {"q": 2, "n": 1, "w": 1, "r": 1}});
        let info: DbInfo = serde_json::from_value(couch.clone()).unwrap();
        assert_eq!(info.update_seq.as_json(), &json!("12-g1AAAB"));
        assert_eq!(
            info.purge_seq.as_ref().map(Seq::as_json),
            Some(&json!("0-g1AAAA"))
        );
        assert_eq!(info.sizes.as_ref().and_then(|s| s.active), Some(30));
        assert_eq!(
            (info.doc_count, info.doc_del_count, info.disk_format_version),
            (4, 3, 8)
        );
        assert_eq!(info.other["cluster"]["q"], 2);
        assert_eq!(serde_json::to_value(&info).unwrap(), couch);
    }

    #[test]
    fn pouchdb_server_answer_round_trips() {
        let pouch = json!({"doc_count": 1, "update_seq": 5, "idb_attachment_format": "binary",
            "db_name": "p", "auto_compaction": false, "adapter": "leveldb",
            "instance_start_time": "1700000000000"});
        let info: DbInfo = serde_json::from_value(pouch.clone()).unwrap();
        assert_eq!(
            (
                info.doc_del_count,
                info.purge_seq.clone(),
                info.disk_format_version
            ),
            (0, None, 0)
        );
        assert_eq!(info.update_seq, Seq::from(5));
        assert_eq!(info.instance_start_time.as_deref(), Some("1700000000000"));
        // Written back, the count it left out is 0 (as the client always wrote it).
        let mut back = pouch;
        back["doc_del_count"] = json!(0);
        assert_eq!(serde_json::to_value(&info).unwrap(), back);
    }
}
