//! Issue 23: from a server that answers `_bulk_get` in `multipart/mixed`, revisions with
//! attachments are pulled as CouchDB's replicator pulls them (bytes streamed, gzipped
//! attachments kept gzipped), so server-to-server copies keep the source's stubs exactly.
//! The source is read through a recording proxy, so each test shows what crossed the wire:
//! which requests (one multipart `_bulk_get`, no per-attachment GET) and which bytes (an
//! attachment moves once, a later revision that keeps it moves its stub only). A connection
//! cut in the middle of an attachment writes nothing and the retry completes.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use settee::replicate::{ReplicateOptions, RetryPolicy};
use settee_testkit::faults::{Endpoint, Fault, FaultProxy};
use settee_testkit::http::{proxy, Rule};
use settee_testkit::leaves::ServerKind;
use settee_testkit::TestDb;

use super::streamed::{noise, on_server};
use super::TestServer;

/// One request to the source and the answer it got, as the proxy saw them.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    target: String,
    accept: String,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl Exchange {
    fn is_multipart_bulk_get(&self) -> bool {
        self.method == "POST"
            && self
                .target
                .split('?')
                .next()
                .unwrap_or_default()
                .ends_with("/_bulk_get")
            && self.accept.contains("multipart/mixed")
    }

    /// A GET of one attachment: `/{db}/{id}/{name}` (a document path with a third segment
    /// that is not `_local`'s).
    fn is_attachment_get(&self) -> bool {
        let path = self.target.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.method == "GET" && segments.len() >= 3 && !segments[1].starts_with('_')
    }
}

/// A proxy to the test server that records every exchange (answers read whole, as sent).
async fn recording_proxy() -> (TestServer, Arc<Mutex<Vec<Exchange>>>) {
    let seen: Arc<Mutex<Vec<Exchange>>> = Arc::default();
    let log = seen.clone();
    let (url, _) = proxy(TestServer::get().url(), move |req| {
        let mut ex = Exchange {
            method: req.method.clone(),
            target: req.target.clone(),
            accept: req.header("accept").unwrap_or_default().to_owned(),
            request: req.body.clone(),
            answer: Vec::new(),
        };
        let log = log.clone();
        Rule::Edit(Box::new(move |reply| {
            ex.answer = reply.body.clone();
            log.lock().unwrap().push(ex);
            reply
        }))
    })
    .await;
    (TestServer::get().via(&url), seen)
}

/// What the proxy recorded since `from`, and where the next run starts.
fn since(seen: &Mutex<Vec<Exchange>>, from: &mut usize) -> Vec<Exchange> {
    let all = seen.lock().unwrap();
    let out = all[*from..].to_vec();
    *from = all.len();
    out
}

fn answered_bytes(run: &[Exchange]) -> usize {
    run.iter().map(|e| e.answer.len()).sum()
}

/// Whether any answer of `run` carries some of `data`: one of eight 64-byte windows spread
/// over it, as raw bytes or as the base64 of the document's JSON.
fn carries(run: &[Exchange], data: &[u8]) -> usize {
    use base64::Engine as _;
    let step = data.len() / 8;
    (0..8)
        .filter(|i| {
            // Whole groups of three, so the window's base64 is a substring of the whole's.
            let at = i * step - i * step % 3;
            let window = &data[at..at + 63];
            let b64 = base64::engine::general_purpose::STANDARD.encode(window);
            run.iter().any(|e| {
                let hay = &e.answer;
                hay.windows(window.len()).any(|w| w == window)
                    || hay.windows(b64.len()).any(|w| w == b64.as_bytes())
            })
        })
        .count()
}

/// Text of random words: CouchDB keeps it gzipped, and gzip cannot make it tiny.
fn words(len: usize, seed: u64) -> bytes::Bytes {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz      ";
    noise(len, seed)
        .into_iter()
        .map(|b| LETTERS[usize::from(b) % LETTERS.len()])
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_server_to_server_moves_each_attachment_once_and_keeps_its_stub() {
    let server = TestServer::get();
    let couchdb = ServerKind::from_env() == ServerKind::CouchDb;
    let (a_db, b_db) = (TestDb::create("mpa"), TestDb::named("mpb"));
    let client = settee::couch::CouchClient::builder(a_db.server().url_with_credentials())
        .build()
        .unwrap();
    let a = client.db(a_db.name());
    let text = words(120_000, 1);
    let binary: bytes::Bytes = noise(200_000, 2).into();
    let put = a
        .put_multipart(
            "n",
            &json!({"title": "with attachments"}),
            vec![
                settee::couch::AttachmentUpload::from_bytes("t.txt", "text/plain", text.clone()),
                settee::couch::AttachmentUpload::from_bytes("b.bin", "image/png", binary.clone()),
            ],
            true,
        )
        .await
        .unwrap();
    let create = ReplicateOptions {
        create_target: true,
        ..Default::default()
    };
    let (via, seen) = recording_proxy().await;
    let (ra, rb) = (
        super::remote(&via, a_db.name()),
        super::remote(&server, b_db.name()),
    );
    let mut mark = 0;
    let (text_stub, _) = on_server(&a_db, "n", "t.txt").await;
    let text_on_wire = text_stub["encoded_length"]
        .as_u64()
        .or(text_stub["length"].as_u64())
        .unwrap() as usize;

    // 1. Both attachments cross once, in one multipart `_bulk_get`, none by its own GET.
    let first = super::run(&ra, &rb, create.clone()).await;
    assert_eq!(first.stats.docs_written, 1, "{first:?}");
    let run = since(&seen, &mut mark);
    let gets: Vec<&str> = run
        .iter()
        .filter(|e| e.is_attachment_get())
        .map(|e| e.target.as_str())
        .collect();
    let multipart: Vec<Exchange> = run
        .iter()
        .filter(|e| e.is_multipart_bulk_get())
        .cloned()
        .collect();
    if couchdb {
        assert_eq!(gets, Vec::<&str>::new(), "attachments read one by one");
        assert_eq!(multipart.len(), 1, "{run:#?}");
        assert_eq!(carries(&multipart, &binary), 8, "the binary's bytes");
        let answer = &multipart[0].answer;
        assert!(
            answer.len() >= binary.len() + text_on_wire,
            "multipart answer of {} bytes, attachments {} + {text_on_wire}",
            answer.len(),
            binary.len()
        );
    }
    assert_eq!(carries(&run, &binary), 8, "the binary's bytes crossed");

    // 2. A revision that keeps both moves their stubs only: no byte of either crosses.
    let mut doc: Value = a.get("n", &Default::default()).await.unwrap();
    doc["title"] = json!("edited");
    assert_eq!(doc["_rev"], json!(put.rev.to_string()));
    a.put("n", &doc).await.unwrap();
    let second = super::run(&ra, &rb, create.clone()).await;
    assert_eq!(second.stats.docs_written, 1, "{second:?}");
    let run = since(&seen, &mut mark);
    assert!(
        !run.iter()
            .any(|e| e.is_multipart_bulk_get() || e.is_attachment_get()),
        "{run:#?}"
    );
    let moved = answered_bytes(&run);
    if couchdb {
        assert_eq!(carries(&run, &binary), 0, "{run:#?}");
        assert!(
            moved < text_on_wire.min(binary.len()),
            "{moved} bytes answered for a revision that moves no attachment: {run:#?}"
        );
    } else {
        // FIXME(#23): pouchdb-server's `_bulk_get` ignores `atts_since` and inlines every
        // attachment, so once it is known to answer JSON a revision that keeps its
        // attachments moves them again (stubs first, then a GET per needed attachment,
        // would move none).
        assert_eq!(carries(&run, &binary), 8, "{run:#?}");
    }

    // 3. A revision that replaces the binary and keeps the text moves the new binary only:
    // the multipart read asks with `atts_since`, and the text stays a stub.
    let replaced: bytes::Bytes = noise(150_000, 3).into();
    let mut doc: Value = a.get("n", &Default::default()).await.unwrap();
    doc["_attachments"].as_object_mut().unwrap().remove("b.bin");
    a.put_multipart(
        "n",
        &doc,
        vec![settee::couch::AttachmentUpload::from_bytes(
            "b.bin",
            "image/png",
            replaced.clone(),
        )],
        true,
    )
    .await
    .unwrap();
    let third = super::run(&ra, &rb, create).await;
    assert_eq!(third.stats.docs_written, 1, "{third:?}");
    let run = since(&seen, &mut mark);
    assert_eq!(carries(&run, &replaced), 8, "the new binary crossed");
    assert_eq!(carries(&run, &binary), 0, "the old binary crossed again");
    let moved = answered_bytes(&run);
    assert!(moved >= replaced.len(), "{moved} bytes answered");
    if couchdb {
        assert!(
            moved < replaced.len() + text_on_wire / 2,
            "{moved} bytes answered: the new binary's {} and no text of {text_on_wire}",
            replaced.len()
        );
        let multipart: Vec<Exchange> = run
            .iter()
            .filter(|e| e.is_multipart_bulk_get())
            .cloned()
            .collect();
        assert_eq!(multipart.len(), 1, "{run:#?}");
        let asked: Value = serde_json::from_slice(&multipart[0].request).unwrap();
        assert_eq!(
            asked["docs"][0]["atts_since"].as_array().map(Vec::len),
            Some(1),
            "{asked}"
        );
    }

    for (name, want) in [("t.txt", &text), ("b.bin", &replaced)] {
        let (a_stub, a_bytes) = on_server(&a_db, "n", name).await;
        let (b_stub, b_bytes) = on_server(&b_db, "n", name).await;
        assert!(a_bytes == want.to_vec(), "{name}: the source's bytes");
        assert!(b_bytes == want.to_vec(), "{name}: the target's bytes");
        for k in [
            "digest",
            "encoding",
            "encoded_length",
            "length",
            "revpos",
            "content_type",
        ] {
            if k == "revpos" && !couchdb && name == "t.txt" {
                // FIXME(#23): pouchdb-server's `_bulk_get` with `atts_since` inlines every
                // attachment without its `revpos`, so the target dates a kept attachment
                // to the revision that carried it again.
                assert_eq!((a_stub[k].as_u64(), b_stub[k].as_u64()), (Some(1), Some(3)));
                continue;
            }
            assert_eq!(
                a_stub.get(k),
                b_stub.get(k),
                "{name} {k}: {a_stub} {b_stub}"
            );
        }
    }
    if couchdb {
        let (stub, _) = on_server(&b_db, "n", "t.txt").await;
        assert_eq!(stub["encoding"], "gzip", "{stub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_a_connection_cut_mid_attachment_writes_nothing_and_the_retry_completes() {
    if ServerKind::from_env() != ServerKind::CouchDb {
        // pouchdb-server answers `_bulk_get` in JSON: there is no multipart answer to cut
        // (the JSON path's cuts are `tests/faults.rs`'s).
        return;
    }
    let server = TestServer::get();
    let (a_db, b_db) = (TestDb::create("cuta"), TestDb::create("cutb"));
    let client = settee::couch::CouchClient::builder(a_db.server().url_with_credentials())
        .build()
        .unwrap();
    let a = client.db(a_db.name());
    let data: bytes::Bytes = noise(1 << 20, 4).into();
    a.put_multipart(
        "big",
        &json!({"title": "a recording"}),
        vec![settee::couch::AttachmentUpload::from_bytes(
            "r.bin",
            "audio/ogg",
            data.clone(),
        )],
        true,
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(server.url()).await;
    let via = server.via(&proxy.url());
    let (ra, rb) = (
        super::remote(&via, a_db.name()),
        super::remote(&server, b_db.name()),
    );
    let cut = Fault::CutBodyAt(data.len() / 2);

    // Without retries the run fails (the target's upload fails with the source's stream),
    // and the target has nothing of the document.
    proxy.inject(Endpoint::BulkGetMultipart, cut, 1);
    let once = ReplicateOptions {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::REPLICATION
        },
        ..Default::default()
    };
    let failed = settee::replicate::Replication::new(
        super::common::AsPeer::as_peer(&ra),
        super::common::AsPeer::as_peer(&rb),
        once,
    )
    .run()
    .await;
    assert_eq!(proxy.injected_count(), 1, "{}", proxy.report());
    assert!(
        failed.is_err(),
        "a run without retries survived the cut: {failed:?}"
    );
    let (status, body) =
        server.raw_request("GET", &format!("/{}/big?open_revs=all", b_db.name()), None);
    assert_eq!(
        status, 404,
        "the target has a revision of the cut document: {body}"
    );

    // With retries, the same cut is met and the replication completes.
    proxy.inject(Endpoint::BulkGetMultipart, cut, 1);
    let retrying = ReplicateOptions {
        retry: RetryPolicy {
            max_retries: 4,
            initial_delay: std::time::Duration::from_millis(100),
            max_delay: std::time::Duration::from_secs(1),
        },
        ..Default::default()
    };
    let (done, retried) = super::run_counting_retries(&ra, &rb, retrying).await;
    assert_eq!(proxy.injected_count(), 2, "{}", proxy.report());
    assert!(retried >= 1, "no retry after the cut: {done:?}");
    assert_eq!(done.stats.docs_written, 1, "{done:?}");
    assert_eq!(done.stats.doc_write_failures, 0, "{done:?}");
    let (a_stub, a_bytes) = on_server(&a_db, "big", "r.bin").await;
    let (b_stub, b_bytes) = on_server(&b_db, "big", "r.bin").await;
    assert!(
        a_bytes == data.to_vec() && b_bytes == a_bytes,
        "bytes differ"
    );
    for k in ["digest", "length", "revpos", "content_type"] {
        assert_eq!(a_stub.get(k), b_stub.get(k), "{k}: {a_stub} {b_stub}");
    }
}
