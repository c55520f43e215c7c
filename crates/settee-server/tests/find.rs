//! `_find`, `_explain` and `_index` of `settee serve` against Apache CouchDB 3.5.0's: the same
//! documents and indexes on both, the same requests (good and bad), and the answers compared:
//! status, CouchDB's `error` name, the documents and their order, which members the answer
//! has (bookmark, warning, execution_stats), the warning text, the index list, the index
//! `_explain` picks. Bookmarks are opaque, so paging is compared by following each server's
//! own. Needs the CouchDB of `scripts/test.sh` (`SETTEE_TEST_COUCHDB_URL`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Side, TestServe};
use reqwest::Method;
use serde_json::{json, Value};
use settee_testkit::TestDb;

fn docs() -> Vec<Value> {
    let mut docs: Vec<Value> = (0..30)
        .map(|i| {
            let kind = ["note", "task", "tag"][i % 3];
            json!({
                "_id": format!("d{i:02}"),
                "n": i,
                "kind": kind,
                "title": format!("title {}", 29 - i),
                "meta": {"pri": i % 4, "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>()},
            })
        })
        .collect();
    docs.push(json!({"_id": "odd", "n": "a string", "kind": null}));
    docs.push(json!({"_id": "bare"}));
    docs
}

/// Both sides' database with the same documents and the same two indexes.
async fn setup() -> (TestServe, Side, Side, TestDb) {
    let (serve, settee, couch, couch_db) = common::compared("f", "serve_find").await;
    for side in [&settee, &couch] {
        let (s, b) = side
            .json(Method::POST, "/_bulk_docs", json!({"docs": docs()}))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    (serve, settee, couch, couch_db)
}

/// The documents of a `_find` answer without `_rev` (the servers' revision hashes differ).
fn bodies(answer: &Value) -> Vec<Value> {
    answer["docs"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(m) = d.as_object_mut() {
                m.remove("_rev");
            }
            d
        })
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Compares one request's answers; `what` names the case. Returns what differs.
fn compare(what: &str, settee: &(u16, Value), couch: &(u16, Value)) -> Vec<String> {
    let ((ss, sb), (cs, cb)) = (settee, couch);
    let mut bad = Vec::new();
    let mut differ = |ok: bool, part: &str| {
        if !ok {
            bad.push(format!(
                "{what}: {part} differs\n  settee:  {ss} {sb}\n  couchdb: {cs} {cb}"
            ));
        }
    };
    differ(ss == cs, "status");
    if *cs >= 400 {
        differ(sb["error"] == cb["error"], "error name");
        differ(sb["reason"].is_string(), "reason");
    } else if cb.get("docs").is_some() {
        differ(bodies(sb) == bodies(cb), "documents");
        differ(keys(sb) == keys(cb), "members");
        differ(sb["warning"] == cb["warning"], "warning");
        if let Some(stats) = cb.get("execution_stats") {
            differ(keys(&sb["execution_stats"]) == keys(stats), "stats");
            differ(
                sb["execution_stats"]["results_returned"] == stats["results_returned"],
                "results_returned",
            );
        }
    }
    bad
}

/// Fails with every difference found.
fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_answers_as_couchdb_does_good_and_bad_requests() {
    let (_serve, settee, couch, _guard) = setup().await;
    for side in [&settee, &couch] {
        for idx in [
            json!({"index": {"fields": ["n"]}, "ddoc": "by-n", "name": "n"}),
            json!({"index": {"fields": ["kind", "n"]}, "ddoc": "by-kind", "name": "kind-n"}),
            json!({"index": {"fields": ["meta.pri"], "partial_filter_selector": {"kind": "task"}}, "ddoc": "tasks", "name": "pri"}),
        ] {
            let (s, b) = side.json(Method::POST, "/_index", idx).await;
            assert_eq!((s, &b["result"]), (200, &json!("created")), "{b}");
        }
    }
    let cases: Vec<(&str, Value)> = vec![
        ("all, default limit 25", json!({"selector": {}})),
        (
            "no index: warning",
            json!({"selector": {"title": {"$gt": "title 1"}}}),
        ),
        (
            "index on n, range, sort",
            json!({"selector": {"n": {"$gte": 5, "$lt": 12}}, "sort": ["n"]}),
        ),
        (
            "descending sort",
            json!({"selector": {"n": {"$gt": 20}}, "sort": [{"n": "desc"}], "fields": ["_id", "n"]}),
        ),
        (
            "two-field index",
            json!({"selector": {"kind": "task", "n": {"$gt": 3}}, "sort": [{"kind": "asc"}, {"n": "asc"}], "limit": 4, "skip": 1}),
        ),
        (
            "partial index via use_index",
            json!({"selector": {"kind": "task", "meta.pri": {"$gte": 0}}, "use_index": "tasks"}),
        ),
        (
            "use_index missing: warning",
            json!({"selector": {"n": 3}, "use_index": "nope"}),
        ),
        (
            "use_index missing, no fallback",
            json!({"selector": {"n": 3}, "use_index": "nope", "allow_fallback": false}),
        ),
        (
            "fields and nested",
            json!({"selector": {"meta.tags": {"$size": 2}}, "fields": ["_id", "meta.tags"]}),
        ),
        (
            "$or $in $regex $elemMatch",
            json!({"selector": {"$or": [{"kind": {"$in": ["tag"]}}, {"title": {"$regex": "^title 2"}}, {"meta.tags": {"$elemMatch": {"$eq": "t1"}}}]}, "fields": ["_id"]}),
        ),
        (
            "execution_stats",
            json!({"selector": {"n": {"$lt": 3}}, "execution_stats": true, "fields": ["_id"]}),
        ),
        (
            "type bracket",
            json!({"selector": {"n": {"$type": "string"}}}),
        ),
        (
            "$exists false",
            json!({"selector": {"kind": {"$exists": false}}}),
        ),
        (
            "options accepted",
            json!({"selector": {"n": 1}, "r": 1, "conflicts": true, "update": true, "stable": false, "stale": "ok", "bookmark": null}),
        ),
        (
            "sort without index: no_usable_index",
            json!({"selector": {"title": {"$gt": null}}, "sort": ["title"]}),
        ),
        (
            "sort on _id without index",
            json!({"selector": {}, "sort": [{"_id": "desc"}], "limit": 3}),
        ),
        (
            "mixed sort directions",
            json!({"selector": {"kind": "task", "n": {"$gt": 3}}, "sort": [{"kind": "asc"}, {"n": "desc"}]}),
        ),
        ("sort not an array", json!({"selector": {}, "sort": "n"})),
        (
            "bad sort direction",
            json!({"selector": {}, "sort": [{"n": "up"}]}),
        ),
        ("no selector", json!({})),
        ("selector not an object", json!({"selector": []})),
        ("unknown operator", json!({"selector": {"n": {"$foo": 1}}})),
        ("bad $or", json!({"selector": {"$or": "x"}})),
        ("bad $in", json!({"selector": {"n": {"$in": 1}}})),
        ("bad $regex", json!({"selector": {"n": {"$regex": "("}}})),
        ("unknown key", json!({"selector": {}, "foo": 1})),
        ("negative limit", json!({"selector": {}, "limit": -1})),
        ("string limit", json!({"selector": {}, "limit": "2"})),
        ("fractional skip", json!({"selector": {}, "skip": 1.5})),
        (
            "fields not an array",
            json!({"selector": {}, "fields": "n"}),
        ),
        ("bad bookmark", json!({"selector": {}, "bookmark": "xx"})),
        (
            "use_index too long",
            json!({"selector": {}, "use_index": ["a", "b", "c"]}),
        ),
    ];
    let mut problems = Vec::new();
    for (what, body) in &cases {
        let s = settee.json(Method::POST, "/_find", body.clone()).await;
        let c = couch.json(Method::POST, "/_find", body.clone()).await;
        problems.extend(compare(what, &s, &c));
    }
    // Not a JSON object, not JSON, another content type, another method.
    let raw: &[(&str, Method, &str, &str)] = &[
        ("array body", Method::POST, "application/json", "[]"),
        ("not JSON", Method::POST, "application/json", "{nope"),
        (
            "text/plain",
            Method::POST,
            "text/plain",
            r#"{"selector": {}}"#,
        ),
        ("no content type", Method::POST, "", r#"{"selector": {}}"#),
        ("GET _find", Method::GET, "", ""),
        (
            "PUT _find",
            Method::PUT,
            "application/json",
            r#"{"selector": {}}"#,
        ),
    ];
    for (what, method, ctype, body) in raw {
        let s = settee.raw(method.clone(), "/_find", ctype, body).await;
        let c = couch.raw(method.clone(), "/_find", ctype, body).await;
        problems.extend(compare(what, &s, &c));
    }
    assert_none(problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_pages_with_each_servers_bookmark_to_the_same_documents() {
    let (_serve, settee, couch, _guard) = setup().await;
    for side in [&settee, &couch] {
        let (s, _) = side
            .json(Method::POST, "/_index", json!({"index": {"fields": ["n"]}}))
            .await;
        assert_eq!(s, 200);
    }
    for query in [
        json!({"selector": {"n": {"$gte": 2}}, "sort": ["n"], "limit": 7}),
        json!({"selector": {"n": {"$gte": 2}}, "sort": [{"n": "desc"}], "limit": 7}),
        json!({"selector": {"kind": "note"}, "limit": 4}),
    ] {
        let mut pages: Vec<Vec<Vec<Value>>> = Vec::new();
        for side in [&settee, &couch] {
            let mut q = query.clone();
            let mut got = Vec::new();
            loop {
                let (s, b) = side.json(Method::POST, "/_find", q.clone()).await;
                assert_eq!(s, 200, "{b}");
                assert!(
                    b["bookmark"].is_string(),
                    "every answer has a bookmark: {b}"
                );
                let page = bodies(&b);
                if page.is_empty() {
                    break;
                }
                got.push(page);
                q["bookmark"] = b["bookmark"].clone();
                assert!(got.len() < 20, "paging does not end");
            }
            pages.push(got);
        }
        assert_eq!(pages[0], pages[1], "pages of {query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_endpoints_answer_as_couchdb_does() {
    let (_serve, settee, couch, _guard) = setup().await;
    let steps: Vec<(&str, Method, &str, Value)> = vec![
        ("list: _all_docs only", Method::GET, "/_index", Value::Null),
        (
            "create, generated names",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"]}}),
        ),
        (
            "create again: exists",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"]}}),
        ),
        (
            "create named",
            Method::POST,
            "/_index",
            json!({"index": {"fields": [{"kind": "asc"}, "n"]}, "ddoc": "dd", "name": "k"}),
        ),
        (
            "second index in a ddoc",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["title"]}, "ddoc": "_design/dd", "name": "t", "type": "json"}),
        ),
        (
            "partial",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"], "partial_filter_selector": {"kind": "tag"}}, "ddoc": "p", "name": "p"}),
        ),
        (
            "partial, normalized when listed",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"], "partial_filter_selector": {"n": 1, "kind": {"$gt": 2}, "title": {"$in": [1]}}}, "ddoc": "q", "name": "q"}),
        ),
        ("list all", Method::GET, "/_index", Value::Null),
        ("no index member", Method::POST, "/_index", json!({})),
        ("no fields", Method::POST, "/_index", json!({"index": {}})),
        (
            "unknown key",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"]}, "foo": 1}),
        ),
        (
            "unknown type",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"]}, "type": "foo"}),
        ),
        (
            "empty ddoc",
            Method::POST,
            "/_index",
            json!({"index": {"fields": ["n"]}, "ddoc": ""}),
        ),
        ("PUT _index", Method::PUT, "/_index", json!({})),
        ("DELETE _index", Method::DELETE, "/_index", Value::Null),
        (
            "GET one index",
            Method::GET,
            "/_index/dd/json/k",
            Value::Null,
        ),
        (
            "delete one of two",
            Method::DELETE,
            "/_index/dd/json/k",
            Value::Null,
        ),
        (
            "delete it again",
            Method::DELETE,
            "/_index/dd/json/k",
            Value::Null,
        ),
        (
            "delete text type",
            Method::DELETE,
            "/_index/dd/text/t",
            Value::Null,
        ),
        (
            "delete missing ddoc",
            Method::DELETE,
            "/_index/nope/json/t",
            Value::Null,
        ),
        (
            "delete with _design/ prefix",
            Method::DELETE,
            "/_index/_design/dd/json/t",
            Value::Null,
        ),
        (
            "delete encoded",
            Method::DELETE,
            "/_index/_design%2Fp/json/p",
            Value::Null,
        ),
        ("short path", Method::DELETE, "/_index/dd/json", Value::Null),
        ("list after deletes", Method::GET, "/_index", Value::Null),
        (
            "bulk delete without docids",
            Method::POST,
            "/_index/_bulk_delete",
            json!({}),
        ),
        (
            "bulk delete docids not array",
            Method::POST,
            "/_index/_bulk_delete",
            json!({"docids": "x"}),
        ),
        (
            "bulk delete nothing",
            Method::POST,
            "/_index/_bulk_delete",
            json!({"docids": []}),
        ),
        (
            "GET bulk delete",
            Method::GET,
            "/_index/_bulk_delete",
            Value::Null,
        ),
    ];
    let mut problems = Vec::new();
    for (what, method, path, body) in steps {
        let (s, c) = if body.is_null() && method == Method::GET {
            // CouchDB's index list once lagged a creation it had acknowledged (CI, busy
            // machine): a list is asked again, for up to 10 s, until it agrees.
            let s = settee.raw(method.clone(), path, "", "").await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut c = couch.raw(method.clone(), path, "", "").await;
            while generated_names(&s.1) != generated_names(&c.1)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                c = couch.raw(method.clone(), path, "", "").await;
            }
            (s, c)
        } else if body.is_null() {
            (
                settee.raw(method.clone(), path, "", "").await,
                couch.raw(method, path, "", "").await,
            )
        } else {
            (
                settee.json(method.clone(), path, body.clone()).await,
                couch.json(method, path, body).await,
            )
        };
        problems.extend(compare(what, &s, &c));
        if c.0 < 400 && generated_names(&s.1) != generated_names(&c.1) {
            problems.push(format!(
                "{what}: answers differ\n  settee:  {}\n  couchdb: {}",
                s.1, c.1
            ));
        }
    }
    assert_none(problems);
}

/// `v` with index names CouchDB generates (hex SHA-1 of the definition, as an Erlang term:
/// Settee's are hex SHA-1s of another serialization) replaced by `<generated>`.
fn generated_names(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let hex = s.strip_prefix("_design/").unwrap_or(s);
            if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                json!("<generated>")
            } else {
                v.clone()
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(generated_names).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), generated_names(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_picks_the_index_couchdb_picks() {
    let (_serve, settee, couch, _guard) = setup().await;
    for side in [&settee, &couch] {
        for idx in [
            json!({"index": {"fields": ["n"]}, "ddoc": "by-n", "name": "n"}),
            json!({"index": {"fields": ["kind", "n"]}, "ddoc": "by-kind", "name": "kind-n"}),
        ] {
            let (s, _) = side.json(Method::POST, "/_index", idx).await;
            assert_eq!(s, 200);
        }
    }
    let mut problems = Vec::new();
    for (what, body) in [
        ("range on n", json!({"selector": {"n": {"$gt": 3}}})),
        (
            "kind and n",
            json!({"selector": {"kind": "task", "n": {"$gt": 3}}, "fields": ["_id"], "limit": 3, "skip": 1}),
        ),
        ("no index", json!({"selector": {"title": "x"}})),
        (
            "unsortable: index null",
            json!({"selector": {"title": {"$gt": null}}, "sort": ["title"]}),
        ),
        ("missing selector", json!({})),
        ("bad operator", json!({"selector": {"n": {"$foo": 1}}})),
    ] {
        let s = settee.json(Method::POST, "/_explain", body.clone()).await;
        let c = couch.json(Method::POST, "/_explain", body).await;
        problems.extend(compare(what, &s, &c));
        if c.0 == 200 {
            let (sb, cb) = (&s.1, &c.1);
            if sb["dbname"] != "f" {
                problems.push(format!("{what}: dbname {}", sb["dbname"]));
            }
            for key in [
                "index",
                "selector",
                "limit",
                "skip",
                "fields",
                "partitioned",
            ] {
                if sb[key] != cb[key] {
                    problems.push(format!(
                        "{what}: {key} differs\n  settee:  {sb}\n  couchdb: {cb}"
                    ));
                }
            }
        }
    }
    let s = settee.raw(Method::GET, "/_explain", "", "").await;
    let c = couch.raw(Method::GET, "/_explain", "", "").await;
    problems.extend(compare("GET _explain", &s, &c));
    assert_none(problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_indexes_needs_a_database_admin_and_changes_nothing_otherwise() {
    let serve = TestServe::start().await;
    serve.create_db("g").await;
    // A member (by role) of the database, not an admin of it.
    let (s, b) = serve
        .call(
            Method::PUT,
            "/g/_security",
            Some(json!({"members": {"names": ["nobody"]}, "admins": {"names": ["someone"]}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let anonymous = reqwest::Client::new();
    let res = anonymous
        .post(format!("{}/g/_index", serve.url()))
        .json(&json!({"index": {"fields": ["n"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = anonymous
        .post(format!("{}/g/_find", serve.url()))
        .json(&json!({"selector": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let (s, b) = serve.call(Method::GET, "/g/_index", None).await;
    assert_eq!((s, &b["total_rows"]), (200, &json!(1)), "{b}");
    // The server admin may; the index is a design document, so it is in the changes feed.
    let (s, b) = serve
        .call(
            Method::POST,
            "/g/_index",
            Some(json!({"index": {"fields": ["n"]}, "ddoc": "x", "name": "n"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(serve.ids("g").await, ["_design/x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_selector_errors_are_couchdbs() {
    let (_serve, settee, couch, _guard) = setup().await;
    let mut problems = Vec::new();
    for (what, body) in [
        ("selector a string", json!({"selector": "foo"})),
        ("no selector", json!({})),
        ("bad operator", json!({"selector": {"a": {"$foo": 1}}})),
    ] {
        let s = settee
            .json(Method::POST, "/_changes?filter=_selector", body.clone())
            .await;
        let c = couch
            .json(Method::POST, "/_changes?filter=_selector", body)
            .await;
        problems.extend(compare(what, &s, &c));
        // PouchDB's tests read this reason too (a bad selector's reason is settee_query's).
        if what != "bad operator" && s.1["reason"] != c.1["reason"] {
            problems.push(format!("{what}: reason differs: {} / {}", s.1, c.1));
        }
    }
    assert_none(problems);
}
