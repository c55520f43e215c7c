//! CouchDB's own tests of security, users, cookie auth and CORS as a checklist for
//! `settee serve` (issue 20, "How it is shown"). Each test here plays the cases of one of
//! Apache CouchDB's test files (`test/elixir/test/*.exs`, and the CORS eunit tests
//! `couchdb_cors_tests.erl`/`chttpd_cors_test.erl`) that the other test files do not
//! already cover, with the outcomes those files expect. `docs/security.md` maps every case of
//! those files to the test that shows it, or says why Settee leaves it out.
//!
//! Where the shared CouchDB 3.5.0 can play the case as configured (`SETTEE_TEST_SERVER_KIND=
//! couchdb`: its defaults, lockout off), the same sequence runs on it too: the expectations
//! are asserted on both servers, and every answer must agree but for the differences listed
//! with their reasons. Cases that need CouchDB configured otherwise (an editable `_users`
//! security object, CORS, lockout modes) run on Settee alone against what CouchDB's tests
//! expect. Names are unique per run, and what a run creates on CouchDB is deleted when its
//! guard drops (also when the test fails).
//!
//! The requests are sent with this file's `Srv` rather than `common::Side`, which always
//! sends the admin's basic credentials: these cases need anonymous, cookie and raw
//! `Authorization` requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServe, ADMIN, PASSWORD};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use settee_server::{Admin, Cors, Lockout, LockoutMode, Server, ServerOptions};

/// Who sends a request.
#[derive(Clone, Copy)]
enum Who<'a> {
    Anonymous,
    Admin,
    Basic(&'a str, &'a str),
    /// An `AuthSession` cookie value.
    Cookie(&'a str),
    /// A raw `Authorization` header.
    Authorization(&'a str),
}

/// An answer: status, headers and the JSON body (`Null` when empty or not JSON).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `AuthSession` value of a `Set-Cookie`, if one was set and is not empty.
    fn cookie(&self) -> Option<String> {
        self.header("set-cookie")?
            .strip_prefix("AuthSession=")?
            .split(';')
            .next()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// What a run created on the shared CouchDB, deleted on drop (also when a test panics),
/// with the blocking requests of `settee_testkit` (a `Drop` cannot await).
struct Leftovers {
    server: settee_testkit::TestServer,
    users: Mutex<Vec<String>>,
    dbs: Mutex<Vec<String>>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let server = self.server.clone();
        let users = std::mem::take(&mut *self.users.lock().unwrap_or_else(|p| p.into_inner()));
        let dbs = std::mem::take(&mut *self.dbs.lock().unwrap_or_else(|p| p.into_inner()));
        // A thread: this may run on a tokio worker, which must not block for long.
        let done = std::thread::spawn(move || {
            for db in dbs {
                server.raw_request("DELETE", &format!("/{db}"), None);
            }
            for name in users {
                let path = format!("/_users/org.couchdb.user:{name}");
                // A user left in conflict has a second leaf: delete until none is left.
                for _ in 0..4 {
                    let (status, body) = server.raw_request("GET", &path, None);
                    if status != 200 {
                        break;
                    }
                    let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let Some(rev) = doc["_rev"].as_str() else {
                        break;
                    };
                    server.raw_request("DELETE", &format!("{path}?rev={rev}"), None);
                }
            }
        });
        if done.join().is_err() {
            eprintln!("couchdb_checklist: cleaning up the CouchDB side failed");
        }
    }
}

/// One server the checklist runs on.
struct Srv {
    name: &'static str,
    url: String,
    admin: (String, String),
    http: Client,
    /// Prefix of every user and database name of this run.
    tag: String,
    /// On CouchDB: what to delete afterwards.
    leftovers: Option<Leftovers>,
}

impl Srv {
    fn settee(serve: &TestServe, tag: &str) -> Srv {
        Srv {
            name: "settee",
            url: serve.url(),
            admin: (ADMIN.into(), PASSWORD.into()),
            http: client(),
            tag: tag.into(),
            leftovers: None,
        }
    }

    /// The shared CouchDB, when the tests run against an Apache CouchDB
    /// (`SETTEE_TEST_SERVER_KIND=couchdb`; pouchdb-server has no `_users` or `_security`).
    fn couch(tag: &str) -> Option<Srv> {
        let kind = std::env::var("SETTEE_TEST_SERVER_KIND").unwrap_or_default();
        if kind != "couchdb" || std::env::var("SETTEE_TEST_COUCHDB_URL").is_err() {
            eprintln!("no Apache CouchDB (SETTEE_TEST_SERVER_KIND=couchdb): Settee's side only");
            return None;
        }
        let server = settee_testkit::TestServer::get();
        let (user, password) = server.credentials()?;
        Some(Srv {
            name: "couchdb",
            url: server.url().trim_end_matches('/').to_owned(),
            admin: (user.into(), password.into()),
            http: client(),
            tag: tag.into(),
            leftovers: Some(Leftovers {
                server: server.clone(),
                users: Mutex::new(Vec::new()),
                dbs: Mutex::new(Vec::new()),
            }),
        })
    }

    fn is_couch(&self) -> bool {
        self.leftovers.is_some()
    }

    /// A user name unique to this run.
    fn user(&self, base: &str) -> String {
        format!("{}{base}", self.tag)
    }

    async fn send(
        &self,
        who: Who<'_>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Accept", "application/json");
        r = match who {
            Who::Anonymous => r,
            Who::Admin => r.basic_auth(&self.admin.0, Some(&self.admin.1)),
            Who::Basic(n, p) => r.basic_auth(n, Some(p)),
            Who::Cookie(c) => r.header("Cookie", format!("AuthSession={c}")),
            Who::Authorization(v) => r.header("Authorization", v),
        };
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn with_json(&self, who: Who<'_>, method: Method, path: &str, body: Value) -> Answer {
        let ctype = [("Content-Type", "application/json")];
        self.send(who, method, path, &ctype, Some(body.to_string()))
            .await
    }

    async fn get(&self, who: Who<'_>, path: &str) -> Answer {
        self.send(who, Method::GET, path, &[], None).await
    }

    async fn delete(&self, who: Who<'_>, path: &str) -> Answer {
        self.send(who, Method::DELETE, path, &[], None).await
    }

    async fn put(&self, who: Who<'_>, path: &str, body: Value) -> Answer {
        self.with_json(who, Method::PUT, path, body).await
    }

    async fn post(&self, who: Who<'_>, path: &str, body: Value) -> Answer {
        self.with_json(who, Method::POST, path, body).await
    }

    /// `POST /_session{query}` with a JSON body.
    async fn login(&self, name: &str, password: &str, query: &str) -> Answer {
        let body = json!({"name": name, "password": password});
        let path = format!("/_session{query}");
        self.post(Who::Anonymous, &path, body).await
    }

    /// Creates a user as the admin (and has it deleted afterwards on CouchDB).
    async fn create_user(&self, name: &str, password: &str, roles: &[&str]) {
        self.create_user_doc(name, json!({"password": password, "roles": roles}))
            .await;
    }

    /// Creates user `name` with these fields besides `name` and `type`.
    async fn create_user_doc(&self, name: &str, fields: Value) {
        if let Some(l) = &self.leftovers {
            l.users.lock().unwrap().push(name.to_owned());
        }
        let mut doc = json!({"name": name, "type": "user"});
        for (k, v) in fields.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let path = format!("/_users/org.couchdb.user:{name}");
        let a = self.put(Who::Admin, &path, doc).await;
        assert_eq!(a.status, 201, "{}: creating {name}: {}", self.name, a.body);
    }

    /// A new database `{tag}-{base}` (admins-only, as CouchDB 3 creates them).
    async fn create_db(&self, base: &str) -> String {
        let name = format!("{}-{base}", self.tag);
        if let Some(l) = &self.leftovers {
            l.dbs.lock().unwrap().push(name.clone());
        }
        let a = self
            .send(Who::Admin, Method::PUT, &format!("/{name}"), &[], None)
            .await;
        assert_eq!(a.status, 201, "{}: creating {name}: {}", self.name, a.body);
        name
    }

    async fn set_security(&self, db: &str, sec: Value) {
        let a = self.put(Who::Admin, &format!("/{db}/_security"), sec).await;
        assert_eq!(
            a.status, 200,
            "{}: _security of {db}: {}",
            self.name, a.body
        );
    }

    /// Asserts an answer's status (and `error`, unless empty).
    #[track_caller]
    fn check(&self, case: &str, a: &Answer, status: u16, error: &str) {
        let shown = format!("{}: {case}: {} {}", self.name, a.status, a.body);
        assert_eq!(a.status, status, "{shown}");
        if !error.is_empty() {
            assert_eq!(a.body["error"], error, "{shown}");
        }
    }
}

/// A client that shows redirects instead of following them.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The answers of one server, each checked against what CouchDB's test expects and kept
/// (made comparable) for the comparison of the two servers.
struct Seen<'a> {
    srv: &'a Srv,
    answers: Vec<(String, Value)>,
}

impl<'a> Seen<'a> {
    fn new(srv: &'a Srv) -> Seen<'a> {
        Seen {
            srv,
            answers: Vec::new(),
        }
    }

    /// Asserts the status (and `error` name, unless empty) CouchDB's test expects, and
    /// keeps the status, `error` and `reason` for the comparison.
    #[track_caller]
    fn expect(&mut self, case: &str, a: &Answer, status: u16, error: &str) {
        self.srv.check(case, a, status, error);
        let kept = json!([a.status, a.body.get("error"), a.body.get("reason")]);
        self.keep(case, kept);
    }

    /// Keeps a value for the comparison, with this run's names and the admin's name
    /// replaced by placeholders.
    fn keep(&mut self, case: &str, value: Value) {
        let text = value
            .to_string()
            .replace(&self.srv.tag, "<tag>")
            .replace(&format!("'{}'", self.srv.admin.0), "'<admin>'");
        let v = serde_json::from_str(&text).unwrap();
        self.answers.push((case.to_owned(), v));
    }
}

/// Asserts that the two servers answered every case alike, but for `known` differences:
/// `(case, why)`.
fn assert_agree(settee: &[(String, Value)], couch: &[(String, Value)], known: &[(&str, &str)]) {
    let cases = |s: &[(String, Value)]| s.iter().map(|a| a.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        cases(settee),
        cases(couch),
        "the servers played different cases"
    );
    let differ: Vec<String> = settee
        .iter()
        .zip(couch)
        .filter(|((case, ours), (_, theirs))| {
            ours != theirs && !known.iter().any(|(k, _)| k == case)
        })
        .map(|((case, ours), (_, theirs))| format!("{case}: settee {ours}, couchdb {theirs}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} differences from CouchDB 3.5.0:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

fn run_tag() -> String {
    format!("chk{:08x}", rand::random::<u32>())
}

/// A Settee server with an admin, a data directory and cheap PBKDF2, tuned.
async fn serve_with(tune: impl FnOnce(&mut ServerOptions)) -> TestServe {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().join("data")),
        admin: Some(Admin {
            name: ADMIN.into(),
            password: PASSWORD.into(),
        }),
        password_iterations: 1000,
        ..Default::default()
    };
    tune(&mut opts);
    TestServe {
        server: Server::start(opts).await.unwrap(),
        dir,
        http: client(),
    }
}

/// Sends `attempt(n)` (n = 0, 1, ...) until it answers `want`, polling every 20 ms:
/// CouchDB applies a new design document's `validate_doc_update`, and sees a changed user
/// document at login, a moment after the write (its caches follow the changes feeds).
/// Settee answers at once. Fails with the last answer after a generous bound.
async fn until_status<F, Fut>(s: &Srv, case: &str, want: u16, mut attempt: F) -> Answer
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        let a = attempt(n).await;
        if a.status == want {
            return a;
        }
        let shown = format!("{}: {case}: still {} {}", s.name, a.status, a.body);
        assert!(Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!("the loop returns or fails")
}

/// Waits until `db`'s validation refuses a document without an author from `who`
/// (writing `{x: 1}` to fresh ids).
async fn until_validated(s: &Srv, who: Who<'_>, db: &str) {
    until_status(s, "validation in force", 403, |n| {
        let path = format!("/{db}/probe{n}");
        async move { s.put(who, &path, json!({"x": 1})).await }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// security_validation_test.exs
// ---------------------------------------------------------------------------------------

const AUTHOR_VDU: &str = r#"function (newDoc, oldDoc, userCtx, secObj) {
  if (secObj.admin_override) {
    if (userCtx.roles.indexOf('_admin') != -1) { return true; }
  }
  if (!newDoc._deleted && !newDoc.author) {
    throw {forbidden: "Documents must have an author field"};
  }
  if (oldDoc && oldDoc.author != userCtx.name) {
    throw {unauthorized: "You are '" + userCtx.name + "', not the author '" + oldDoc.author + "' of this document."};
  }
}"#;

fn author_ddoc() -> Value {
    json!({"_id": "_design/test", "language": "javascript", "validate_doc_update": AUTHOR_VDU})
}

async fn security_validation(s: &Srv) -> Vec<(String, Value)> {
    let mut seen = Seen::new(s);
    let (tom, jerry, spike) = (s.user("tom"), s.user("jerry"), s.user("spike"));
    s.create_user(&tom, "cat", &[]).await;
    s.create_user(&jerry, "mouse", &[]).await;
    s.create_user(&spike, "dog", &[]).await;
    let (t, j, sp) = (
        Who::Basic(&tom, "cat"),
        Who::Basic(&jerry, "mouse"),
        Who::Basic(&spike, "dog"),
    );
    let db = s.create_db("secval").await;
    let dbp = format!("/{db}");

    // "Saving document using the wrong credentials", "Force basic login"
    let wrong = Who::Basic(&spike, "cat");
    let a = s.post(wrong, &dbp, json!({"foo": 1})).await;
    seen.expect("wrong credentials", &a, 401, "unauthorized");
    let a = s.get(wrong, "/_session?basic=true").await;
    seen.expect("basic=true, wrong password", &a, 401, "unauthorized");
    let a = s.get(Who::Anonymous, "/_session?basic=true").await;
    seen.expect("basic=true, anonymous", &a, 401, "unauthorized");
    assert_eq!(a.body["reason"], "Please login.", "{}", s.name);
    // "_session API"
    let a = s.get(j, "/_session").await;
    seen.expect("_session as jerry", &a, 200, "");
    assert_eq!(a.body["userCtx"], json!({"name": jerry, "roles": []}));
    // "Non-admin user cannot save a ddoc"
    let a = s.post(j, &dbp, author_ddoc()).await;
    seen.expect("jerry posts a design document", &a, 403, "forbidden");
    // "Ddoc writes with admin and replication contexts"
    s.set_security(&db, json!({"admins": {"names": [jerry]}}))
        .await;
    let a = s.post(Who::Admin, &dbp, author_ddoc()).await;
    seen.expect("admin posts the design document", &a, 201, "");
    let mut replicated = author_ddoc();
    replicated["_rev"] = json!("2-642e20f96624a0aae6025b4dba0c6fb2");
    replicated["foo"] = json!("bar");
    let a = s
        .put(
            t,
            &format!("{dbp}/_design/test?new_edits=false"),
            replicated,
        )
        .await;
    seen.expect("tom replicates a design document", &a, 403, "forbidden");
    // "try to set a wrong value for _security": the test expects 400; CouchDB 3.5.0
    // answers 500 (`no_majority`), Settee 400.
    let a = s
        .put(Who::Admin, &format!("{dbp}/_security"), json!(["foo"]))
        .await;
    let want = if s.is_couch() { 500 } else { 400 };
    seen.expect("_security set to an array", &a, want, "");

    // "Author presence and user security"
    let db = s.create_db("author").await;
    let (dbp, doc_path) = (format!("/{db}"), format!("/{db}/test_doc"));
    let sec = json!({"admin_override": false, "admins": {"names": [jerry]}});
    s.set_security(&db, sec.clone()).await;
    let a = s.post(Who::Admin, &dbp, author_ddoc()).await;
    seen.expect("the author design document", &a, 201, "");
    until_validated(s, j, &db).await;
    let a = s.put(j, &doc_path, json!({"foo": 1})).await;
    seen.expect("jerry, no author", &a, 403, "forbidden");
    assert_eq!(a.body["reason"], "Documents must have an author field");
    let a = s
        .put(j, &doc_path, json!({"foo": 1, "author": jerry}))
        .await;
    seen.expect("jerry writes as the author", &a, 201, "");
    let mut doc = s.get(Who::Admin, &doc_path).await.body;
    let a = s.post(t, &dbp, json!({"foo": 1})).await;
    seen.expect("tom, no author", &a, 403, "forbidden");
    doc["foo"] = json!(3);
    let a = s.put(Who::Admin, &doc_path, doc.clone()).await;
    seen.expect("admin without admin_override", &a, 401, "unauthorized");
    let mut sec_on = sec.clone();
    sec_on["admin_override"] = json!(true);
    s.set_security(&db, sec_on).await;
    doc["author"] = json!(tom);
    let a = s.put(Who::Admin, &doc_path, doc.clone()).await;
    seen.expect("admin_override: the author becomes tom", &a, 201, "");
    doc["_rev"] = a.body["rev"].clone();
    doc["foo"] = json!("asdf");
    let a = s.put(t, &doc_path, doc.clone()).await;
    seen.expect("tom updates his document", &a, 201, "");
    doc["_rev"] = a.body["rev"].clone();
    let rev = doc["_rev"].as_str().unwrap().to_owned();
    let a = s.delete(j, &format!("{doc_path}?rev={rev}")).await;
    seen.expect("jerry deletes tom's document", &a, 401, "unauthorized");
    doc["foo"] = json!(4);
    let a = s.put(Who::Admin, &doc_path, doc.clone()).await;
    seen.expect("admin with admin_override", &a, 201, "");
    s.set_security(&db, sec).await;
    let docs =
        json!([{"_id": "bahbah", "author": jerry, "foo": "bar"}, {"_id": "fahfah", "foo": "baz"}]);
    let a = s
        .post(j, &format!("{dbp}/_bulk_docs"), json!({"docs": docs}))
        .await;
    seen.expect("jerry's _bulk_docs", &a, 201, "");
    assert!(a.body[0]["rev"].is_string() && a.body[0].get("error").is_none());
    assert!(a.body[1].get("rev").is_none(), "{}", a.body);
    seen.keep(
        "_bulk_docs rows",
        json!([a.body[0]["ok"], a.body[1]["error"]]),
    );
    for (id, want) in [("bahbah", 200), ("fahfah", 404)] {
        let a = s.get(Who::Admin, &format!("{dbp}/{id}")).await;
        seen.expect(&format!("{id} after _bulk_docs"), &a, want, "");
    }

    // "Author presence and user security when replicated": a replicated revision goes
    // through the same function (CouchDB's replicator writes with `new_edits=false`).
    let db = s.create_db("replicated").await;
    let dbp = format!("/{db}");
    s.set_security(&db, json!({"admins": {"names": [jerry]}}))
        .await;
    let mut parents = Vec::new();
    for d in [
        json!({"_id": "foo1", "value": "a", "author": tom}),
        json!({"_id": "foo2", "value": "a", "author": spike}),
    ] {
        let a = s.post(Who::Admin, &dbp, d).await;
        s.check("a document to edit", &a, 201, "");
        parents.push(a.body["rev"].as_str().unwrap().to_owned());
    }
    let a = s.post(Who::Admin, &dbp, author_ddoc()).await;
    s.check("the design document", &a, 201, "");
    until_validated(s, Who::Admin, &db).await;
    let child = |id: &str, parent: &str, mut d: Value| {
        let (_, hash) = parent.split_once('-').unwrap();
        d["_id"] = json!(id);
        d["_rev"] = json!(format!("2-{}", "b".repeat(32)));
        d["_revisions"] = json!({"start": 2, "ids": ["b".repeat(32), hash]});
        d
    };
    let docs = json!([
        {"_id": "bad2", "_rev": format!("1-{}", "c".repeat(32)), "value": "a"},
        child("foo1", &parents[0], json!({"value": "b", "author": tom})),
        child("foo2", &parents[1], json!({"value": "b", "author": spike})),
    ]);
    let body = json!({"docs": docs, "new_edits": false});
    let a = s.post(sp, &format!("{dbp}/_bulk_docs"), body).await;
    seen.expect("spike replicates three edits", &a, 201, "");
    let mut rows: Vec<Value> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["id"], r["error"]]))
        .collect();
    rows.sort_by_key(|r| r.to_string());
    let want = [
        json!(["bad2", "forbidden"]),
        json!(["foo1", "unauthorized"]),
    ];
    assert_eq!(rows, want, "{}: {}", s.name, a.body);
    seen.keep("replicated failures", json!(rows));
    let a = s.get(Who::Admin, &format!("{dbp}/bad2")).await;
    seen.expect("bad2 not written", &a, 404, "");
    for (id, value) in [("foo1", "a"), ("foo2", "b")] {
        let a = s.get(Who::Admin, &format!("{dbp}/{id}")).await;
        assert_eq!(a.body["value"], value, "{}: {id}: {}", s.name, a.body);
        seen.keep(&format!("{id} value"), a.body["value"].clone());
    }
    seen.answers
}

/// security_validation_test.exs: wrong credentials, forced basic login, `_session`, design
/// documents need a database admin (also replicated ones), a bad security object, and a
/// `validate_doc_update` that sees `userCtx` and `secObj` (`admin_override`) on edits,
/// deletions, `_bulk_docs` and replicated revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_validation_as_couchdb() {
    let tag = run_tag();
    let serve = TestServe::start().await;
    let ours = security_validation(&Srv::settee(&serve, &tag)).await;
    if let Some(couch) = Srv::couch(&tag) {
        let theirs = security_validation(&couch).await;
        let why = "CouchDB 3.5.0 answers 500 to a security object of the wrong shape";
        assert_agree(&ours, &theirs, &[("_security set to an array", why)]);
    }
}

// ---------------------------------------------------------------------------------------
// users_db_test.exs and cookie_auth_test.exs, on `_users` as CouchDB 3.5.0 has it
// ---------------------------------------------------------------------------------------

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
    let a = s.login(&jchris, "funnybone", "").await;
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
    let foo = s.user("foo@example.org");
    s.create_user(&foo, ":bar", &[]).await;
    let a = s.get(Who::Basic(&foo, ":bar"), "/_session").await;
    seen.expect("password starting with :", &a, 200, "");
    assert_eq!(a.body["userCtx"]["name"], foo.as_str());

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
/// (admins only): `_session`'s info, basic auth without a cookie, `_:_`, the `_auth` rules
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

// ---------------------------------------------------------------------------------------
// reader_acl_test.exs
// ---------------------------------------------------------------------------------------

async fn reader_acl(s: &Srv) -> Vec<(String, Value)> {
    let mut seen = Seen::new(s);
    let (bond, juanjo) = (s.user("bond@apache.org"), s.user("juanjo@apache.org"));
    s.create_user(&bond, "funnybone", &["top-secret"]).await;
    s.create_user(&juanjo, "funnybone", &[]).await;
    let (b, j) = (
        Who::Basic(&bond, "funnybone"),
        Who::Basic(&juanjo, "funnybone"),
    );
    let db = s.create_db("acl").await;
    let doc = format!("/{db}/baz");
    let a = s.put(Who::Admin, &doc, json!({"foo": "bar"})).await;
    s.check("the document", &a, 201, "");
    let club = json!({"roles": ["super-secret-club"], "names": ["joe", "barb"]});
    let club_and_bond =
        json!({"roles": ["super-secret-club", "top-secret"], "names": ["joe", "barb"]});
    let nobody = json!({"roles": [], "names": []});
    let cases: [(&str, Value, &[(&str, Who, u16)]); 5] = [
        (
            "unrestricted",
            json!({}),
            &[("juanjo", j, 200), ("bond", b, 200)],
        ),
        (
            "members by role and name",
            json!({"members": club}),
            &[("bond", b, 403)],
        ),
        (
            "database admins by role",
            json!({"admins": {"roles": ["top-secret"], "names": []}, "members": club}),
            &[("bond", b, 200), ("juanjo", j, 403)],
        ),
        (
            "members with bond's role",
            json!({"admins": nobody, "members": club_and_bond}),
            &[
                ("admin", Who::Admin, 200),
                ("bond", b, 200),
                ("anonymous", Who::Anonymous, 401),
            ],
        ),
        (
            "legacy readers",
            json!({"admins": nobody, "readers": club_and_bond}),
            &[("bond", b, 200), ("juanjo", j, 403)],
        ),
    ];
    for (case, sec, reads) in cases {
        s.set_security(&db, sec).await;
        for (who_name, who, want) in reads {
            let a = s.get(*who, &doc).await;
            seen.expect(&format!("{case}: {who_name} reads"), &a, *want, "");
        }
    }
    // "can't set non string reader names or roles": the test expects 500, which CouchDB
    // 3.5.0 answers (`no_majority`); Settee answers 400 bad_request.
    let bad = [
        json!({"members": {"roles": ["super-secret-club", {"top-secret": "awesome"}]}}),
        json!({"members": {"roles": ["top-secret"], "names": ["joe", 22]}}),
        json!({"members": {"roles": ["top-secret"], "names": "joe"}}),
        json!({"readers": {"names": "joe"}}),
    ];
    for (i, sec) in bad.into_iter().enumerate() {
        let a = s.put(Who::Admin, &format!("/{db}/_security"), sec).await;
        let want = if s.is_couch() { 500 } else { 400 };
        seen.expect(&format!("bad security object {i}"), &a, want, "");
    }
    // The last good object stays: bond still reads through `readers`, juanjo does not.
    let a = s.get(b, &doc).await;
    seen.expect("security kept after refusals: bond", &a, 200, "");
    let a = s.get(j, &doc).await;
    seen.expect("security kept after refusals: juanjo", &a, 403, "");
    // "members can query views"
    s.set_security(&db, json!({"admins": nobody, "members": club_and_bond}))
        .await;
    let ddoc = json!({"views": {"bar": {"map": "function(doc){emit(null, null)}"}}});
    let a = s.put(Who::Admin, &format!("/{db}/_design/foo"), ddoc).await;
    s.check("the view", &a, 201, "");
    let a = s.get(b, &format!("/{db}/_design/foo/_view/bar")).await;
    seen.expect("a member queries a view", &a, 200, "");
    seen.keep("view rows", json!(a.body["rows"].as_array().map(Vec::len)));
    seen.answers
}

/// reader_acl_test.exs: open databases, members and database admins by name and role,
/// server admins, legacy `readers`, security objects of the wrong shape, views for members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_acl_as_couchdb() {
    let tag = run_tag();
    let serve = TestServe::start().await;
    let ours = reader_acl(&Srv::settee(&serve, &tag)).await;
    if let Some(couch) = Srv::couch(&tag) {
        let theirs = reader_acl(&couch).await;
        let why = "CouchDB 3.5.0 answers 500 to a security object of the wrong shape";
        let known: Vec<(String, &str)> = (0..4)
            .map(|i| (format!("bad security object {i}"), why))
            .collect();
        let known: Vec<(&str, &str)> = known.iter().map(|(c, w)| (c.as_str(), *w)).collect();
        assert_agree(&ours, &theirs, &known);
    }
}

// ---------------------------------------------------------------------------------------
// users_db_security_test.exs and cookie_auth_test.exs with `_users` opened
// (`users_db_security_editable`, which the shared CouchDB does not have: Settee alone)
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// auth_lockout_test.exs
// ---------------------------------------------------------------------------------------

/// auth_lockout_test.exs, "do not lockout after multiple failed authentications": in warn
/// mode six failures are six 401s, and the right password still logs in. (Enforce mode is
/// `users.rs`'s `lockout_after_five_failures`; the shared CouchDB runs with lockout off.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_warn_mode_never_locks() {
    let serve = serve_with(|o| {
        o.lockout = Lockout {
            mode: LockoutMode::Warn,
            ..Default::default()
        }
    })
    .await;
    let s = Srv::settee(&serve, "");
    for n in 0..6 {
        let a = s.get(Who::Basic(ADMIN, "baz"), "/_all_dbs").await;
        s.check(&format!("failure {n}"), &a, 401, "unauthorized");
    }
    s.check(
        "the right password",
        &s.get(Who::Admin, "/_all_dbs").await,
        200,
        "",
    );
}

// ---------------------------------------------------------------------------------------
// couchdb_cors_tests.erl and chttpd_cors_test.erl (the shared CouchDB has CORS off)
// ---------------------------------------------------------------------------------------

/// CouchDB's `SUPPORTED_METHODS`, its default `[cors] methods`.
const SUPPORTED_METHODS: &str = "CONNECT, COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT, TRACE";

async fn cors_serve(origins: &[&str], credentials: bool) -> TestServe {
    let origins = origins.iter().map(|o| (*o).to_owned()).collect();
    let cors = Cors {
        origins,
        credentials,
        ..Default::default()
    };
    serve_with(|o| o.cors = Some(cors)).await
}

/// `OPTIONS path` as `who` with `Origin`, and `Access-Control-Request-Method` (unless
/// empty) and `-Headers` if given.
async fn options(
    s: &Srv,
    who: Who<'_>,
    path: &str,
    origin: &str,
    method: &str,
    asked: Option<&str>,
) -> Answer {
    let mut headers = vec![("Origin", origin)];
    if !method.is_empty() {
        headers.push(("Access-Control-Request-Method", method));
    }
    if let Some(h) = asked {
        headers.push(("Access-Control-Request-Headers", h));
    }
    s.send(who, Method::OPTIONS, path, &headers, None).await
}

/// The eunit CORS tests with `origins = http://example.com`, credentials off: simple and
/// preflight requests on the server and a database, with and without credentials;
/// origins that differ by port, scheme or case get nothing; methods and request headers
/// CouchDB does not allow end the preflight; attachments, ranges and `If-None-Match`
/// through CORS (COUCHDB-1689, COUCHDB-1697); then an origin with a port and credentials
/// on, and `*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_as_couchdb_eunit_tests() {
    const ORIGIN: &str = "http://example.com";
    let serve = cors_serve(&[ORIGIN], false).await;
    let s = Srv::settee(&serve, &run_tag());
    let db = s.create_db("cors").await;
    let allow_origin = |a: &Answer| a.header("access-control-allow-origin").map(str::to_owned);
    let exposed_by_couchdb = [
        "accept-ranges",
        "cache-control",
        "content-type",
        "etag",
        "server",
        "x-couch-request-id",
        "x-couch-update-newrev",
        "x-couchdb-body-time",
    ];
    for path in ["/".to_owned(), format!("/{db}")] {
        for who in [Who::Anonymous, Who::Admin] {
            // should_make_simple_request, should_make_origin_request_with_auth
            let a = s
                .send(who, Method::GET, &path, &[("Origin", ORIGIN)], None)
                .await;
            assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN), "{path}");
            assert_eq!(a.header("access-control-allow-credentials"), None, "{path}");
            let mut exposed: Vec<&str> = a
                .header("access-control-expose-headers")
                .unwrap()
                .split(", ")
                .collect();
            exposed.sort_unstable();
            assert_eq!(exposed, exposed_by_couchdb, "{path}");
            // should_make_preflight_request, should_make_preflight_request_with_auth
            let a = options(&s, who, &path, ORIGIN, "GET", None).await;
            assert_eq!(a.status, 204, "{path}");
            assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN));
            assert_eq!(
                a.header("access-control-allow-methods"),
                Some(SUPPORTED_METHODS)
            );
            assert_eq!(a.header("access-control-allow-headers"), Some(""));
            assert_eq!(a.header("access-control-max-age"), Some("600"));
            assert_eq!(a.header("access-control-allow-credentials"), None);
        }
        // Origins not listed, to the letter: another host, port, scheme or case.
        for other in [
            "http://127.0.0.1",
            "http://example.com:5984",
            "https://example.com",
            "http://ExAmPlE.CoM",
        ] {
            let a = options(&s, Who::Anonymous, &path, other, "GET", None).await;
            assert_eq!(allow_origin(&a), None, "{other}");
            let a = s
                .send(Who::Admin, Method::GET, &path, &[("Origin", other)], None)
                .await;
            assert_eq!(allow_origin(&a), None, "{other}");
        }
    }
    // test_good_headers_preflight_request, test_bad_headers_preflight_request, and a
    // method CouchDB does not list.
    let a = options(
        &s,
        Who::Anonymous,
        "/",
        ORIGIN,
        "GET",
        Some("accept-language"),
    )
    .await;
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("accept-language")
    );
    let asked = "Content-Type, X-Requested-With";
    let a = options(&s, Who::Anonymous, "/", ORIGIN, "POST", Some(asked)).await;
    assert_eq!(
        (a.status, a.header("access-control-allow-headers")),
        (204, Some(asked))
    );
    for (method, asked) in [("GET", Some("X-Not-An-Allowed-Headers")), ("PATCH", None)] {
        let a = options(&s, Who::Anonymous, "/", ORIGIN, method, asked).await;
        assert_ne!(a.status, 204, "{method} {asked:?}");
        assert_eq!(
            a.header("access-control-allow-methods"),
            None,
            "{method} {asked:?}"
        );
    }
    // COUCHDB-1689 and COUCHDB-1697.
    let att = format!("/{db}/doc/file.txt");
    let text = [("Content-Type", "text/plain")];
    let a = s
        .send(
            Who::Admin,
            Method::PUT,
            &att,
            &text,
            Some("hello, couch!".into()),
        )
        .await;
    s.check("an attachment", &a, 201, "");
    let etag = a.header("etag").unwrap().to_owned();
    let with = |name, value| [("Origin", ORIGIN), (name, value)];
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &format!("/{db}/doc?attachments=true"),
            &[("Origin", ORIGIN)],
            None,
        )
        .await;
    s.check("a document with its attachments", &a, 200, "");
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &att,
            &with("Range", "bytes=0-6"),
            None,
        )
        .await;
    s.check("a range", &a, 206, "");
    assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN));
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &format!("/{db}/doc"),
            &with("If-None-Match", &etag),
            None,
        )
        .await;
    s.check("If-None-Match", &a, 304, "");

    // should_make_prefligh_request_with_port / _with_scheme, with credentials on
    // (should_make_request_with_credentials: also on an `OPTIONS` that is no preflight).
    const WITH_PORT: &str = "https://example.com:5984";
    let serve = cors_serve(&[WITH_PORT], true).await;
    let s = Srv::settee(&serve, "");
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "GET", None).await;
    assert_eq!(allow_origin(&a).as_deref(), Some(WITH_PORT));
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "", None).await;
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    let a = s
        .send(
            Who::Anonymous,
            Method::GET,
            "/",
            &[("Origin", WITH_PORT)],
            None,
        )
        .await;
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));

    // should_make_prefligh_request_with_wildcard_origin: the origin is echoed. With
    // credentials configured CouchDB would send them to any origin through `*`; Settee
    // never does (issue 20, finding 7).
    let serve = cors_serve(&["*"], true).await;
    let s = Srv::settee(&serve, "");
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "GET", None).await;
    assert_eq!(
        (a.status, allow_origin(&a).as_deref()),
        (204, Some(WITH_PORT))
    );
    assert_eq!(a.header("access-control-allow-credentials"), None);
    let a = s
        .send(
            Who::Anonymous,
            Method::GET,
            "/",
            &[("Origin", "null")],
            None,
        )
        .await;
    assert_eq!(allow_origin(&a).as_deref(), Some("null"));
    assert_eq!(a.header("access-control-allow-credentials"), None);
}
