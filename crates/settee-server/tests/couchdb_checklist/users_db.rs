//! users_db_test.exs and cookie_auth_test.exs on `_users` as CouchDB 3.5.0 creates it
//! (admins only), played on both servers; proxy and JWT headers (proxyauth_test.exs,
//! jwtauth_test.exs) are ignored on both.

use super::*;

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn users_db(s: &Srv) -> Vec<(String, Value)> {
    let mut seen = Seen::new(s);
    let jchris = s.user("jchris@apache.org");
    let id = format!("org.couchdb.user:{jchris}");
    let path = format!("/_users/{id}");
    s.create_user(&jchris, "funnybone", &[]).await;
    let me = Who::Basic(&jchris, "funnybone");

    // Basic auth, and what `_session` says about it; no cookie comes with it.
    let a = s.get(me, "/_session").await;
    seen.expect("basic login", &a, 200, "");
    assert_eq!(a.body["userCtx"]["name"], jchris.as_str());
    assert_eq!(a.body["info"]["authenticated"], "default");
    assert_eq!(
        a.body["info"]["authentication_handlers"],
        json!(["cookie", "default"])
    );
    assert!(a.header("set-cookie").is_none(), "{}", s.name);
    seen.keep("basic login info", a.body["info"].clone());
    let a = s.get(Who::Admin, "/_all_dbs").await;
    seen.expect("admin basic auth", &a, 200, "");
    assert!(
        a.header("set-cookie").is_none(),
        "{}: basic auth set a cookie",
        s.name
    );
    // `_:_` is anonymous (a page's way to make a browser drop basic credentials).
    let a = s.get(Who::Authorization("Basic Xzpf"), "/_session").await;
    seen.expect("basic _:_", &a, 200, "");
    assert_eq!(a.body["userCtx"]["name"], Value::Null);
    assert!(a.body["info"].get("authenticated").is_none());
    let a = s.get(Who::Authorization("Basic x"), "/_session").await;
    seen.expect("basic, not base64", &a, 400, "bad_request");

    // Proxy and JWT authentication are off (CouchDB's default; Settee has neither): their
    // headers make nobody an admin.
    let proxy = [
        ("X-Auth-CouchDB-UserName", "admin"),
        ("X-Auth-CouchDB-Roles", "_admin"),
    ];
    let a = s
        .send(Who::Anonymous, Method::GET, "/_all_dbs", &proxy, None)
        .await;
    seen.expect("proxy headers", &a, 401, "unauthorized");
    let jwt =
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsIl9jb3VjaGRiLnJvbGVzIjpbIl9hZG1pbiJdfQ.x";
    let a = s.get(Who::Authorization(jwt), "/_session").await;
    seen.expect("a bearer token", &a, 200, "");
    assert_eq!(a.body["userCtx"], json!({"name": null, "roles": []}));

    // The `_auth` rules.
    let user = |id: &str, name: &str| json!({"_id": id, "name": name, "password": "pw", "roles": [], "type": "user"});
    let (w00x, joe) = (s.user("w00x"), s.user("joe:erlang"));
    let refused = [
        ("duplicate user", user(&id, &jchris), 409, "conflict"),
        (
            "name starting with _",
            user("org.couchdb.user:_why", "_why"),
            403,
            "forbidden",
        ),
        (
            "malformed user id",
            user(&format!("org.apache.couchdb:{w00x}"), &w00x),
            403,
            "forbidden",
        ),
        (
            "name with :",
            user(&format!("org.couchdb.user:{joe}"), &joe),
            403,
            "forbidden",
        ),
    ];
    for (case, doc, status, error) in refused {
        let a = s.post(Who::Admin, "/_users", doc).await;
        seen.expect(case, &a, status, error);
    }
    let doc = s.get(Who::Admin, &path).await.body;
    let edits = [
        (
            "type is not user",
            "type",
            json!("not user"),
            "doc.type must be user",
        ),
        (
            "roles not an array",
            "roles",
            json!("not an array"),
            "doc.roles must be an array",
        ),
        (
            "roles not strings",
            "roles",
            json!([12]),
            "doc.roles can only contain strings",
        ),
        (
            "roles missing",
            "roles",
            Value::Null,
            "doc.roles must exist",
        ),
        (
            "a system role",
            "roles",
            json!(["_bar"]),
            "No system roles (starting with underscore) in users db.",
        ),
    ];
    for (case, field, value, reason) in edits {
        let mut d = doc.clone();
        match value {
            Value::Null => d.as_object_mut().unwrap().remove(field),
            v => d.as_object_mut().unwrap().insert(field.into(), v),
        };
        let a = s.put(Who::Admin, &path, d).await;
        seen.expect(case, &a, 403, "forbidden");
        assert_eq!(a.body["reason"], reason, "{}: {case}", s.name);
    }
    // The admin gives a role; the user has it at the next login.
    let mut with_role = doc.clone();
    with_role["roles"] = json!(["foo"]);
    let a = s.put(Who::Admin, &path, with_role).await;
    seen.expect("the admin gives a role", &a, 201, "");
    let has_role = |a: &Answer| a.body["roles"] == json!(["foo"]);
    let a = until(s, "the new role", has_role, |_| {
        s.login(&jchris, "funnybone", "")
    })
    .await;
    seen.expect("cookie login", &a, 200, "");
    assert_eq!(
        a.body,
        json!({"ok": true, "name": jchris, "roles": ["foo"]})
    );
    let cookie = a.cookie().unwrap();
    let a = s.get(Who::Cookie(&cookie), "/_session").await;
    assert_eq!(a.body["userCtx"]["roles"], json!(["foo"]), "{}", s.name);
    assert_eq!(a.body["info"]["authenticated"], "cookie", "{}", s.name);
    seen.keep("cookie session", a.body.clone());

    // `POST /_session` as CouchDB reads it, and its redirects.
    let a = s.login(&jchris, "funnybone", "?next=/_up").await;
    seen.expect("login with next", &a, 302, "");
    assert!(
        a.header("location").unwrap().ends_with("/_up"),
        "{}",
        s.name
    );
    assert_eq!(a.body["ok"], true);
    assert!(
        a.cookie().is_some(),
        "{}: no cookie with the redirect",
        s.name
    );
    let a = s.login(&jchris, "foobar", "?fail=/_up").await;
    seen.expect("failed login with fail", &a, 302, "unauthorized");
    assert!(
        a.header("location").unwrap().ends_with("/_up"),
        "{}",
        s.name
    );
    let a = s.login(&jchris, "funnybone", "?next=_up").await;
    seen.expect("next not a path", &a, 400, "bad_request");
    let a = s.delete(Who::Anonymous, "/_session?next=/_up").await;
    seen.expect("logout with next", &a, 302, "");
    assert!(
        a.header("location").unwrap().ends_with("/_up"),
        "{}",
        s.name
    );
    let bodies = [
        (
            "username instead of name",
            json!({"username": jchris, "password": "funnybone"}),
            200,
        ),
        (
            "two names",
            json!({"username": jchris, "name": "x", "password": "funnybone"}),
            400,
        ),
        ("no name", json!({"password": "funnybone"}), 400),
    ];
    for (case, body, want) in bodies {
        let a = s.post(Who::Anonymous, "/_session", body).await;
        seen.expect(case, &a, want, "");
    }
    let form = format!("name={}&password=funnybone", common::urlencode(&jchris));
    let text = json!({"name": jchris, "password": "funnybone"}).to_string();
    for (case, ctype, body, want) in [
        ("form login", "application/x-www-form-urlencoded", form, 200),
        ("text/plain login", "text/plain", text, 415),
    ] {
        let ctype = [("Content-Type", ctype)];
        let a = s
            .send(
                Who::Anonymous,
                Method::POST,
                "/_session",
                &ctype,
                Some(body),
            )
            .await;
        seen.expect(case, &a, want, "");
    }

    // A password may start with `:` (basic auth splits at the first `:`).
    let colon = s.user("foo@example.org");
    s.create_user(&colon, ":bar", &[]).await;
    let a = s.get(Who::Basic(&colon, ":bar"), "/_session").await;
    seen.expect("password starting with :", &a, 200, "");
    assert_eq!(a.body["userCtx"]["name"], colon.as_str());

    // A user with a TOTP secret: never by basic auth; Settee has no TOTP at all.
    let totp = s.user("totp");
    let fields = json!({"password": "pw", "roles": [], "totp": {"key": "JBSWY3DPEHPK3PXP"}});
    s.create_user_doc(&totp, fields).await;
    let a = s.get(Who::Basic(&totp, "pw"), "/_session").await;
    seen.expect("totp user by basic auth", &a, 401, "unauthorized");
    let a = s.login(&totp, "pw", "").await;
    seen.expect("totp user without a token", &a, 401, "unauthorized");

    // Cookies: a malformed one is a 400, a forged one anonymous.
    let a = s.get(Who::Cookie(&b64url("abc")), "/_session").await;
    seen.expect("malformed cookie", &a, 400, "bad_request");
    let forged = b64url(&format!("{jchris}:6B16A849:abcd"));
    let a = s.get(Who::Cookie(&forged), "/_session").await;
    seen.expect("forged cookie", &a, 200, "");
    assert_eq!(a.body["userCtx"]["name"], Value::Null, "{}", s.name);

    // A user document in conflict logs nobody in; the admin can delete it.
    let mut sibling = s.get(Who::Admin, &path).await.body;
    sibling["_rev"] = json!(format!("1-{}", "a".repeat(32)));
    sibling["foo"] = json!("conflict");
    let body = json!({"docs": [sibling], "new_edits": false});
    let a = s.post(Who::Admin, "/_users/_bulk_docs", body).await;
    seen.expect("a conflicting revision", &a, 201, "");
    let a = until_status(s, "conflict seen", 401, |_| s.get(me, "/_session")).await;
    seen.expect("basic login in conflict", &a, 401, "unauthorized");
    assert!(
        a.body["reason"].as_str().unwrap().contains("conflict"),
        "{}",
        a.body
    );
    let a = s.login(&jchris, "funnybone", "").await;
    seen.expect("cookie login in conflict", &a, 401, "unauthorized");
    let a = s.get(Who::Admin, &format!("{path}?conflicts=true")).await;
    assert_eq!(
        a.body["_conflicts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.body
    );
    let winner = a.body["_rev"].as_str().unwrap().to_owned();
    let a = s.delete(Who::Admin, &format!("{path}?rev={winner}")).await;
    seen.expect("the admin deletes the winner", &a, 200, "");
    // The other revision is the user now (same password), out of conflict.
    let a = until_status(s, "deletion seen", 200, |_| s.get(me, "/_session")).await;
    seen.expect("basic login after the conflict", &a, 200, "");
    seen.answers
}

/// users_db_test.exs and cookie_auth_test.exs where `_users` is as CouchDB 3.5.0 creates it
/// (admins only): `_session`'s info, basic auth without a cookie, `_:_`, proxy and JWT
/// headers ignored, the `_auth` rules
/// (duplicates, `_` names, ids, `:`, `type`, `roles`, system roles), roles given by the
/// admin, login redirects and bodies, a password starting with `:`, TOTP users, malformed
/// and forged cookies, and a user document in conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_db_and_cookie_auth_as_couchdb() {
    let tag = run_tag();
    let serve = TestServe::start().await;
    let ours = users_db(&Srv::settee(&serve, &tag)).await;
    if let Some(couch) = Srv::couch(&tag) {
        let theirs = users_db(&couch).await;
        assert_agree(&ours, &theirs, &[]);
    }
}
