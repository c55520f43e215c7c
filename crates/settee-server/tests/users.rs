//! Users of `settee serve` through HTTP (issue 20): the `_users` database (signup, login by
//! basic auth and cookie, a user's own document only, no roles of their own making,
//! passwords stored as PBKDF2 only), roles in `_security`, per-user databases, the failed
//! login lockout (finding 6) and the session cookie's attributes. One test plays the same
//! sequence against the shared CouchDB 3.5.0 when `SETTEE_TEST_COUCHDB_URL` is set.
#![allow(clippy::unwrap_used)]

/// The users sequence played on CouchDB 3.5.0 too, answers compared.
#[path = "users/against_couchdb.rs"]
mod against_couchdb;
mod common;

use common::{TestServe, ADMIN, PASSWORD};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use settee_server::{PerUser, SameSite, ServerOptions};

/// The PBKDF2 rounds these servers write (a stored user document shows them).
const ITERATIONS: u32 = 10;

/// The kit's server with [`ITERATIONS`] rounds, tuned.
async fn serve(tune: impl FnOnce(&mut ServerOptions)) -> TestServe {
    TestServe::start_with(|o| {
        o.password_iterations = ITERATIONS;
        tune(o)
    })
    .await
}

/// Who sends a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Cookie(&'a str),
}

/// One side of the tests: a base URL, an admin and a client.
struct Side {
    url: String,
    admin: (String, String),
    http: Client,
}

impl Side {
    fn of(s: &TestServe) -> Side {
        Side {
            url: format!("http://{}", s.server.local_addr()),
            admin: (ADMIN.into(), PASSWORD.into()),
            http: s.http.clone(),
        }
    }

    async fn send(
        &self,
        who: As<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Accept", "application/json");
        r = match who {
            As::Anonymous => r,
            As::Basic(n, p) => r.basic_auth(n, Some(p)),
            As::Cookie(c) => r.header("Cookie", format!("AuthSession={c}")),
        };
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn call(
        &self,
        who: As<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let res = self.send(who, method, path, body).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (n, p) = (self.admin.0.clone(), self.admin.1.clone());
        self.call(As::Basic(&n, &p), method, path, body).await
    }

    /// Deletes user `name`'s document (as the admin), which must succeed.
    async fn delete_user(&self, name: &str) {
        let path = format!("/_users/org.couchdb.user:{name}");
        let (_, doc) = self.admin(Method::GET, &path, None).await;
        let rev = doc["_rev"].as_str().unwrap();
        let (st, b) = self
            .admin(Method::DELETE, &format!("{path}?rev={rev}"), None)
            .await;
        assert_eq!(st, 200, "{b}");
    }

    /// `POST /_session`: the status and the cookie value given.
    async fn login(&self, name: &str, password: &str) -> (u16, Option<String>, Value) {
        let res = self
            .send(
                As::Anonymous,
                Method::POST,
                "/_session",
                Some(json!({"name": name, "password": password})),
            )
            .await;
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("AuthSession="))
            .and_then(|v| v.split(';').next())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        (status, cookie, res.json().await.unwrap_or(Value::Null))
    }

    async fn create_user(&self, name: &str, password: &str, roles: &[&str]) {
        let (s, b) = self
            .admin(
                Method::PUT,
                &format!("/_users/org.couchdb.user:{name}"),
                Some(json!({"name": name, "type": "user", "roles": roles, "password": password})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
}

fn user_doc(name: &str, password: &str, roles: &[&str]) -> Value {
    json!({"_id": format!("org.couchdb.user:{name}"), "name": name, "type": "user",
        "roles": roles, "password": password})
}

/// Opens `_users` to members as CouchDB's users_db_security test does, so that anyone
/// may sign up and users may change their own document.
async fn open_users_db(side: &Side) {
    let (s, b) = side
        .admin(
            Method::PUT,
            "/_users/_security",
            Some(json!({"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_own_document_and_password_change() {
    let s = serve(|o| o.users_db_security_editable = true).await;
    let side = Side::of(&s);
    open_users_db(&side).await;
    // Anonymous signup; roles are the admin's to give.
    let (st, b) = side
        .call(
            As::Anonymous,
            Method::POST,
            "/_users",
            Some(user_doc("eve", "x", &["boss"])),
        )
        .await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (403, Some("Only _admin may set roles"))
    );
    let (st, b) = side
        .call(
            As::Anonymous,
            Method::POST,
            "/_users",
            Some(user_doc("tom", "mp3", &[])),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    // The password is not stored, its PBKDF2 hash is (CouchDB 3.5's fields).
    let (st, doc) = side
        .admin(Method::GET, "/_users/org.couchdb.user:tom", None)
        .await;
    assert_eq!(st, 200);
    assert!(doc.get("password").is_none(), "{doc}");
    assert_eq!(doc["password_scheme"], "pbkdf2");
    assert_eq!(doc["pbkdf2_prf"], "sha256");
    assert_eq!(doc["iterations"], ITERATIONS);
    assert_eq!(doc["derived_key"].as_str().unwrap().len(), 64);
    assert_eq!(doc["salt"].as_str().unwrap().len(), 32);
    let raw = std::fs::read_dir(s.dir.path().join("data/_users")).unwrap();
    assert!(raw.count() > 0);

    // Basic auth: wrong password 401, right one gives the user in _session.
    let (st, b) = side
        .call(As::Basic("tom", "mp4"), Method::GET, "/_session", None)
        .await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (401, Some("Name or password is incorrect."))
    );
    let (st, b) = side
        .call(As::Basic("tom", "mp3"), Method::GET, "/_session", None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(b["userCtx"], json!({"name": "tom", "roles": []}));
    assert_eq!(b["info"]["authenticated"], "default");
    // Cookie.
    let (st, cookie, b) = side.login("tom", "mp3").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b, json!({"ok": true, "name": "tom", "roles": []}));
    let cookie = cookie.unwrap();
    let (_, b) = side
        .call(As::Cookie(&cookie), Method::GET, "/_session", None)
        .await;
    assert_eq!(b["userCtx"]["name"], "tom");
    assert_eq!(b["info"]["authenticated"], "cookie");

    // Own document only; no listing of `_users`.
    let tom = As::Basic("tom", "mp3");
    let (st, own) = side
        .call(tom, Method::GET, "/_users/org.couchdb.user:tom", None)
        .await;
    assert_eq!(st, 200);
    side.create_user("spike", "foobar", &["team"]).await;
    let (st, _) = side
        .call(tom, Method::GET, "/_users/org.couchdb.user:spike", None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = side
        .call(
            As::Anonymous,
            Method::GET,
            "/_users/org.couchdb.user:tom",
            None,
        )
        .await;
    assert_eq!(st, 404);
    for path in ["/_users/_all_docs", "/_users/_changes"] {
        let (st, b) = side.call(tom, Method::GET, path, None).await;
        assert_eq!(
            (st, b["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }
    let (st, b) = side
        .call(tom, Method::GET, "/_users/_design/_auth", None)
        .await;
    assert!(st == 403 || st == 404, "{st} {b}");
    // Not someone else's document, not roles of their own.
    let mut spike = user_doc("spike", "mine-now", &["team"]);
    spike["_rev"] = json!("1-x");
    let (st, _) = side
        .call(
            tom,
            Method::PUT,
            "/_users/org.couchdb.user:spike",
            Some(spike),
        )
        .await;
    assert_eq!(st, 404);
    let mut promoted = own.clone();
    promoted["roles"] = json!(["boss"]);
    let (st, b) = side
        .call(
            tom,
            Method::PUT,
            "/_users/org.couchdb.user:tom",
            Some(promoted),
        )
        .await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (403, Some("Only _admin may edit roles"))
    );

    // A new password: the old one and cookies made with it stop working.
    let mut changed = own.clone();
    changed["password"] = json!("couch");
    let (st, b) = side
        .call(
            tom,
            Method::PUT,
            "/_users/org.couchdb.user:tom",
            Some(changed),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, _) = side.call(tom, Method::GET, "/_session", None).await;
    assert_eq!(st, 401);
    let (_, b) = side
        .call(As::Cookie(&cookie), Method::GET, "/_session", None)
        .await;
    assert_eq!(
        b["userCtx"]["name"],
        Value::Null,
        "the old cookie is dead: {b}"
    );
    let (_, b) = side
        .call(As::Basic("tom", "couch"), Method::GET, "/_session", None)
        .await;
    assert_eq!(b["userCtx"]["name"], "tom");
    // A deleted user's cookie is dead too.
    let (_, cookie, _) = side.login("tom", "couch").await;
    let cookie = cookie.unwrap();
    side.delete_user("tom").await;
    let (_, b) = side
        .call(As::Cookie(&cookie), Method::GET, "/_session", None)
        .await;
    assert_eq!(b["userCtx"]["name"], Value::Null, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_admins_by_name_and_role() {
    let s = serve(|_| {}).await;
    let side = Side::of(&s);
    side.create_user("ann", "a-pw", &["team"]).await;
    side.create_user("bob", "b-pw", &[]).await;
    let (st, _) = side.admin(Method::PUT, "/teamdb", None).await;
    assert_eq!(st, 201);
    let sec = json!({"members": {"roles": ["team"]}, "admins": {"names": ["bob"]}});
    let (st, _) = side
        .admin(Method::PUT, "/teamdb/_security", Some(sec))
        .await;
    assert_eq!(st, 200);
    let (st, _) = side
        .admin(Method::PUT, "/teamdb/d", Some(json!({"v": 1})))
        .await;
    assert_eq!(st, 201);
    let (ann, bob, carl) = (
        As::Basic("ann", "a-pw"),
        As::Basic("bob", "b-pw"),
        As::Anonymous,
    );
    assert_eq!(side.call(ann, Method::GET, "/teamdb/d", None).await.0, 200);
    assert_eq!(side.call(carl, Method::GET, "/teamdb/d", None).await.0, 401);
    // bob is a database admin by name: member too, and may write design documents.
    assert_eq!(side.call(bob, Method::GET, "/teamdb/d", None).await.0, 200);
    let ddoc = json!({"views": {"v": {"map": "function(d){emit(d._id)}"}}});
    let (st, b) = side
        .call(ann, Method::PUT, "/teamdb/_design/x", Some(ddoc.clone()))
        .await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (403, Some("You are not a db or server admin."))
    );
    assert_eq!(
        side.call(bob, Method::PUT, "/teamdb/_design/x", Some(ddoc))
            .await
            .0,
        201
    );
    // A member by role only: another user without the role is refused.
    let sec = json!({"members": {"roles": ["team"]}});
    side.admin(Method::PUT, "/teamdb/_security", Some(sec))
        .await;
    let (st, b) = side.call(bob, Method::GET, "/teamdb/d", None).await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (403, Some("You are not allowed to access this db."))
    );
    // Legacy readers, with users.
    let sec = json!({"readers": {"names": ["bob"]}});
    side.admin(Method::PUT, "/teamdb/_security", Some(sec))
        .await;
    assert_eq!(side.call(bob, Method::GET, "/teamdb/d", None).await.0, 200);
    assert_eq!(side.call(ann, Method::GET, "/teamdb/d", None).await.0, 403);
    // _users' own security object is not editable by default (CouchDB 3.5).
    let (st, b) = side
        .admin(
            Method::PUT,
            "/_users/_security",
            Some(json!({"members": {}})),
        )
        .await;
    assert_eq!(
        (st, b["reason"].as_str()),
        (
            403,
            Some("You can't edit the security object of the user database.")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peruser_database_is_created_private_and_deleted() {
    let s = serve(|o| o.peruser = Some(PerUser { delete_dbs: true })).await;
    let side = Side::of(&s);
    side.create_user("ann", "a-pw", &[]).await;
    side.create_user("bob", "b-pw", &[]).await;
    let db = "/userdb-616e6e"; // hex of "ann"
    let (st, sec) = side
        .admin(Method::GET, &format!("{db}/_security"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(sec["members"]["names"], json!(["ann"]));
    assert_eq!(sec["admins"]["names"], json!(["ann"]));
    let ann = As::Basic("ann", "a-pw");
    let (st, _) = side
        .call(
            ann,
            Method::PUT,
            &format!("{db}/note"),
            Some(json!({"t": 1})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = side
        .call(
            As::Basic("bob", "b-pw"),
            Method::GET,
            &format!("{db}/note"),
            None,
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(
        side.call(As::Anonymous, Method::GET, &format!("{db}/note"), None)
            .await
            .0,
        401
    );
    side.delete_user("ann").await;
    assert_eq!(side.admin(Method::GET, db, None).await.0, 404);
}

/// Issue 20, finding 6: after 5 failures a name is locked for that address, even with the
/// right password, by basic auth and `_session` alike; other names and addresses are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_after_five_failures() {
    let s = serve(|_| {}).await;
    let side = Side::of(&s);
    side.create_user("ann", "a-pw", &[]).await;
    for _ in 0..5 {
        let (st, _) = side
            .call(As::Basic("ann", "guess"), Method::GET, "/_session", None)
            .await;
        assert_eq!(st, 401);
    }
    let locked = json!({"error": "forbidden",
        "reason": "Account is temporarily locked due to multiple authentication failures"});
    let (st, b) = side
        .call(As::Basic("ann", "a-pw"), Method::GET, "/_session", None)
        .await;
    assert_eq!((st, &b), (403, &locked));
    let (st, _, b) = side.login("ann", "a-pw").await;
    assert_eq!((st, &b), (403, &locked));
    // The admin and another address are not locked.
    let (st, _) = side.admin(Method::GET, "/_session", None).await;
    assert_eq!(st, 200);
    let other = Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let res = other
        .get(format!("{}/_session", side.url))
        .basic_auth("ann", Some("a-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Configured admins are locked out the same way.
    for _ in 0..5 {
        side.call(As::Basic(ADMIN, "nope"), Method::GET, "/_session", None)
            .await;
    }
    assert_eq!(side.admin(Method::GET, "/_session", None).await.0, 403);
}

/// The `Set-Cookie` of the admin's `POST /_session` on `s`.
async fn admin_login_cookie(s: &TestServe) -> String {
    let res = Side::of(s)
        .send(
            As::Anonymous,
            Method::POST,
            "/_session",
            Some(json!({"name": ADMIN, "password": PASSWORD})),
        )
        .await;
    res.headers()["set-cookie"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_attributes() {
    let s = serve(|_| {}).await;
    let set = admin_login_cookie(&s).await;
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    let s = serve(|o| {
        o.same_site = SameSite::Strict;
        o.secure_cookie = true;
    })
    .await;
    let set = admin_login_cookie(&s).await;
    assert!(
        set.contains("; SameSite=Strict") && set.contains("; Secure"),
        "{set}"
    );
}
