//! What a CouchDB cluster does that one CouchDB does not, one test each (issue 24): `_changes`
//! from different nodes in different orders with sequences that cannot be compared
//! (`changes.rs`), a `since` that rewinds and rows seen twice after a node restart
//! (`changes.rs`), a node down mid-run, the client's and another (`nodes_down.rs`), writes
//! acknowledged before every copy has them (`accepted.rs`), and a live sync that carries on
//! when its node comes back (`live.rs`). Each test starts its own 3-node cluster
//! (`settee_testkit::cluster`, about 5 s) because it kills nodes; `.config/nextest.toml`
//! runs them one at a time. Without `SETTEE_COUCHDB_RELEASE` they say so and skip.
//!
//! Outcomes are checked against what the cluster itself answers: both sides' leaves
//! (`open_revs=all`), the revisions fetched (counted by a proxy in front of the node the
//! client talks to), and `status`, never timings.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

#[path = "cluster/accepted.rs"]
mod accepted;
#[path = "cluster/changes.rs"]
mod changes;
#[path = "cluster/live.rs"]
mod live;
#[path = "cluster/nodes_down.rs"]
mod nodes_down;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{json, Value};
use settee::replicate::Peer;
use settee::ReadOptions;
use settee_testkit::http::{proxy, Reply, Request, Rule};
use settee_testkit::leaves::Compare;
use settee_testkit::TestServer;

/// The database every test uses on its own cluster.
const DB: &str = "notes";

/// The database `DB` on `node` (credentials in the URL), as the library reaches it.
fn remote(node: &TestServer) -> settee::Remote {
    settee::Remote::new(&node.db_url_with_credentials(DB)).unwrap()
}

/// Creates `DB` through `node`.
async fn create(node: &TestServer) -> settee::Remote {
    let r = remote(node);
    r.to_peer().create().await.unwrap();
    r
}

/// `n` notes `{prefix}-{i}`, written through `node` in one `_bulk_docs` as another device
/// writes them; every 7th with a small text attachment. Returns their ids.
fn device_writes(node: &TestServer, prefix: &str, n: usize) -> Vec<String> {
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            let mut doc =
                json!({"_id": format!("{prefix}-{i:04}"), "title": format!("{prefix} {i}")});
            if i % 7 == 0 {
                doc["_attachments"] = json!({"a.txt": {"content_type": "text/plain",
                    "data": "aGVsbG8gY2x1c3Rlcg=="}});
            }
            doc
        })
        .collect();
    let body = json!({ "docs": docs }).to_string();
    let (status, answer) = node.raw_request("POST", &format!("/{DB}/_bulk_docs"), Some(&body));
    assert!(matches!(status, 201 | 202), "_bulk_docs: {status} {answer}");
    let results: Vec<Value> = serde_json::from_str(&answer).unwrap();
    assert!(
        results.iter().all(|r| r["ok"] == json!(true)),
        "a device write failed: {answer}"
    );
    docs.iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every document's leaves as `open_revs=all&revs=true&attachments=true` gives them,
/// compared as Apache CouchDB keeps them (`settee_testkit::leaves`), for the ids of either
/// side's `_all_docs` (deleted ones have none here: the tests delete nothing).
async fn leaves(db: &(impl settee::Documents + Clone)) -> BTreeMap<String, Vec<Value>> {
    let compare = Compare {
        revpos: true,
        encoded_digests: true,
    };
    let ids: Vec<String> = db
        .all_docs(&Default::default())
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.key)
        .collect();
    let read = ReadOptions {
        attachments: true,
        ..Default::default()
    };
    futures::stream::iter(ids)
        .map(|id| {
            let (db, read) = (db.clone(), read.clone());
            async move {
                let mut leaves: Vec<Value> = db
                    .open_revs(&id, &settee::OpenRevs::All, &read)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|l| l["ok"].clone())
                    .collect();
                leaves.sort_by_key(|l| l["_rev"].as_str().unwrap_or_default().to_owned());
                (id, compare.leaves(&leaves))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// `local`'s leaves equal `remote`'s, with `expected` documents on each.
async fn assert_same_leaves(local: &settee::Local, remote: &settee::Remote, expected: usize) {
    let (l, r) = (leaves(local).await, leaves(remote).await);
    assert_eq!(l.len(), expected, "documents in the store");
    assert_eq!(r.len(), expected, "documents on the cluster");
    assert_eq!(l, r, "the store and the cluster disagree");
}

/// `status` of `local` against `remote`: (unpushed, unpulled).
async fn status(local: &settee::Local, remote: &settee::Remote) -> (u64, Option<u64>) {
    let st = local.status(remote).await.unwrap();
    (st.local.unpushed, st.unpulled)
}

/// What went through a [`Recorder`]: each request's method and path, the documents whose
/// revisions it asked for (`_bulk_get`'s items, a GET's `open_revs`) and whether it asked for
/// their attachments, and the answer's status.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    fetched: Vec<String>,
    with_attachments: bool,
    status: u16,
}

/// A proxy in front of one node that records every exchange, and runs `on_request` (the
/// test's cue to stop a node) before forwarding each request, or the edited request it
/// returns instead.
struct Recorder {
    /// The node, reached through the proxy.
    server: TestServer,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

/// What a [`Recorder`] runs on each request before forwarding it: `Some` edited request to
/// forward instead.
type OnRequest = Box<dyn Fn(&Request) -> Option<Request> + Send + Sync>;

impl Recorder {
    async fn start(node: &TestServer, on_request: OnRequest) -> Recorder {
        let seen: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let log = seen.clone();
        let (url, _) = proxy(node.url(), move |req| {
            let edited = on_request(req);
            let sent = edited.as_ref().unwrap_or(req);
            let fetched = fetched_ids(sent);
            let with_attachments = sent.query("attachments").as_deref() == Some("true");
            let (method, path) = (sent.method.clone(), sent.path().to_owned());
            let log = log.clone();
            let record: Box<dyn FnOnce(_) -> _ + Send> = Box::new(move |reply: Reply| {
                log.lock().unwrap().push(Exchange {
                    method,
                    path,
                    fetched,
                    with_attachments,
                    status: reply.status,
                });
                reply
            });
            match edited {
                Some(edited) => Rule::ForwardInstead(edited, record),
                None => Rule::Edit(record),
            }
        })
        .await;
        Recorder {
            server: node.via(&url),
            seen,
        }
    }

    /// A recorder that only records.
    async fn plain(node: &TestServer) -> Recorder {
        Recorder::start(node, Box::new(|_| None)).await
    }

    /// Everything recorded so far, and forgets it.
    fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The documents a request asks the source for revisions of: each item of a `_bulk_get`,
/// or the document of a GET with `open_revs`.
fn fetched_ids(req: &Request) -> Vec<String> {
    if req.method == "POST" && req.path().ends_with("/_bulk_get") {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let items = body["docs"].as_array().cloned().unwrap_or_default();
        return items
            .iter()
            .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
            .collect();
    }
    match req.path().trim_matches('/').split('/').nth(1) {
        Some(id) if req.method == "GET" && req.query("open_revs").is_some() => vec![id.to_owned()],
        _ => Vec::new(),
    }
}

/// How many documents `run` fetched (answered with success), each once: the replicator
/// asks for the revisions `_revs_diff` says are missing, with attachment stubs, and asks
/// again with the attachments for those whose stubs the target lacks, so a document may
/// appear once in each kind of request but never twice in one kind.
///
/// # Panics
/// If a document was fetched twice.
fn fetched(run: &[Exchange]) -> usize {
    let (mut stubs, mut with_attachments) = (BTreeSet::new(), BTreeSet::new());
    for e in run.iter().filter(|e| e.status < 300) {
        let seen = if e.with_attachments {
            &mut with_attachments
        } else {
            &mut stubs
        };
        for id in &e.fetched {
            assert!(seen.insert(id.clone()), "{id} was fetched twice");
        }
    }
    stubs.union(&with_attachments).count()
}
