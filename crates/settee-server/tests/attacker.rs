//! `settee serve` played as an attacker plays it (issue 20): every endpoint a client can reach,
//! asked by everyone a server meets (anonymous, a wrong password, a user with no access, a
//! member by name, a member by role, a database admin, the server admin), and answered as
//! Apache CouchDB 3.5.0 answers the same request in the same setup.
//!
//! Two kinds of check:
//! - absolute, on Settee alone (so the test fails without a CouchDB too): whoever may not read
//!   the private database gets 401 or 403 and never sees a byte of its data; whoever may not
//!   write changes nothing;
//! - compared: where `SETTEE_TEST_COUCHDB_URL` names a CouchDB, the same table is asked of it
//!   and every status must agree, but for the differences listed in [`KNOWN_DIFFERENCES`]
//!   with their reasons.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{TestServe, ADMIN, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

/// The private database's secret: no answer to someone who may not read it contains it.
const SECRET: &str = "TOPSECRET-b1f0";

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    WrongPassword,
    /// A user with no place in the private database.
    Stranger,
    /// A member by name.
    Member,
    /// A member through a role.
    RoleMember,
    /// A database admin by name.
    DbAdmin,
    /// The server admin.
    Admin,
}

const EVERYONE: [Who; 7] = [
    Who::Anonymous,
    Who::WrongPassword,
    Who::Stranger,
    Who::Member,
    Who::RoleMember,
    Who::DbAdmin,
    Who::Admin,
];

impl Who {
    fn tag(self) -> &'static str {
        match self {
            Who::Anonymous => "anon",
            Who::WrongPassword => "wrong",
            Who::Stranger => "eve",
            Who::Member => "alice",
            Who::RoleMember => "bob",
            Who::DbAdmin => "dana",
            Who::Admin => "admin",
        }
    }

    /// May read the private database.
    fn reads_private(self) -> bool {
        matches!(
            self,
            Who::Member | Who::RoleMember | Who::DbAdmin | Who::Admin
        )
    }
}

/// One request of the table. `{s}` is the private database, `{o}` the public one, `{u}` the
/// asking user's `_users` id, `{w}` a name unique to the asker (for writes), `{p}` the run's
/// prefix.
struct Ask {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// Reads data of the private database when it succeeds.
    reads_secret: bool,
}

fn ask(method: Method, path: &'static str, body: Option<Value>, reads_secret: bool) -> Ask {
    Ask {
        method,
        path,
        body,
        reads_secret,
    }
}

fn table() -> Vec<Ask> {
    vec![
        ask(Method::GET, "/", None, false),
        ask(Method::GET, "/_up", None, false),
        ask(Method::GET, "/_session", None, false),
        ask(Method::GET, "/_uuids", None, false),
        ask(Method::GET, "/_all_dbs", None, false),
        ask(Method::GET, "/{s}", None, false),
        ask(Method::GET, "/{s}/doc", None, true),
        ask(Method::GET, "/{s}/doc?open_revs=all", None, true),
        ask(Method::GET, "/{s}/_all_docs?include_docs=true", None, true),
        ask(Method::GET, "/{s}/_changes?include_docs=true", None, true),
        ask(
            Method::POST,
            "/{s}/_all_docs",
            Some(json!({"keys": ["doc"]})),
            true,
        ),
        ask(
            Method::POST,
            "/{s}/_find",
            Some(json!({"selector": {"secret": {"$exists": true}}})),
            true,
        ),
        ask(
            Method::POST,
            "/{s}/_bulk_get",
            Some(json!({"docs": [{"id": "doc"}]})),
            true,
        ),
        ask(
            Method::POST,
            "/{s}/_revs_diff",
            Some(json!({"doc": ["9-x"]})),
            false,
        ),
        ask(Method::GET, "/{s}/_design/d/_view/v", None, true),
        ask(Method::GET, "/{s}/_design/d", None, false),
        ask(Method::GET, "/{s}/_local/loc", None, true),
        ask(Method::GET, "/{s}/doc/note.txt", None, true),
        ask(Method::GET, "/{s}/_security", None, false),
        ask(Method::GET, "/{s}/_index", None, false),
        ask(Method::PUT, "/{s}/w-{w}", Some(json!({"by": "{w}"})), false),
        ask(
            Method::POST,
            "/{s}/_bulk_docs",
            Some(json!({"docs": [{"_id": "b-{w}"}]})),
            false,
        ),
        ask(
            Method::PUT,
            "/{s}/_local/l-{w}",
            Some(json!({"x": 1})),
            false,
        ),
        ask(
            Method::PUT,
            "/{s}/_design/x-{w}",
            Some(json!({"views": {}})),
            false,
        ),
        ask(
            Method::PUT,
            "/{s}/_security",
            Some(
                json!({"admins": {"names": ["dana-{p}"]}, "members": {"names": ["alice-{p}"], "roles": ["team-{p}"]}}),
            ),
            false,
        ),
        ask(Method::POST, "/{s}/_compact", Some(json!({})), false),
        ask(Method::PUT, "/{p}new-{w}", None, false),
        ask(Method::GET, "/{o}/pub", None, false),
        ask(Method::PUT, "/{o}/w-{w}", Some(json!({"by": "{w}"})), false),
        ask(Method::GET, "/_users/{u}", None, false),
        ask(
            Method::GET,
            "/_users/org.couchdb.user:alice-{p}",
            None,
            false,
        ),
        ask(Method::GET, "/_users/_all_docs", None, false),
        ask(Method::GET, "/_users/_changes", None, false),
        ask(Method::DELETE, "/{o}", None, false),
    ]
}

/// Statuses Settee answers differently from CouchDB 3.5.0 on purpose, or because it does not
/// have the endpoint: `(request path template, who, settee, couchdb, why)`.
const KNOWN_DIFFERENCES: &[(&str, Option<Who>, u16, u16, &str)] = &[
    (
        "/{s}/_security",
        Some(Who::Member),
        403,
        500,
        "CouchDB 3.5.0 fails with an internal error when a member writes _security",
    ),
    (
        "/{s}/_security",
        Some(Who::RoleMember),
        403,
        500,
        "CouchDB 3.5.0 fails with an internal error when a member writes _security",
    ),
];

/// A server under test: its URL and admin, and the names of this run.
struct Target {
    name: &'static str,
    base: String,
    admin: (String, String),
    prefix: String,
    http: reqwest::Client,
    /// A `Host` header to send instead of the URL's (a DNS-rebinding page's name).
    host: Option<String>,
}

impl Target {
    fn fill(&self, template: &str, who: Who) -> String {
        template
            .replace("{s}", &format!("{}secret", self.prefix))
            .replace("{o}", &format!("{}open", self.prefix))
            .replace("{u}", &format!("org.couchdb.user:{}", self.user(who)))
            .replace("{w}", who.tag())
            .replace("{p}", &self.prefix)
    }

    fn user(&self, who: Who) -> String {
        format!("{}-{}", who.tag(), self.prefix)
    }

    async fn send(
        &self,
        who: Who,
        method: Method,
        path: &str,
        body: Option<&Value>,
        nth: usize,
    ) -> (u16, String) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Accept", "application/json");
        if let Some(host) = &self.host {
            r = r.header("Host", host.as_str());
        }
        match who {
            Who::Anonymous => {}
            // A fresh name each time: the wrong password must not lock a real account.
            Who::WrongPassword => {
                r = r.basic_auth(format!("nobody{nth}-{}", self.prefix), Some("wrong"));
            }
            Who::Admin => r = r.basic_auth(&self.admin.0, Some(&self.admin.1)),
            other => r = r.basic_auth(self.user(other), Some("pw-of-a-user")),
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let res = r.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
        self.send(Who::Admin, method, path, body.as_ref(), 0).await
    }

    /// Users, the private and the public database, a document with an attachment, a view,
    /// a `_local` document.
    async fn set_up(&self, with_users: bool) {
        let users = if with_users {
            &[Who::Stranger, Who::Member, Who::RoleMember, Who::DbAdmin][..]
        } else {
            &[]
        };
        for &who in users {
            let name = self.user(who);
            let roles = if who == Who::RoleMember {
                vec![format!("team-{}", self.prefix)]
            } else {
                vec![]
            };
            let (s, b) = self
                .as_admin(
                    Method::PUT,
                    &format!("/_users/org.couchdb.user:{name}"),
                    Some(json!({"name": name, "password": "pw-of-a-user", "roles": roles, "type": "user"})),
                )
                .await;
            assert!(
                s == 201 || s == 202,
                "{}: creating {name}: {s} {b}",
                self.name
            );
        }
        let s = self.fill("{s}", Who::Admin);
        let o = self.fill("{o}", Who::Admin);
        for db in [&s, &o] {
            let (st, b) = self.as_admin(Method::PUT, &format!("/{db}"), None).await;
            assert!(st == 201, "{}: creating {db}: {st} {b}", self.name);
        }
        let security = json!({
            "admins": {"names": [self.user(Who::DbAdmin)], "roles": []},
            "members": {"names": [self.user(Who::Member)], "roles": [format!("team-{}", self.prefix)]},
        });
        let writes = [
            (format!("/{s}/_security"), security),
            (
                format!("/{s}/doc"),
                json!({"secret": SECRET, "_attachments": {"note.txt": {"content_type": "text/plain", "data": base64(SECRET)}}}),
            ),
            (
                format!("/{s}/_design/d"),
                json!({"views": {"v": {"map": "function (doc) { if (doc.secret) emit(doc.secret, doc.secret); }"}}}),
            ),
            (format!("/{s}/_local/loc"), json!({"secret": SECRET})),
            (
                format!("/{o}/_security"),
                json!({"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}}),
            ),
            (format!("/{o}/pub"), json!({"public": true})),
        ];
        for (path, body) in writes {
            let (st, b) = self.as_admin(Method::PUT, &path, Some(body)).await;
            assert!(st == 200 || st == 201, "{}: {path}: {st} {b}", self.name);
        }
    }

    async fn tear_down(&self) {
        for db in [self.fill("{s}", Who::Admin), self.fill("{o}", Who::Admin)] {
            self.as_admin(Method::DELETE, &format!("/{db}"), None).await;
        }
        for who in EVERYONE {
            self.as_admin(
                Method::DELETE,
                &format!("/{}new-{}", self.prefix, who.tag()),
                None,
            )
            .await;
            let id = format!("/_users/org.couchdb.user:{}", self.user(who));
            let (s, b) = self.as_admin(Method::GET, &id, None).await;
            if s == 200 {
                let rev = serde_json::from_str::<Value>(&b).unwrap()["_rev"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                self.as_admin(Method::DELETE, &format!("{id}?rev={rev}"), None)
                    .await;
            }
        }
    }

    /// Asks the whole table as everyone: `(path template, who) -> (status, body)`.
    async fn play(&self) -> BTreeMap<(String, Who), (u16, String)> {
        let mut out = BTreeMap::new();
        let mut nth = 0;
        for a in table() {
            for who in EVERYONE {
                nth += 1;
                let path = self.fill(a.path, who);
                let body = a
                    .body
                    .as_ref()
                    .map(|b| serde_json::from_str(&self.fill(&b.to_string(), who)).unwrap());
                let answer = self
                    .send(who, a.method.clone(), &path, body.as_ref(), nth)
                    .await;
                out.insert((format!("{} {}", a.method, a.path), who), answer);
            }
        }
        out
    }
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The absolute rules, on one server's answers.
fn check_rules(target: &str, answers: &BTreeMap<(String, Who), (u16, String)>) -> Vec<String> {
    let mut broken = Vec::new();
    let table = table();
    for ((key, who), (status, body)) in answers {
        let a = table
            .iter()
            .find(|a| format!("{} {}", a.method, a.path) == *key)
            .unwrap();
        if !who.reads_private() && body.contains(SECRET) {
            broken.push(format!(
                "{target}: {key} as {who:?} leaked the secret: {status} {body}"
            ));
        }
        if a.reads_secret && !who.reads_private() && !matches!(status, 401 | 403) {
            broken.push(format!("{target}: {key} as {who:?}: {status}, not 401/403"));
        }
        if a.reads_secret && who.reads_private() && *status != 200 {
            broken.push(format!(
                "{target}: {key} as {who:?}: {status}, a reader is refused: {body}"
            ));
        }
        if *status >= 500 && target == "settee" {
            broken.push(format!("{target}: {key} as {who:?}: {status} {body}"));
        }
    }
    broken
}

async fn settee_target(serve: &TestServe, prefix: &str) -> Target {
    Target {
        name: "settee",
        base: serve.url(),
        admin: (ADMIN.into(), PASSWORD.into()),
        prefix: prefix.into(),
        http: reqwest::Client::new(),
        host: None,
    }
}

/// The CouchDB of `SETTEE_TEST_COUCHDB_URL`, when the test server is an Apache CouchDB
/// (`SETTEE_TEST_SERVER_KIND=couchdb`; pouchdb-server has no `_users` or `_security`).
fn couch_target(prefix: &str) -> Option<Target> {
    let kind = std::env::var("SETTEE_TEST_SERVER_KIND").unwrap_or_default();
    if kind != "couchdb" || std::env::var("SETTEE_TEST_COUCHDB_URL").is_err() {
        return None;
    }
    let server = settee_testkit::TestServer::get();
    let (user, password) = server.credentials()?;
    Some(Target {
        name: "couchdb",
        base: server.url().to_owned(),
        admin: (user.into(), password.into()),
        prefix: prefix.into(),
        http: reqwest::Client::new(),
        host: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_as_everyone_keeps_the_private_database_private() {
    let prefix = format!("atk{:08x}", rand::random::<u32>());
    let serve = TestServe::start().await;
    let settee = settee_target(&serve, &prefix).await;
    settee.set_up(true).await;
    let ours = settee.play().await;
    let mut broken = check_rules("settee", &ours);

    if let Some(couch) = couch_target(&prefix) {
        couch.set_up(true).await;
        let theirs = couch.play().await;
        couch.tear_down().await;
        broken.extend(check_rules("couchdb", &theirs));
        for (key, (status, body)) in &ours {
            let (their_status, their_body) = &theirs[key];
            if status == their_status {
                continue;
            }
            let known = KNOWN_DIFFERENCES.iter().any(|(path, who, s, c, _)| {
                key.0.ends_with(path)
                    && who.is_none_or(|w| w == key.1)
                    && s == status
                    && c == their_status
            });
            if !known {
                broken.push(format!(
                    "{} as {:?}: settee {status} {}, couchdb {their_status} {}",
                    key.0,
                    key.1,
                    body.trim(),
                    their_body.trim()
                ));
            }
        }
    } else {
        eprintln!("no CouchDB (SETTEE_TEST_COUCHDB_URL): the absolute rules only");
    }
    assert!(
        broken.is_empty(),
        "{} problems:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Without `--admin` (the admin party, loopback only): a web page that rebinds its own name to
/// 127.0.0.1 reaches the server with that name in `Host`, and gets nothing from any endpoint
/// (403 everywhere, nothing changed); asked by a loopback name, every request is the admin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_a_rebound_name_reaches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = settee_server::Server::start(settee_server::ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().join("data")),
        js_worker: common::js_worker(),
        ..Default::default()
    })
    .await
    .unwrap();
    let port = server.local_addr().port();
    let mut target = Target {
        name: "settee (admin party)",
        base: format!("http://{}", server.local_addr()),
        admin: ("nobody".into(), "nothing".into()),
        prefix: "party".into(),
        http: reqwest::Client::new(),
        host: None,
    };
    target.set_up(false).await;
    let (_, before) = target
        .send(Who::Anonymous, Method::GET, "/partysecret/doc", None, 0)
        .await;

    target.host = Some(format!("rebound.example:{port}"));
    let answers = target.play().await;
    let mut broken = Vec::new();
    for ((key, who), (status, body)) in &answers {
        if *status != 403 || body.contains(SECRET) {
            broken.push(format!(
                "{key} as {who:?} from a rebound name: {status} {body}"
            ));
        }
    }

    target.host = None;
    let (s, after) = target
        .send(Who::Anonymous, Method::GET, "/partysecret/doc", None, 0)
        .await;
    assert_eq!(s, 200);
    assert_eq!(before, after, "a rebound request changed the document");
    let (s, all) = target
        .send(Who::Anonymous, Method::GET, "/_all_dbs", None, 0)
        .await;
    assert_eq!(s, 200);
    let all: Vec<String> = serde_json::from_str::<Vec<String>>(&all)
        .unwrap()
        .into_iter()
        .filter(|name| name.starts_with("party"))
        .collect();
    assert_eq!(
        all,
        ["partyopen", "partysecret"],
        "a rebound request created or deleted a database"
    );

    // By a loopback name, anonymous is the admin: the same answers as the admin's.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        target.host = Some(host.clone());
        let (s, body) = target
            .send(Who::Anonymous, Method::GET, "/partysecret/doc", None, 0)
            .await;
        assert_eq!(s, 200, "{host}");
        assert!(body.contains(SECRET), "{host}");
    }
    assert!(
        broken.is_empty(),
        "{} problems:\n{}",
        broken.len(),
        broken.join("\n")
    );
    server.shutdown().await;
}
