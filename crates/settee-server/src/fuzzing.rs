//! The bodies of the `fuzz/` crate's `http` and `multipart` targets and the server's part of
//! `rev_seq`: each takes arbitrary bytes and panics only on a bug. Compiled for tests
//! (which replay the committed corpora, so a regression shows on stable) and under the
//! `fuzzing` feature (which the fuzz crate turns on); not part of the public API.
//!
//! `http` drives the whole per-request path in-process (`server::handle`: CORS preflight,
//! authentication, routing, every handler) on a data directory the caller owns, with no
//! socket: hyper's own parsing of the wire is hyper's to fuzz, everything Settee reads
//! from a request (path, query, headers, body) is ours.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::options::{Admin, Lockout, LockoutMode, RequestLimits, ServerOptions};
use crate::server;
use crate::state::{self, State};

/// The server admin of the fuzzed server (`Authorization: Basic YWRtaW46cGFzcw==`).
pub const ADMIN: (&str, &str) = ("admin", "pass");

/// The databases every input starts with (re-made when an input deleted one).
const DATABASES: [&str; 2] = ["db", "pub"];

/// How long one request may take before the harness gives up on it (live feeds, a
/// JavaScript function at its time limit). A hang past it is no crash, just a slow input.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// How long a response body is read: live feeds never end on their own.
const BODY_TIME: Duration = Duration::from_millis(50);

/// A server without a socket, for the `http` target. Runs on the caller's tokio runtime.
pub struct Http {
    state: Arc<State>,
}

impl Http {
    /// A server over the data directory `dir` (made if missing), with an admin, no lockout
    /// (the fuzzer's wrong passwords would lock the admin out and make later inputs behave
    /// differently), cheap password hashing and a 1 MiB body limit, holding the databases
    /// `db` (a few documents, a design document with a view) and `pub` (readable by all).
    ///
    /// # Errors
    /// What [`crate::Server::start`] answers for a directory it cannot serve.
    pub async fn start(dir: &Path) -> Result<Http, Error> {
        let opts = ServerOptions {
            data_dir: Some(dir.to_path_buf()),
            admin: Some(Admin {
                name: ADMIN.0.into(),
                password: ADMIN.1.into(),
            }),
            admin_party: false,
            limits: RequestLimits {
                max_body: 1 << 20,
                max_session_body: 16 << 10,
                delete_wait: Duration::from_millis(100),
                ..RequestLimits::default()
            },
            cache_capacity: 1 << 20,
            lockout: Lockout {
                mode: LockoutMode::Off,
                ..Lockout::default()
            },
            password_iterations: 10,
            ..ServerOptions::default()
        };
        let registry = server::open_registry(&opts).await?;
        let state = state::new_state(&opts, registry, None, CancellationToken::new()).await?;
        let http = Http { state };
        http.seed().await;
        http.put_user().await;
        Ok(http)
    }

    /// User `u` (password `p`, role `r`): `Authorization: Basic dTpw`.
    async fn put_user(&self) {
        let user =
            r#"{"_id":"org.couchdb.user:u","name":"u","password":"p","roles":["r"],"type":"user"}"#;
        let path = "/_users/org.couchdb.user:u";
        self.call(admin_request(Method::PUT, path, user)).await;
    }

    /// Makes the starting databases again if an input deleted them, and deletes any other
    /// that an input created (each is a sled store on disk: thousands would exhaust the
    /// machine). Documents an input changed stay changed.
    async fn seed(&self) {
        let all = self.call(admin_request(Method::GET, "/_all_dbs", "")).await;
        let names: Vec<String> = serde_json::from_slice(&all.1).unwrap_or_default();
        for name in &names {
            if !DATABASES.contains(&name.as_str()) && name != "_users" {
                let path = format!("/{}", crate::location::encode_segment(name));
                self.call(admin_request(Method::DELETE, &path, "")).await;
            }
        }
        let put = |path: &str, body: &str| admin_request(Method::PUT, path, body);
        if !names.iter().any(|n| n == "_users") {
            self.call(put("/_users", "")).await;
            self.put_user().await;
        }
        for db in DATABASES {
            if names.iter().any(|n| n == db) {
                continue;
            }
            self.call(put(&format!("/{db}"), "")).await;
            for body in [
                r#"{"_id":"a","n":1,"s":"x","tags":["t1","t2"]}"#,
                r#"{"_id":"b","n":2,"s":"y","_attachments":{"f.txt":{"content_type":"text/plain","data":"aGVsbG8="}}}"#,
                r#"{"_id":"_design/d","views":{"v":{"map":"function(doc){emit(doc.n, doc.s)}","reduce":"_count"}},"filters":{"f":"function(doc,req){return doc.n>1}"},"validate_doc_update":"function(n,o,u){if(n.bad)throw({forbidden:'bad'})}"}"#,
                r#"{"_id":"_design/q","language":"query","views":{"by-n":{"map":{"fields":{"n":"asc"}},"reduce":"_count","options":{"def":{"fields":["n"]}}}}}"#,
            ] {
                let id = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["_id"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.call(put(&format!("/{db}/{id}"), body)).await;
            }
            if db == "pub" {
                let open =
                    r#"{"admins":{"names":[],"roles":[]},"members":{"names":[],"roles":[]}}"#;
                self.call(put("/pub/_security", open)).await;
            }
        }
    }

    /// Answers one request written as HTTP/1 text (`METHOD target`, header lines, a blank
    /// line, the body; `\n` or `\r\n`); input that is not a request is skipped. Returns the
    /// status, or `None` when there was no request or it took too long.
    pub async fn request(&self, data: &[u8]) -> Option<StatusCode> {
        let req = parse_request(data)?;
        let mutates = req.method() != Method::GET && req.method() != Method::HEAD;
        let (status, body) = self.call(req).await;
        // A panic in a handler's store call comes back as a 500 naming it (tokio catches
        // it); under libFuzzer the panic hook has already aborted.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("panicked"), "a handler panicked: {text}");
        }
        if mutates {
            self.seed().await;
        }
        (status != StatusCode::REQUEST_TIMEOUT).then_some(status)
    }

    /// One request through the whole per-request path; its status and (the start of) its
    /// body.
    async fn call(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let handled = tokio::time::timeout(REQUEST_TIME, server::handle(self.state.clone(), req));
        let Ok(res) = handled.await else {
            return (StatusCode::REQUEST_TIMEOUT, Vec::new());
        };
        let status = res.status();
        let mut body = res.into_body();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(BODY_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                }
            }
        })
        .await;
        (status, out)
    }
}

fn admin_request(method: Method, path: &str, body: &str) -> Request<Body> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Basic {auth}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap_or_default()
}

/// A request from its HTTP/1 text; `None` when the request line or a header is not one
/// that hyper would have let through.
fn parse_request(data: &[u8]) -> Option<Request<Body>> {
    let head_end = memchr::memmem::find(data, b"\n\n")
        .map(|i| (i, i + 2))
        .or_else(|| memchr::memmem::find(data, b"\r\n\r\n").map(|i| (i, i + 4)));
    let (head, body) = match head_end {
        Some((end, body)) => (&data[..end], &data[body..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = Method::from_bytes(first.next()?.as_bytes()).ok()?;
    let mut builder = Request::builder().method(method).uri(first.next()?);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(Body::from(body.to_vec())).ok()
}

/// `multipart/related` bodies as a `PUT` reads them: the content type is the first line,
/// the body the rest. A body no larger than the limit must be answered within it, and
/// the same whatever pieces it arrives in.
pub fn multipart(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let (ct, body) = match memchr::memchr(b'\n', data) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(ct) = std::str::from_utf8(ct) else {
        return;
    };
    let ct = ct.trim_end_matches('\r');
    // Cut into pieces of a size the input picks, as a network would deliver it.
    let pieces = 1 + body.first().copied().unwrap_or(0) as usize * 37;
    if let Ok(doc) = crate::multipart_put::read_in_pieces(ct, body, pieces, LIMIT) {
        use base64::Engine;
        let decoded: usize = doc
            .get("_attachments")
            .and_then(serde_json::Value::as_object)
            .map(|atts| {
                atts.values()
                    .filter_map(|a| a.get("data")?.as_str())
                    .filter_map(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                    .map(|d| d.len())
                    .sum()
            })
            .unwrap_or(0);
        // Parts decode within the limit; inline `data` in the JSON part is part of the body.
        assert!(
            decoded <= LIMIT + body.len(),
            "{decoded} bytes from {} of body",
            body.len()
        );
        // Whatever the pieces, the same document.
        let whole = crate::multipart_put::read_in_pieces(ct, body, body.len().max(1), LIMIT);
        assert_eq!(whole.ok(), Some(doc));
    }
}

/// The server's reading of `since=` (a sequence it handed out, or a CouchDB-style one).
pub fn since(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        if let Ok(Some(n)) = crate::changes::parse_since(line) {
            assert_eq!(
                crate::changes::parse_since(&n.to_string()).ok(),
                Some(Some(n))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed corpus of `target` (read as the store's tests read theirs), not empty.
    fn corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let inputs = settee_store::fuzzing::corpus(target).unwrap();
        assert!(!inputs.is_empty(), "no corpus for {target}");
        inputs
    }

    #[test]
    fn multipart_corpus_replays() {
        for (path, data) in corpus("multipart") {
            eprintln!("{}", path.display());
            multipart(&data);
        }
    }

    #[test]
    fn rev_seq_corpus_replays() {
        for (path, data) in corpus("rev_seq") {
            eprintln!("{}", path.display());
            since(&data);
        }
    }

    /// The `http` corpus through the in-process server: no input panics a handler, and
    /// the seeded requests get the answers a server gives them (so the harness is serving).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_corpus_replays() {
        let dir = tempfile::tempdir().unwrap();
        let http = Http::start(dir.path()).await.unwrap();
        let get = b"GET /db/a HTTP/1.1\nAuthorization: Basic YWRtaW46cGFzcw==\n\n";
        assert_eq!(http.request(get).await, Some(StatusCode::OK));
        let anon = b"GET /db/a HTTP/1.1\n\n";
        assert_eq!(http.request(anon).await, Some(StatusCode::UNAUTHORIZED));
        let inputs = corpus("http");
        let mut answered = std::collections::BTreeMap::new();
        for (path, data) in &inputs {
            eprintln!("{}", path.display());
            if let Some(status) = http.request(data).await {
                *answered.entry(status.as_u16()).or_insert(0) += 1;
            }
        }
        // Most inputs are requests (the fuzzer keeps what reaches new code), and they reach
        // more than the error paths.
        eprintln!("statuses: {answered:?}");
        assert!(answered.values().sum::<usize>() > inputs.len() / 2);
        assert!(answered.get(&200).is_some_and(|&n| n > 10));
    }
}
