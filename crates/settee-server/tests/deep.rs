//! Documents nested deeper than serde_json's default limit of 128 levels (issue 20, finding 9):
//! CouchDB stores them, so `settee serve` takes and gives them back up to
//! `settee_store::deep_json::MAX_DEPTH` levels, refuses deeper ones with a 400 that says why,
//! and never overflows its stack on the way.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServe;
use reqwest::Method;
use serde_json::{json, Value};
use settee_store::deep_json::MAX_DEPTH;

/// `{"a": [[...]]}` nested `depth` levels in all (the object counts as one).
fn nested(depth: usize) -> String {
    format!(
        "{{\"a\":{}{}}}",
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

async fn put_text(serve: &TestServe, path: &str, text: String) -> (u16, Value) {
    let res = serve
        .req(Method::PUT, path)
        .header("Content-Type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_str(&res.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_nested_to_the_limit_is_stored_and_read_back_and_deeper_is_refused() {
    let serve = TestServe::start().await;
    serve.create_db("deep").await;

    let (s, b) = put_text(&serve, "/deep/d200", nested(200)).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put_text(&serve, "/deep/dmax", nested(MAX_DEPTH)).await;
    assert_eq!(s, 201, "{b}");

    for (id, depth) in [("d200", 200), ("dmax", MAX_DEPTH)] {
        let res = serve
            .req(Method::GET, &format!("/deep/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let expected = nested(depth);
        let inner = &expected[expected.find('[').unwrap()..expected.len() - 1];
        assert!(text.contains(inner), "{id} came back changed");
    }

    // Through _bulk_docs (whose envelope, `{"docs": [...]}`, takes two of the levels),
    // _all_docs with the documents, and _changes with them.
    let doc: Value = settee_store::deep_json::from_str(&nested(MAX_DEPTH - 2)).unwrap();
    let mut doc = doc;
    doc["_id"] = json!("bulk");
    let body = json!({ "docs": [doc] }).to_string();
    let res = serve
        .req(Method::POST, "/deep/_bulk_docs")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    for path in [
        "/deep/_all_docs?include_docs=true",
        "/deep/_changes?include_docs=true",
    ] {
        let res = serve.req(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let text = res.text().await.unwrap();
        assert!(
            text.contains(&nested(MAX_DEPTH)[5..]),
            "{path}: the deepest document is missing"
        );
    }

    // One level more is refused, and says why; the database is unchanged.
    let (s, b) = put_text(&serve, "/deep/too", nested(MAX_DEPTH + 1)).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .contains("nested 1001 levels deep"),
        "{b}"
    );
    // A million levels is refused as plainly, and the server is still there.
    let (s, _) = put_text(&serve, "/deep/huge", nested(1_000_000)).await;
    assert_eq!(s, 400);
    let (s, info) = serve.call(Method::GET, "/deep", None).await;
    assert_eq!(s, 200);
    assert_eq!(info["doc_count"], 3, "{info}");
}
