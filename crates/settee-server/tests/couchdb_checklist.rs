//! CouchDB's own tests of security, users, cookie auth and CORS as a checklist for
//! `settee serve` (issue 20, "How it is shown"). Each module under `couchdb_checklist/`
//! plays the cases of one of Apache CouchDB's test files (`test/elixir/test/*.exs`, and the
//! CORS eunit tests `couchdb_cors_tests.erl`/`chttpd_cors_test.erl`) that the other test
//! files do not already cover, with the outcomes those files expect; this file holds what
//! they share. `docs/security.md` maps every case of those files to the test that shows it,
//! or says why Settee leaves it out.
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
#[path = "couchdb_checklist/cors.rs"]
mod cors;
#[path = "couchdb_checklist/lockout.rs"]
mod lockout;
#[path = "couchdb_checklist/opened_users_db.rs"]
mod opened_users_db;
#[path = "couchdb_checklist/reader_acl.rs"]
mod reader_acl;
#[path = "couchdb_checklist/security_validation.rs"]
mod security_validation;
#[path = "couchdb_checklist/users_db.rs"]
mod users_db;
#[path = "couchdb_checklist/view_sandboxing.rs"]
mod view_sandboxing;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServe, ADMIN, PASSWORD};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use settee_server::{Cors, Lockout, LockoutMode, ServerOptions};

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

/// The kit's server, tuned, with a client that shows redirects.
async fn serve_with(tune: impl FnOnce(&mut ServerOptions)) -> TestServe {
    let mut serve = TestServe::start_with(tune).await;
    serve.http = client();
    serve
}

/// Sends `attempt(n)` (n = 0, 1, ...) until its answer is `done`, polling every 20 ms:
/// CouchDB applies a new design document's `validate_doc_update`, and sees a changed user
/// document at login, a moment after the write (its caches follow the changes feeds).
/// Settee answers at once. Fails with the last answer after a generous bound.
async fn until<F, Fut>(
    s: &Srv,
    case: &str,
    done: impl Fn(&Answer) -> bool,
    mut attempt: F,
) -> Answer
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        let a = attempt(n).await;
        if done(&a) {
            return a;
        }
        let shown = format!("{}: {case}: still {} {}", s.name, a.status, a.body);
        assert!(Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!("the loop returns or fails")
}

/// [`until`] the answer has status `want`.
async fn until_status<F, Fut>(s: &Srv, case: &str, want: u16, attempt: F) -> Answer
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    until(s, case, |a| a.status == want, attempt).await
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
