//! Tests of index definitions: parsing `_index` bodies and design documents, equality and
//! the design-document changes.

use super::*;

#[test]
fn design_doc_round_trips_in_couchdb_layout() {
    let idx = IndexDef::from_create_request(&json!({
        "index": {"fields": ["a", {"b": "asc"}], "partial_filter_selector": {"c": {"$gt": 1}}}
    }))
    .unwrap();
    assert_eq!(idx.name.len(), 40);
    assert_eq!(idx.ddoc, format!("_design/{}", idx.name));
    let DesignChange::Write(doc) = idx.add_to_design_doc(None).unwrap() else {
        panic!("expected a write");
    };
    // The layout CouchDB 3.5 writes for the same request.
    assert_eq!(
        doc["views"][&idx.name],
        json!({"map": {"fields": {"a": "asc", "b": "asc"}, "partial_filter_selector": {"c": {"$gt": 1}}},
               "reduce": "_count",
               "options": {"def": {"fields": ["a", {"b": "asc"}], "partial_filter_selector": {"c": {"$gt": 1}}}}})
    );
    let back = IndexDef::from_design_doc(&doc);
    assert_eq!(back, vec![idx.clone()]);
    assert_eq!(
        idx.add_to_design_doc(Some(&doc)).unwrap(),
        DesignChange::Exists
    );
    // Same definition, same name.
    let again = IndexDef::from_create_request(&json!({
        "index": {"fields": ["a", "b"], "partial_filter_selector": {"c": {"$gt": 1}}}
    }))
    .unwrap();
    assert_eq!(again.name, idx.name);
    assert_eq!(
        IndexDef::remove_from_design_doc(&doc, &idx.name).unwrap(),
        None
    );
    assert!(IndexDef::remove_from_design_doc(&doc, "nope").is_err());
}

#[test]
fn bad_requests_name_the_bad_member() {
    let name = |body: Value| IndexDef::from_create_request(&body).unwrap_err().name();
    assert_eq!(name(json!({})), "missing_required_key");
    assert_eq!(name(json!({"index": {}})), "missing_required_key");
    assert_eq!(
        name(json!({"index": {"fields": ["a"]}, "x": 1})),
        "invalid_key"
    );
    assert_eq!(
        name(json!({"index": {"fields": ["a"]}, "name": ""})),
        "invalid_empty_string"
    );
    assert_eq!(
        name(json!({"index": {"fields": ["a"]}, "type": "text"})),
        "invalid_index"
    );
    assert_eq!(
        name(json!({"index": {"fields": [{"a": "up"}]}})),
        "invalid_sort_field"
    );
    assert_eq!(
        name(json!({"index": {"fields": ["a", {"b": "desc"}]}})),
        "unsupported_mixed_sort"
    );
    assert_eq!(
        name(json!({"index": {"fields": ["a"], "partial_filter_selector": {"a": {"$x": 1}}}})),
        "invalid_operator"
    );
}

#[test]
fn keys_leave_out_missing_fields_design_docs_and_filtered_docs() {
    let idx = IndexDef::from_create_request(&json!({
        "index": {"fields": ["a"], "partial_filter_selector": {"kind": "note"}}
    }))
    .unwrap();
    assert_eq!(
        idx.key_of(&json!({"_id": "1", "a": [1], "kind": "note"})),
        Some(vec![&json!([1])])
    );
    assert_eq!(
        idx.key_of(&json!({"_id": "1", "a": 1, "kind": "task"})),
        None
    );
    assert_eq!(
        idx.key_of(&json!({"_id": "_design/x", "a": 1, "kind": "note"})),
        None
    );
    assert_eq!(idx.key_of(&json!({"_id": "1", "kind": "note"})), None);
}

#[test]
fn design_docs_of_other_languages_hold_no_index() {
    let ddoc = json!({"_id": "_design/d", "views": {"v": {"map": "function(doc){}"}}});
    assert!(IndexDef::from_design_doc(&ddoc).is_empty());
    let ddoc = json!({"_id": "_design/d", "language": "query", "views": {
        "bad": {"map": {"fields": 3}}, "good": {"map": {"fields": {"x": "asc"}}}}});
    let idx = IndexDef::from_design_doc(&ddoc);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx[0].name, "good");
}

#[test]
fn indexes_go_only_into_query_design_docs() {
    let idx =
        IndexDef::from_create_request(&json!({"index": {"fields": ["a"]}, "ddoc": "d"})).unwrap();
    for existing in [
        json!({"_id": "_design/d", "_rev": "1-a"}),
        json!({"_id": "_design/d", "_rev": "1-a", "language": "javascript"}),
    ] {
        let e = idx.add_to_design_doc(Some(&existing)).unwrap_err();
        assert_eq!(e.name(), "invalid_ddoc_lang", "{existing}");
    }
    // A new design document, or one deleted, becomes a query one.
    for existing in [
        None,
        Some(json!({"_id": "_design/d", "_rev": "2-b", "_deleted": true})),
    ] {
        match idx.add_to_design_doc(existing.as_ref()).unwrap() {
            DesignChange::Write(body) => assert_eq!(body["language"], "query"),
            DesignChange::Exists => panic!("nothing to write"),
        }
    }
}

#[test]
fn generated_names_depend_on_the_given_name_and_ddoc() {
    let make = |body: Value| IndexDef::from_create_request(&body).unwrap();
    let plain = make(json!({"index": {"fields": ["a"]}}));
    assert_eq!(plain, make(json!({"index": {"fields": ["a"]}})));
    let a = make(json!({"index": {"fields": ["a"]}, "name": "A"}));
    let b = make(json!({"index": {"fields": ["a"]}, "name": "B"}));
    assert_ne!(a.ddoc, b.ddoc);
    assert_ne!(a.ddoc, plain.ddoc);
    let in_x = make(json!({"index": {"fields": ["a"]}, "ddoc": "x"}));
    assert_eq!(in_x.ddoc, "_design/x");
    assert_ne!(in_x.name, plain.name);
}

#[test]
fn partial_filter_is_normalized_in_the_map_and_kept_in_the_def() {
    let idx = IndexDef::from_create_request(&json!({
        "index": {"fields": ["a"], "partial_filter_selector": {"kind": "x"}}, "ddoc": "d", "name": "v"
    }))
    .unwrap();
    let view = idx.view_json();
    assert_eq!(
        view["map"]["partial_filter_selector"],
        json!({"kind": {"$eq": "x"}})
    );
    assert_eq!(
        view["options"]["def"]["partial_filter_selector"],
        json!({"kind": "x"})
    );
    // Read back from its design document, it is the same index.
    let ddoc = json!({"_id": "_design/d", "language": "query", "views": {"v": view}});
    assert_eq!(IndexDef::from_design_doc(&ddoc), vec![idx.clone()]);
    assert_eq!(
        idx.add_to_design_doc(Some(&ddoc)).unwrap(),
        DesignChange::Exists
    );
}
