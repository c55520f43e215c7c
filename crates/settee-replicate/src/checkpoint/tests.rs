//! Unit tests of the checkpoint document and the replication id.

use super::*;

fn session(id: &str, seq: u64) -> Session {
    Session {
        session_id: id.into(),
        start_time: String::new(),
        end_time: String::new(),
        start_last_seq: Seq::zero(),
        end_last_seq: Seq::from(seq),
        recorded_seq: Seq::from(seq),
        missing_checked: 0,
        missing_found: 0,
        docs_read: 0,
        docs_written: 0,
        doc_write_failures: 0,
    }
}

fn log(last: &str, seq: u64, history: Vec<Session>) -> ReplicationLog {
    ReplicationLog {
        session_id: last.into(),
        source_last_seq: Seq::from(seq),
        replication_id_version: 1,
        replicator: "settee".into(),
        history,
        doc_failures: Vec::new(),
    }
}

#[test]
fn same_session_resumes_from_source_last_seq() {
    let s = log("a", 10, vec![session("a", 10)]);
    let t = log("a", 10, vec![session("a", 10)]);
    assert_eq!(find_start(Some(&s), Some(&t)), Seq::from(10));
}

#[test]
fn missing_log_on_either_side_starts_from_zero() {
    let s = log("a", 10, vec![session("a", 10)]);
    assert_eq!(find_start(Some(&s), None), Seq::zero());
    assert_eq!(find_start(None, Some(&s)), Seq::zero());
}

#[test]
fn falls_back_to_newest_common_session() {
    // The source wrote session c, but the target's write of c was lost (crash between
    // the two writes): both share b.
    let s = log(
        "c",
        30,
        vec![session("c", 30), session("b", 20), session("a", 10)],
    );
    let t = log("b", 20, vec![session("b", 20), session("a", 10)]);
    assert_eq!(find_start(Some(&s), Some(&t)), Seq::from(20));
    // The other way round.
    assert_eq!(find_start(Some(&t), Some(&s)), Seq::from(20));
}

#[test]
fn no_common_session_starts_from_zero() {
    let s = log("x", 30, vec![session("x", 30)]);
    let t = log("y", 20, vec![session("y", 20)]);
    assert_eq!(find_start(Some(&s), Some(&t)), Seq::zero());
}

#[test]
fn replication_id_ignores_doc_id_order_and_changes_with_filter() {
    let a = replication_id(
        "s",
        "t",
        &Filter::DocIds(vec!["b".into(), "a".into()]),
        None,
    );
    let b = replication_id(
        "s",
        "t",
        &Filter::DocIds(vec!["a".into(), "b".into()]),
        None,
    );
    assert_eq!(a, b);
    assert_ne!(a, replication_id("s", "t", &Filter::All, None));
    assert_ne!(
        replication_id("s", "t", &Filter::All, None),
        replication_id("t", "s", &Filter::All, None)
    );
    assert_eq!(a.len(), 32);
}

#[test]
fn unfiltered_ids_are_the_ones_earlier_versions_computed() {
    // Checkpoints written before user names and filter code went into the id are found
    // again where the identities are unchanged (local stores, anonymous remotes). The
    // value is what the previous version computed for these peers.
    assert_eq!(
        replication_id("local:u1", "http://h:5984/db", &Filter::All, None),
        "eb38c29211135df0f08528aa546dd7e1"
    );
}

#[test]
fn a_filter_function_is_identified_by_its_code_and_parameters_not_its_name() {
    let f = |name: &str, params: Value| Filter::Named {
        name: name.into(),
        query_params: params.as_object().unwrap().clone(),
    };
    let code = "function(doc, req) { return doc.kind === req.query.kind; }";
    let id = |filter: &Filter, code: &str| replication_id("s", "t", filter, Some(code));
    let base = id(
        &f("app/by_kind", serde_json::json!({"kind": "a", "x": 1})),
        code,
    );
    // Parameter order and surrounding whitespace in the code do not matter.
    assert_eq!(
        base,
        id(
            &f("app/by_kind", serde_json::json!({"x": 1, "kind": "a"})),
            &format!("\n  {code} \n")
        )
    );
    // Neither does the name (CouchDB's rule): the same code selects the same documents.
    assert_eq!(
        base,
        id(
            &f("other/name", serde_json::json!({"kind": "a", "x": 1})),
            code
        )
    );
    // A changed body or parameter is another replication.
    assert_ne!(
        base,
        id(
            &f("app/by_kind", serde_json::json!({"kind": "a", "x": 1})),
            "function(doc, req) { return true; }"
        )
    );
    assert_ne!(
        base,
        id(
            &f("app/by_kind", serde_json::json!({"kind": "b", "x": 1})),
            code
        )
    );
}

#[test]
fn filter_names_and_design_documents_are_checked() {
    assert!(split_filter_name("app").is_err());
    assert!(split_filter_name("/f").is_err());
    assert!(split_filter_name("app/").is_err());
    assert_eq!(split_filter_name("app/a/b").unwrap(), ("app", "a/b"));
    let ddoc = serde_json::json!({"filters": {"f": "  function(d) { return 1; }\n"}});
    assert_eq!(
        filter_code_in(Some(&ddoc), "app/f", "peer").unwrap(),
        "function(d) { return 1; }"
    );
    let e = filter_code_in(Some(&ddoc), "app/g", "peer").unwrap_err();
    assert_eq!(e.name(), "bad_request");
    assert!(e.to_string().contains("\"g\""), "{e}");
    assert!(filter_code_in(None, "app/f", "peer").is_err());
}

#[test]
fn opaque_sequences_survive_the_log_round_trip() {
    let mut l = log("a", 0, vec![]);
    l.source_last_seq = Seq::from_json(Value::from("12-g1AAAAGjeJzLYWBg"));
    let back = ReplicationLog::from_doc(&serde_json::to_value(&l).unwrap()).unwrap();
    assert_eq!(back.source_last_seq, l.source_last_seq);
}

#[test]
fn timestamps_are_rfc3339() {
    let t = now_rfc3339();
    assert_eq!(t.len(), 20);
    assert!(t.starts_with("20") && t.ends_with('Z'));
}
