//! `validate_doc_update` on single and bulk writes (`new_edits` true and false), and the
//! compilation check a design document with a broken view gets, compared with CouchDB 3.5.0.

use super::*;

fn validating_design() -> Value {
    json!({
        "_id": "_design/rules",
        "validate_doc_update": "function (newDoc, oldDoc, userCtx, secObj) {
            if (newDoc.forbid) throw({forbidden: 'no forbid: ' + newDoc._id});
            if (newDoc.unauth) throw({unauthorized: 'who are you'});
            if (oldDoc && oldDoc.locked) throw({forbidden: 'locked'});
            if (newDoc._deleted && newDoc._id === 'keep') throw({forbidden: 'keep stays'});
            if (newDoc.dbname) throw({forbidden: userCtx.db});
            if (newDoc.idtype) throw({forbidden: typeof newDoc._id + ' ' + newDoc._id.length});
            require('lib/rule').check(newDoc);
            if (newDoc.show) throw({forbidden: JSON.stringify([Object.keys(newDoc).sort(), oldDoc && oldDoc.n, Object.keys(userCtx), userCtx.name, userCtx.roles, Object.keys(secObj).sort()])});
        }",
        "lib": {"rule": "exports.check = function (doc) { if (doc.viaLib) throw({forbidden: 'lib says no'}); };"}
    })
}

/// The status and `error` of an answer, and its reason when it is a string.
fn outcome(a: &(u16, Value)) -> (u16, Value, Value) {
    (a.0, a.1["error"].clone(), a.1["reason"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_doc_update_refuses_writes_as_couchdb_does() {
    let (_serve, settee, couch, _guard) = setup("validate").await;
    load(
        [&settee, &couch],
        vec![
            json!({"_id": "locked", "locked": true, "n": 1}),
            json!({"_id": "keep", "n": 2}),
            json!({"_id": "free", "n": 3}),
        ],
    )
    .await;
    load([&settee, &couch], vec![validating_design()]).await;
    let mut problems = Vec::new();
    let differs = |what: &str, ours: (u16, Value), theirs: (u16, Value)| {
        (outcome(&ours) != outcome(&theirs)).then(|| {
            format!(
                "{what}:\n  settee:  {} {}\n  couchdb: {} {}",
                ours.0, ours.1, theirs.0, theirs.1
            )
        })
    };
    // Single writes.
    for (what, path, body) in [
        ("forbidden PUT", "/a", json!({"forbid": true})),
        ("unauthorized PUT", "/b", json!({"unauth": true})),
        ("accepted PUT", "/c", json!({"x": 1})),
        (
            "refused by a required module",
            "/m",
            json!({"viaLib": true}),
        ),
        (
            "what the function sees, new doc",
            "/s",
            json!({"show": true}),
        ),
        (
            "design documents are not validated",
            "/_design/other",
            json!({"forbid": true}),
        ),
        (
            "_local documents are not validated",
            "/_local/l",
            json!({"forbid": true}),
        ),
    ] {
        let ours = settee.call(Method::PUT, path, Some(body.clone())).await;
        let theirs = couch.call(Method::PUT, path, Some(body)).await;
        problems.extend(differs(what, ours, theirs));
    }
    // A POST without `_id`: the function sees the id the document gets.
    let ours = settee
        .call(Method::POST, "", Some(json!({"idtype": 1})))
        .await;
    let theirs = couch
        .call(Method::POST, "", Some(json!({"idtype": 1})))
        .await;
    problems.extend(differs("POST without _id", ours, theirs));
    let bulk = json!({"docs": [{"idtype": 1}]});
    let ours = settee
        .call(Method::POST, "/_bulk_docs", Some(bulk.clone()))
        .await;
    let theirs = couch.call(Method::POST, "/_bulk_docs", Some(bulk)).await;
    if ours.1[0]["reason"] != json!("string 32") || ours.1[0]["reason"] != theirs.1[0]["reason"] {
        problems.push(format!("bulk without _id: {ours:?} / {theirs:?}"));
    }
    let ours = settee
        .call(Method::POST, "", Some(json!({"forbid": 1})))
        .await;
    let theirs = couch
        .call(Method::POST, "", Some(json!({"forbid": 1})))
        .await;
    if outcome(&ours).0 != outcome(&theirs).0 || ours.1["error"] != theirs.1["error"] {
        problems.push(format!("POST: {ours:?} / {theirs:?}"));
    }
    // Edits: oldDoc is the revision replaced, and the edit's _revisions are passed.
    for side in [&settee, &couch] {
        let rev = side.rev("locked").await;
        let (s, b) = side
            .call(Method::PUT, "/locked", Some(json!({"_rev": rev, "n": 9})))
            .await;
        if (s, b["reason"].as_str()) != (403, Some("locked")) {
            problems.push(format!("edit of a locked doc: {s} {b}"));
        }
        let (s, b) = side
            .call(
                Method::DELETE,
                &format!("/keep?rev={}", side.rev("keep").await),
                None,
            )
            .await;
        if (s, b["reason"].as_str()) != (403, Some("keep stays")) {
            problems.push(format!("delete refused: {s} {b}"));
        }
        let (s, b) = side
            .call(
                Method::PUT,
                &format!("/locked/att.txt?rev={rev}"),
                Some(json!("data")),
            )
            .await;
        if (s, b["reason"].as_str()) != (403, Some("locked")) {
            problems.push(format!("attachment PUT on a locked doc: {s} {b}"));
        }
    }
    let ours = settee
        .call(
            Method::PUT,
            "/free",
            Some(json!({"_rev": settee.rev("free").await, "show": true})),
        )
        .await;
    let theirs = couch
        .call(
            Method::PUT,
            "/free",
            Some(json!({"_rev": couch.rev("free").await, "show": true})),
        )
        .await;
    problems.extend(differs("what the function sees, edit", ours, theirs));
    // A multipart/related PUT (document and attachment bytes) is validated too.
    for side in [&settee, &couch] {
        for (id, forbid, want) in [("mp1", true, 403), ("mp2", false, 201)] {
            let doc = json!({"forbid": forbid, "_attachments": {"a.txt": {"follows": true, "content_type": "text/plain", "length": 2}}});
            let body = format!(
                "--xyz\r\nContent-Type: application/json\r\n\r\n{doc}\r\n--xyz\r\n\r\nhi\r\n--xyz--"
            );
            let res = side
                .http
                .put(format!("{}/{id}", side.db_url))
                .basic_auth(&side.user, Some(&side.password))
                .header("Content-Type", "multipart/related; boundary=\"xyz\"")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            if status != want {
                problems.push(format!(
                    "multipart PUT {id}: {status} {}",
                    res.text().await.unwrap()
                ));
            }
        }
    }
    // Bulk: refused documents are error rows, the others are written.
    let bulk = json!({"docs": [
        {"_id": "b1", "forbid": true},
        {"_id": "b2"},
        {"_id": "b3", "unauth": true},
    ]});
    let (ss, sb) = settee
        .call(Method::POST, "/_bulk_docs", Some(bulk.clone()))
        .await;
    let (cs, cb) = couch.call(Method::POST, "/_bulk_docs", Some(bulk)).await;
    let rows = |b: &Value| -> Vec<(Value, Value, Value, bool)> {
        b.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].clone(),
                    r["ok"].clone(),
                    r["error"].clone(),
                    r.get("rev").is_some(),
                )
            })
            .collect()
    };
    if ss != cs || rows(&sb) != rows(&cb) {
        problems.push(format!("bulk:\n  settee:  {ss} {sb}\n  couchdb: {cs} {cb}"));
    }
    // Replicated revisions (new_edits=false) are validated too; only failures are listed.
    let bulk = json!({"new_edits": false, "docs": [
        {"_id": "r1", "_rev": "1-aaaa", "forbid": true},
        {"_id": "r2", "_rev": "1-bbbb"},
        {"_id": "r3", "_rev": "1-cccc", "unauth": true},
    ]});
    let (ss, sb) = settee
        .call(Method::POST, "/_bulk_docs", Some(bulk.clone()))
        .await;
    let (cs, cb) = couch.call(Method::POST, "/_bulk_docs", Some(bulk)).await;
    if ss != cs || rows(&sb) != rows(&cb) {
        problems.push(format!(
            "bulk new_edits=false:\n  settee:  {ss} {sb}\n  couchdb: {cs} {cb}"
        ));
    }
    for id in ["r1", "r2", "r3", "b1", "b2"] {
        let ours = settee.get(&format!("/{id}")).await.0;
        let theirs = couch.get(&format!("/{id}")).await.0;
        if ours != theirs {
            problems.push(format!("{id} after the bulk writes: {ours} vs {theirs}"));
        }
    }
    assert_none(problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_design_document_with_a_broken_view_is_refused_as_couchdb_does() {
    let (_serve, settee, couch, _guard) = setup("ddoccheck").await;
    let mut problems = Vec::new();
    for (what, ddoc) in [
        (
            "bad map",
            json!({"views": {"v": {"map": "function (doc {"}}}),
        ),
        (
            "bad reduce",
            json!({"views": {"v": {"map": "function (doc) {}", "reduce": "function (k, v {"}}}),
        ),
        (
            "unknown built-in",
            json!({"views": {"v": {"map": "function (doc) {}", "reduce": "_bogus"}}}),
        ),
        (
            "good",
            json!({"views": {"v": {"map": "function (doc) {}", "reduce": "_count"}}}),
        ),
    ] {
        let path = format!("/_design/{}", what.replace(' ', "_"));
        let ours = settee.call(Method::PUT, &path, Some(ddoc.clone())).await;
        let theirs = couch.call(Method::PUT, &path, Some(ddoc)).await;
        if (ours.0, &ours.1["error"]) != (theirs.0, &theirs.1["error"]) {
            problems.push(format!("{what}: {ours:?} / {theirs:?}"));
        }
    }
    assert_none(problems);
}
