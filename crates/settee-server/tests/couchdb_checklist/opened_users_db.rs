//! users_db_security_test.exs and cookie_auth_test.exs with `_users` opened to members
//! (`users_db_security_editable`, which the shared CouchDB does not have: Settee alone).

use super::*;

/// users_db_security_test.exs and the parts of cookie_auth_test.exs that need `_users` open
/// to members: anonymous signup, a hashed password (regenerated on change), who reads and
/// changes which user document, views and design documents of `_users` for users, database
/// admins by name and by role, `_all_docs` for server admins only, and a configured admin
/// who also has a user document (its roles are added).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_users_db_as_couchdb_tests_it() {
    let serve = serve_with(|o| o.users_db_security_editable = true).await;
    let s = Srv::settee(&serve, "");
    let open = json!({"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}});
    s.set_security("_users", open).await;
    let user = |name: &str, password: &str| {
        json!({"_id": format!("org.couchdb.user:{name}"), "type": "user", "name": name,
            "password": password, "roles": []})
    };
    let (tom_doc, spike_doc) = (
        "/_users/org.couchdb.user:tom",
        "/_users/org.couchdb.user:spike",
    );
    // Anonymous signup (also with an `Authorization` that is not basic); the password is
    // stored as PBKDF2 only.
    let a = s
        .post(
            Who::Authorization("annonymous"),
            "/_users",
            user("tom", "mp3"),
        )
        .await;
    s.check("anonymous signup", &a, 201, "");
    let tom = Who::Basic("tom", "mp3");
    let first = s.get(tom, tom_doc).await;
    s.check("a user reads their own document", &first, 200, "");
    let first = first.body;
    assert!(first.get("password").is_none(), "{first}");
    assert_eq!(first["derived_key"].as_str().unwrap().len(), 64);
    assert_eq!(first["salt"].as_str().unwrap().len(), 32);
    for who in [Who::Anonymous, tom] {
        s.check(
            "_changes",
            &s.get(who, "/_users/_changes").await,
            401,
            "unauthorized",
        );
    }
    s.check(
        "anonymous reads a user",
        &s.get(Who::Anonymous, tom_doc).await,
        404,
        "",
    );
    // A new password: a new salt and key; the new password logs in.
    let mut changed = first.clone();
    changed["password"] = json!("couch");
    s.check(
        "a new password",
        &s.put(tom, tom_doc, changed).await,
        201,
        "",
    );
    let tom = Who::Basic("tom", "couch");
    let now = s.get(Who::Admin, tom_doc).await.body;
    assert!(now.get("password").is_none());
    assert_ne!(now["derived_key"], first["derived_key"]);
    assert_ne!(now["salt"], first["salt"]);
    assert_eq!(now["pbkdf2_prf"], "sha256");
    assert_eq!(s.get(tom, "/_session").await.body["userCtx"]["name"], "tom");

    // Another user's document: not read, not changed, not deleted (404, as if missing).
    let a = s.post(Who::Admin, "/_users", user("spike", "foobar")).await;
    s.check("spike", &a, 201, "");
    let spike = s.get(Who::Admin, spike_doc).await.body;
    let rev = spike["_rev"].as_str().unwrap().to_owned();
    s.check(
        "tom reads spike",
        &s.get(tom, spike_doc).await,
        404,
        "not_found",
    );
    let mut edit = spike.clone();
    edit["foo"] = json!(3);
    s.check(
        "tom edits spike",
        &s.put(tom, spike_doc, edit).await,
        404,
        "not_found",
    );
    let a = s.delete(tom, &format!("{spike_doc}?rev={rev}")).await;
    s.check("tom deletes spike", &a, 404, "not_found");

    // A database admin of `_users` (by name, then by role) reads views and changes any
    // user's password; others get 403 for design documents and views.
    let speedy_doc =
        json!({"type": "user", "name": "speedy", "password": "test", "roles": ["user_admin"]});
    let a = s
        .put(Who::Admin, "/_users/org.couchdb.user:speedy", speedy_doc)
        .await;
    s.check("speedy", &a, 201, "");
    s.set_security(
        "_users",
        json!({"admins": {"roles": [], "names": ["speedy"]}}),
    )
    .await;
    let ddoc = json!({"views": {"test": {"map": "function(doc) { emit(doc._id, null); }"}}});
    let a = s
        .put(Who::Admin, "/_users/_design/user_db_auth", ddoc)
        .await;
    s.check("a design document in _users", &a, 201, "");
    let view = "/_users/_design/user_db_auth/_view/test";
    s.check(
        "anonymous view",
        &s.get(Who::Anonymous, view).await,
        403,
        "forbidden",
    );
    let speedy = Who::Basic("speedy", "test");
    for who in [Who::Admin, speedy] {
        let a = s.get(who, view).await;
        assert_eq!(a.body["total_rows"], 3, "{}", a.body);
    }
    let a = s.get(tom, "/_users/_design/user_db_auth").await;
    s.check("tom reads the design document", &a, 403, "forbidden");
    for (sec, password) in [
        (
            json!({"admins": {"roles": [], "names": ["speedy"]}}),
            "mobile1",
        ),
        (
            json!({"admins": {"roles": ["user_admin"], "names": []}}),
            "mobile2",
        ),
    ] {
        s.set_security("_users", sec).await;
        let mut doc = s.get(speedy, spike_doc).await.body;
        doc["password"] = json!(password);
        s.check(
            "speedy sets a password",
            &s.put(speedy, spike_doc, doc).await,
            201,
            "",
        );
        let a = s.get(Who::Basic("spike", password), "/_session").await;
        assert_eq!(a.body["userCtx"]["name"], "spike", "{}", a.body);
    }
    // `_all_docs` of `_users`: server admins only, and they see every field.
    let all = "/_users/_all_docs?include_docs=true";
    s.check(
        "tom lists _users",
        &s.get(tom, all).await,
        401,
        "unauthorized",
    );
    s.check(
        "speedy lists _users",
        &s.get(speedy, all).await,
        401,
        "unauthorized",
    );
    let a = s.get(Who::Admin, all).await;
    let rows = a.body["rows"].as_array().unwrap();
    let users: Vec<&Value> = rows
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("org.couchdb.user:"))
        .collect();
    assert_eq!(users.len(), 3, "{}", a.body);
    assert!(users.iter().all(|r| r["doc"]["type"] == "user"));
    // auth_cache_test.exs: compacting `_users` logs nobody out.
    let ctype = [("Content-Type", "application/json")];
    let a = s
        .send(Who::Admin, Method::POST, "/_users/_compact", &ctype, None)
        .await;
    s.check("compacting _users", &a, 202, "");
    let a = s.get(Who::Basic("spike", "mobile2"), "/_session").await;
    assert_eq!(a.body["userCtx"]["name"], "spike", "{}", a.body);

    // A configured admin with a user document of the same name has its roles too
    // (cookie_auth_test's admin "jchris" with role "foo"); its password stays the admin's.
    let doc = json!({"type": "user", "name": ADMIN, "password": "unused", "roles": ["foo"]});
    let a = s
        .put(
            Who::Admin,
            &format!("/_users/org.couchdb.user:{ADMIN}"),
            doc,
        )
        .await;
    s.check("the admin's user document", &a, 201, "");
    let a = s.get(Who::Admin, "/_session").await;
    assert_eq!(
        a.body["userCtx"]["roles"],
        json!(["_admin", "foo"]),
        "{}",
        a.body
    );
    let a = s.login(ADMIN, PASSWORD, "").await;
    assert_eq!(a.body["roles"], json!(["_admin", "foo"]), "{}", a.body);
    let cookie = a.cookie().unwrap();
    let a = s.get(Who::Cookie(&cookie), "/_session").await;
    assert_eq!(a.body["userCtx"]["roles"], json!(["_admin", "foo"]));
    assert_eq!(a.body["info"]["authenticated"], "cookie");
    let a = s.get(Who::Basic(ADMIN, "unused"), "/_session").await;
    s.check("the user document's password", &a, 401, "unauthorized");
}
