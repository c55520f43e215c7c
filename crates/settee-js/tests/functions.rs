//! Each kind of design document function run in a sandbox, and the ways one can fail.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};
use settee_js::{Error, Limits, Rejection, Sandbox};

fn sandbox() -> Sandbox {
    Sandbox::new(Limits::default()).unwrap()
}

#[test]
fn map_returns_emitted_rows_in_order_with_undefined_as_null() {
    let s = sandbox();
    let f = s
        .compile(
            "_design/d views.v.map",
            "function (doc) { emit(doc.n, doc); emit([doc._id, 2]); emit(); }",
        )
        .unwrap();
    let doc = json!({"_id": "a", "n": 1});
    let rows = s.map(&f, &doc).unwrap();
    assert_eq!(
        rows,
        vec![
            (json!(1), doc.clone()),
            (json!(["a", 2]), Value::Null),
            (Value::Null, Value::Null)
        ]
    );
    // A second document starts from an empty list.
    assert_eq!(s.map(&f, &json!({"_id": "b"})).unwrap().len(), 3);
}

#[test]
fn couchdb_helpers_are_defined() {
    let s = sandbox();
    let f = s
        .compile(
            "_design/d views.v.map",
            "function (doc) { log('seen ' + doc._id); emit(sum([1, 2, 3]), [isArray(doc.l), toJSON(doc.l)]); }",
        )
        .unwrap();
    let rows = s.map(&f, &json!({"_id": "a", "l": [1]})).unwrap();
    assert_eq!(rows, vec![(json!(6), json!([true, "[1]"]))]);
    assert_eq!(s.take_log(), vec!["seen a".to_owned()]);
    assert!(s.take_log().is_empty());
}

#[test]
fn filter_answers_with_the_truthiness_of_the_result_and_sees_req_query() {
    let s = sandbox();
    let f = s
        .compile(
            "_design/d filters.by_type",
            "function (doc, req) { return doc.type === req.query.type && doc.n; };",
        )
        .unwrap();
    let req = json!({"query": {"type": "a"}});
    assert!(s.filter(&f, &json!({"type": "a", "n": 2}), &req).unwrap());
    assert!(!s.filter(&f, &json!({"type": "a", "n": 0}), &req).unwrap());
    assert!(!s.filter(&f, &json!({"type": "b", "n": 2}), &req).unwrap());
}

#[test]
fn validate_turns_thrown_objects_into_rejections() {
    let s = sandbox();
    let f = s
        .compile(
            "_design/d validate_doc_update",
            r#"function (newDoc, oldDoc, userCtx, secObj) {
                if (newDoc.bad) throw({forbidden: 'no bad docs'});
                if (!userCtx.name) throw({unauthorized: 'log in'});
                if (oldDoc && oldDoc.locked) throw({forbidden: {locked: secObj.admins.names}});
                if (newDoc.typo) return newDoc.missing.field;
                if (newDoc.other) throw 'plain string';
            }"#,
        )
        .unwrap();
    let ctx = json!({"db": "x", "name": "bob", "roles": []});
    let sec = json!({"admins": {"names": ["ann"]}});
    let null = Value::Null;
    assert_eq!(s.validate(&f, &json!({"a": 1}), &null, &ctx, &sec), Ok(()));
    assert_eq!(
        s.validate(&f, &json!({"bad": true}), &null, &ctx, &sec),
        Err(Rejection::Forbidden(json!("no bad docs")))
    );
    assert_eq!(
        s.validate(&f, &json!({}), &null, &json!({"name": null}), &sec),
        Err(Rejection::Unauthorized(json!("log in")))
    );
    assert_eq!(
        s.validate(&f, &json!({}), &json!({"locked": true}), &ctx, &sec),
        Err(Rejection::Forbidden(json!({"locked": ["ann"]})))
    );
    match s.validate(&f, &json!({"typo": 1}), &null, &ctx, &sec) {
        Err(Rejection::Failed(Error::Thrown { origin, reason })) => {
            assert_eq!(origin, "_design/d validate_doc_update");
            assert!(reason.starts_with("TypeError"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.validate(&f, &json!({"other": 1}), &null, &ctx, &sec),
        Err(Rejection::Other(json!("plain string")))
    );
}

#[test]
fn reduce_gets_key_id_pairs_then_null_keys_on_rereduce() {
    let s = sandbox();
    let f = s
        .compile(
            "_design/d views.v.reduce",
            "function (keys, values, rereduce) { if (rereduce) return sum(values); return keys.length * 100 + sum(values) + (keys[0][1] === 'a' ? 0.5 : 0); }",
        )
        .unwrap();
    let keys = [(json!(1), "a".to_owned()), (json!(2), "b".to_owned())];
    let r = s.reduce(&f, &keys, &[json!(1), json!(2)], false).unwrap();
    assert_eq!(r, json!(203.5));
    let rr = s.reduce(&f, &[], &[json!(1), json!(2)], true).unwrap();
    assert_eq!(rr, json!(3));
    let undefined = s
        .compile("r", "function () { }")
        .and_then(|f| s.reduce(&f, &[], &[], true))
        .unwrap();
    assert_eq!(undefined, Value::Null);
}

#[test]
fn thrown_errors_name_the_function() {
    let s = sandbox();
    let f = s
        .compile("_design/d views.v.map", "function (doc) { doc.a.b.c = 1; }")
        .unwrap();
    let e = s.map(&f, &json!({})).unwrap_err();
    assert!(matches!(e, Error::Thrown { .. }), "{e:?}");
    assert!(e.to_string().contains("_design/d views.v.map"), "{e}");
    assert!(e.to_string().contains("TypeError"), "{e}");
    // The sandbox is still usable.
    let g = s.compile("g", "function (doc) { emit(1, 2); }").unwrap();
    assert_eq!(s.map(&g, &json!({})).unwrap().len(), 1);
}

#[test]
fn bad_source_is_a_compilation_error_naming_the_function() {
    let s = sandbox();
    let e = s
        .compile("_design/d filters.broken", "function (doc { return true }")
        .unwrap_err();
    match &e {
        Error::Compile { origin, reason } => {
            assert_eq!(origin, "_design/d filters.broken");
            assert!(reason.contains("SyntaxError"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let e = s.compile("_design/d filters.num", "42").unwrap_err();
    assert!(matches!(e, Error::Compile { .. }), "{e:?}");
    assert!(e.to_string().contains("_design/d filters.num"), "{e}");
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let s = Sandbox::new(Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .unwrap();
    let f = s
        .compile(
            "_design/d views.spin.map",
            "function (doc) { while (true) {} }",
        )
        .unwrap();
    let e = s.map(&f, &json!({})).unwrap_err();
    assert_eq!(
        e,
        Error::Timeout {
            origin: "_design/d views.spin.map".into(),
            limit: Duration::from_millis(200)
        }
    );
    // A try/catch in the function cannot swallow the interruption.
    let g = s
        .compile(
            "_design/d filters.spin",
            "function () { try { while (true) {} } catch (e) { return true; } }",
        )
        .unwrap();
    assert!(matches!(
        s.filter(&g, &json!({}), &json!({})),
        Err(Error::Timeout { .. })
    ));
    // And the next call runs normally.
    let h = s
        .compile("h", "function (doc) { emit(doc._id, null); }")
        .unwrap();
    assert_eq!(s.map(&h, &json!({"_id": "x"})).unwrap().len(), 1);
}

#[test]
fn memory_exhaustion_is_an_error_not_a_crash() {
    let s = Sandbox::new(Limits {
        memory: 16 << 20,
        ..Limits::default()
    })
    .unwrap();
    let f = s
        .compile(
            "_design/d views.hog.map",
            "function (doc) { var a = []; while (true) { a.push(new Array(100000).join('x')); } }",
        )
        .unwrap();
    let e = s.map(&f, &json!({})).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e:?}");
    assert!(s.is_broken());
}

#[test]
fn the_same_source_is_compiled_once() {
    let s = sandbox();
    let src = "function (doc) { emit(1, 1); }";
    s.compile("a", src).unwrap();
    s.compile("b", src).unwrap();
    assert_eq!(s.function_count(), 1);
}

#[test]
fn require_loads_commonjs_modules_from_the_design_document() {
    let s = sandbox();
    let ddoc = json!({
        "views": {"lib": {
            "util": "var helper = require('./helper'); exports.key = function (doc) { return helper.up(doc.name); };",
            "helper": "exports.up = function (s) { return s.toUpperCase(); }; exports.loads = (exports.loads || 0) + 1;"
        }},
        "filters": {"f": "function (doc) { return require('views/lib/util').key(doc) === 'A'; }"}
    });
    let map = s
        .compile_with_modules(
            "_design/d views.v.map",
            "function (doc) { emit(require('views/lib/util').key(doc), require('views/lib/helper').loads); }",
            &json!({"views": {"lib": ddoc["views"]["lib"]}}),
        )
        .unwrap();
    assert_eq!(
        s.map(&map, &json!({"name": "b"})).unwrap(),
        vec![(json!("B"), json!(1))]
    );
    let filter = s
        .compile_with_modules(
            "_design/d filters.f",
            ddoc["filters"]["f"].as_str().unwrap(),
            &ddoc,
        )
        .unwrap();
    assert!(s
        .filter(&filter, &json!({"name": "a"}), &json!({}))
        .unwrap());
    let missing = s
        .compile_with_modules(
            "_design/d views.w.map",
            "function (doc) { emit(require('views/lib/nope'), 1); }",
            &ddoc,
        )
        .unwrap();
    let e = s.map(&missing, &json!({})).unwrap_err();
    assert!(
        e.to_string().contains("require: no module views/lib/nope"),
        "{e}"
    );
}

#[test]
fn endless_recursion_is_an_error_not_a_crash() {
    // Run on a thread with a small stack, like a server's pool thread.
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let s = sandbox();
            let f = s
                .compile(
                    "_design/d views.deep.map",
                    "function (doc) { function down(n) { return down(n + 1) + 1; } emit(down(0), 1); }",
                )
                .unwrap();
            s.map(&f, &json!({})).map_err(|e| e.to_string())
        })
        .unwrap()
        .join()
        .unwrap();
    let e = outcome.unwrap_err();
    assert!(e.contains("_design/d views.deep.map"), "{e}");
    assert!(e.to_lowercase().contains("stack"), "{e}");
}
