//! The same users sequence on `settee serve` and on the shared CouchDB 3.5.0, answers
//! compared (when `SETTEE_TEST_COUCHDB_URL` is set).

use super::*;

/// The same users sequence on settee serve and on CouchDB 3.5.0 (default `_users`
/// security: admins only), answers compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_agree_with_couchdb() {
    let Ok(couch_url) = std::env::var("SETTEE_TEST_COUCHDB_URL") else {
        eprintln!("SETTEE_TEST_COUCHDB_URL unset: the CouchDB side is skipped");
        return;
    };
    let s = serve(|_| {}).await;
    let settee = Side::of(&s);
    let couch = Side {
        url: couch_url.trim_end_matches('/').to_owned(),
        admin: (
            std::env::var("SETTEE_TEST_COUCHDB_USER").unwrap_or_default(),
            std::env::var("SETTEE_TEST_COUCHDB_PASSWORD").unwrap_or_default(),
        ),
        http: Client::new(),
    };
    let tag = format!("{:08x}", rand::random::<u32>());
    let (ann, bob, db) = (
        format!("ann{tag}"),
        format!("bob{tag}"),
        format!("users-team-{tag}"),
    );
    let mut seen = Vec::new();
    for side in [&settee, &couch] {
        side.create_user(&ann, "a-pw", &["team"]).await;
        side.create_user(&bob, "b-pw", &[]).await;
        side.admin(Method::PUT, &format!("/{db}"), None).await;
        side.admin(
            Method::PUT,
            &format!("/{db}/_security"),
            Some(json!({"members": {"roles": ["team"]}})),
        )
        .await;
        side.admin(Method::PUT, &format!("/{db}/d"), Some(json!({"v": 1})))
            .await;
        let (a, b) = (As::Basic(&ann, "a-pw"), As::Basic(&bob, "b-pw"));
        let mut answers = Vec::new();
        let (_, doc) = side
            .admin(
                Method::GET,
                &format!("/_users/org.couchdb.user:{ann}"),
                None,
            )
            .await;
        answers.push(json!({
            "password": doc.get("password"), "scheme": doc["password_scheme"],
            "prf": doc["pbkdf2_prf"], "key": doc["derived_key"].as_str().map(str::len),
            "salt": doc["salt"].as_str().map(str::len), "roles": doc["roles"],
        }));
        let (st, mut sess) = side.call(a, Method::GET, "/_session", None).await;
        sess["userCtx"]["name"] = json!(sess["userCtx"]["name"].is_string());
        answers.push(json!([st, sess]));
        answers.push(json!(
            side.call(As::Basic(&ann, "no"), Method::GET, "/_session", None)
                .await
        ));
        let (st, _, body) = side.login(&ann, "a-pw").await;
        answers.push(json!([st, body["ok"], body["roles"]]));
        answers.push(json!(
            side.call(a, Method::GET, &format!("/{db}/d"), None).await.0
        ));
        answers.push(json!(
            side.call(b, Method::GET, &format!("/{db}/d"), None).await
        ));
        answers.push(json!(
            side.call(As::Anonymous, Method::GET, &format!("/{db}/d"), None)
                .await
        ));
        for path in ["/_users/_all_docs", "/_users/_changes"] {
            answers.push(json!(side.call(a, Method::GET, path, None).await));
        }
        answers.push(json!(
            side.call(
                a,
                Method::GET,
                &format!("/_users/org.couchdb.user:{ann}"),
                None
            )
            .await
        ));
        answers.push(json!(
            side.call(
                As::Anonymous,
                Method::POST,
                "/_users",
                Some(user_doc(&format!("eve{tag}"), "x", &[]))
            )
            .await
        ));
        answers.push(json!(
            side.admin(
                Method::PUT,
                "/_users/_security",
                Some(json!({"members": {}}))
            )
            .await
        ));
        answers.push(json!(
            side.admin(
                Method::PUT,
                "/_users/org.couchdb.user:_x",
                Some(user_doc("_x", "x", &[]))
            )
            .await
        ));
        // Clean up CouchDB's side.
        for name in [&ann, &bob] {
            let (_, d) = side
                .admin(
                    Method::GET,
                    &format!("/_users/org.couchdb.user:{name}"),
                    None,
                )
                .await;
            if let Some(rev) = d["_rev"].as_str() {
                side.admin(
                    Method::DELETE,
                    &format!("/_users/org.couchdb.user:{name}?rev={rev}"),
                    None,
                )
                .await;
            }
        }
        side.admin(Method::DELETE, &format!("/{db}"), None).await;
        seen.push(answers);
    }
    for (i, (ours, theirs)) in seen[0].iter().zip(&seen[1]).enumerate() {
        assert_eq!(ours, theirs, "answer {i} differs (settee, then CouchDB)");
    }
}
