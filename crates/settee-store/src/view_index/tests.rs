//! View index tests: updates, ranges, ordering, cleanup and signatures.

use super::*;
use serde_json::json;

fn ids(index: &ViewIndex, range: &ViewRange<'_>) -> Vec<String> {
    index
        .rows(range)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            format!("{}:{}", r.key, r.id)
        })
        .collect()
}

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    (dir, db)
}

#[test]
fn an_update_replaces_a_documents_rows_and_moves_the_seq() {
    let (_dir, db) = open();
    let index = db.view_index("s").unwrap();
    let rows = |id: &str, keys: &[i64]| -> ViewDocRows {
        (
            id.into(),
            keys.iter().map(|k| (json!(k), json!(null))).collect(),
        )
    };
    assert!(index
        .update(0, vec![rows("a", &[1, 3]), rows("b", &[2])], 2)
        .unwrap());
    assert_eq!(ids(&index, &ViewRange::default()), ["1:a", "2:b", "3:a"]);
    // A stale `from` writes nothing.
    assert!(!index.update(0, vec![rows("a", &[])], 3).unwrap());
    assert!(index.update(2, vec![rows("a", &[5])], 3).unwrap());
    assert_eq!(ids(&index, &ViewRange::default()), ["2:b", "5:a"]);
    let state = index.state().unwrap();
    assert_eq!((state.seq, state.rows), (3, 2));
    index.reset(7).unwrap();
    assert_eq!(ids(&index, &ViewRange::default()), Vec::<String>::new());
    assert_eq!(
        index.state().unwrap(),
        ViewIndexState {
            seq: 0,
            rows: 0,
            purge_seq: 7
        }
    );
}

#[test]
fn ranges_follow_keys_doc_ids_inclusive_end_and_direction() {
    let (_dir, db) = open();
    let index = db.view_index("s").unwrap();
    let docs = vec![
        ("a".into(), vec![(json!(1), json!(0))]),
        ("b".into(), vec![(json!(2), json!(0))]),
        ("c".into(), vec![(json!(2), json!(0))]),
        ("d".into(), vec![(json!(3), json!(0))]),
    ];
    assert!(index.update(0, docs, 4).unwrap());
    let (two, three) = (json!(2), json!(3));
    let at = |key, doc_id| Some(ViewKey { key, doc_id });
    let mut r = ViewRange {
        start: at(&two, None),
        end: at(&two, None),
        inclusive_end: true,
        descending: false,
    };
    assert_eq!(ids(&index, &r), ["2:b", "2:c"]);
    assert_eq!(index.count_before(&r).unwrap(), 1);
    r.start = at(&two, Some("c"));
    assert_eq!(ids(&index, &r), ["2:c"]);
    assert_eq!(index.count_before(&r).unwrap(), 2);
    r.start = at(&two, None);
    r.end = at(&two, Some("b"));
    assert_eq!(ids(&index, &r), ["2:b"]);
    r.inclusive_end = false;
    assert_eq!(ids(&index, &r), Vec::<String>::new());
    let desc = ViewRange {
        start: at(&three, None),
        end: at(&two, None),
        inclusive_end: false,
        descending: true,
    };
    assert_eq!(ids(&index, &desc), ["3:d"]);
    assert_eq!(index.count_before(&desc).unwrap(), 0);
    let desc = ViewRange {
        start: at(&two, Some("b")),
        end: None,
        ..desc
    };
    assert_eq!(ids(&index, &desc), ["2:b", "1:a"]);
    assert_eq!(index.count_before(&desc).unwrap(), 2);
}

#[test]
fn equal_keys_of_one_document_come_in_value_order() {
    let (_dir, db) = open();
    let index = db.view_index("s").unwrap();
    let emitted = vec![(json!("k"), json!(3)), (json!("k"), json!(1))];
    assert!(index.update(0, vec![("a".into(), emitted)], 1).unwrap());
    let values: Vec<Value> = index
        .rows(&ViewRange::default())
        .unwrap()
        .map(|r| r.unwrap().value)
        .collect();
    assert_eq!(values, [json!(1), json!(3)]);
}

#[test]
fn cleanup_drops_indexes_no_design_document_uses() {
    let (_dir, db) = open();
    let ddoc = json!({"_id": "_design/d", "views": {"v": {"map": "function(d){}"}}});
    db.put(ddoc.clone()).unwrap();
    let used = view_signature(&ddoc, "v").unwrap();
    db.view_index(&used).unwrap();
    db.view_index("gone").unwrap();
    assert_eq!(db.view_cleanup().unwrap(), 1);
    let names: Vec<String> = db
        .inner
        .db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| n.starts_with(TREE_PREFIX))
        .collect();
    assert_eq!(names, [format!("{TREE_PREFIX}{used}")]);
}

#[test]
fn signatures_change_with_what_the_view_runs() {
    let ddoc = json!({"views": {"v": {"map": "m", "reduce": "_count"}}});
    let sig = view_signature(&ddoc, "v");
    for other in [
        json!({"views": {"v": {"map": "m2", "reduce": "_count"}}}),
        json!({"views": {"v": {"map": "m", "reduce": "_sum"}}}),
        json!({"views": {"v": {"map": "m", "reduce": "_count"}, "lib": {"x": "1"}}}),
        json!({"options": {"collation": "raw"}, "views": {"v": {"map": "m", "reduce": "_count"}}}),
    ] {
        assert_ne!(view_signature(&other, "v"), sig, "{other}");
    }
}
