//! What the browser tests share besides the browser: a database on the test server behind
//! a proxy of its own (which the test can cut), starting an app on it, and the page steps
//! that write notes.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{json, Value};
use settee_testkit::faults::FaultProxy;
use settee_testkit::TestDb;

use super::{AppProcess, Browser};

/// A database on the test server, reached through a proxy of its own, and the URL an app
/// uses for it (user in the URL, password apart).
pub struct ServerDb {
    pub db: TestDb,
    pub proxy: FaultProxy,
}

/// The port a proxy listens on.
pub fn port(proxy: &FaultProxy) -> u16 {
    url::Url::parse(&proxy.url()).unwrap().port().unwrap()
}

impl ServerDb {
    pub async fn create(prefix: &str) -> ServerDb {
        let db = TestDb::create(prefix);
        let proxy = FaultProxy::start(db.server().url()).await;
        ServerDb { db, proxy }
    }

    /// Another proxy to the same server, for a second app.
    pub async fn proxy(&self) -> FaultProxy {
        FaultProxy::start(self.db.server().url()).await
    }

    pub fn app_remote(&self, proxy: &FaultProxy) -> (String, String) {
        let server = self.db.server();
        let user = server.user().map(|u| format!("{u}@")).unwrap_or_default();
        (
            format!("http://{user}127.0.0.1:{}/{}", port(proxy), self.db.name()),
            server.password().unwrap_or_default().to_owned(),
        )
    }

    /// A GET of the server's database, straight to the server (not through the proxy).
    pub async fn server_get(&self, path: &str) -> Value {
        let server = self.db.server();
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.db.url()));
        if let Some((user, password)) = server.credentials() {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// A document as the server has it (with `_conflicts`).
    pub async fn server_doc(&self, id: &str) -> Value {
        self.server_get(&format!("/{id}?conflicts=true")).await
    }

    pub async fn server_docs(&self) -> Vec<Value> {
        let v = self.server_get("/_all_docs?include_docs=true").await;
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["doc"].clone())
            .collect()
    }
}

pub fn start_app(
    dir: &std::path::Path,
    name: &str,
    remote: Option<&(String, String)>,
) -> AppProcess {
    AppProcess::start(
        &dir.join(name),
        remote.map(|(u, p)| (u.as_str(), p.as_str())),
    )
}

/// Creates a note on the page: New note, type the title and body, Save; waits until the
/// list shows it.
pub async fn write_note(b: &Browser, title: &str, body: &str) {
    b.click("#new-note").await;
    b.wait_for(
        "the editor of a new note",
        "return !document.querySelector('#editor').hidden && document.querySelector('#title').value === '';",
        json!([]),
        |v| v == true,
    )
    .await;
    b.type_into("#title", title).await;
    b.type_into("#body", body).await;
    b.click("#save").await;
    b.wait_text("#editor-message", "Saved.").await;
    b.wait_badge(title, "").await;
}

/// Opens the note titled `title`, replaces its body, saves.
pub async fn edit_body(b: &Browser, title: &str, body: &str) {
    b.open_note(title).await;
    b.type_into("#body", body).await;
    b.click("#save").await;
    b.wait_text("#editor-message", "Saved.").await;
}
