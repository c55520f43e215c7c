//! No credential appears in any log line, error message or `Debug` output: the test runs
//! authenticated and failing requests against the real server with every kind of
//! credential, captures all tracing output at TRACE, and searches it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use settee_couch::{ChangesOptions, CouchClient, GetOptions, RemoteDb};
use settee_testkit::{TestDb, TestServer};
use tracing_subscriber::fmt::MakeWriter;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn no_credential_in_logs_errors_or_debug() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // The test runs on one thread (current-thread runtime), so a thread-local default is
    // enough and does not disturb other tests.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::get();
    let (user, password) = server
        .credentials()
        .expect("the test server has credentials");
    let wrong = "Wr0ng-pa55word-7781";
    let token = "bearer-token-secret-5521";
    let header_secret = "api-key-secret-9932";
    let guard = TestDb::create("redaction");
    let mut shown = Vec::new();

    // Good credentials, in the URL: a full round of calls.
    let db = RemoteDb::from_url(&guard.url_with_credentials()).unwrap();
    db.put("a", &json!({"v": 1})).await.unwrap();
    db.changes(&ChangesOptions::default()).await.unwrap();
    shown.push(format!("{db:?} {:?} {}", db.client(), db.url()));
    shown.push(
        db.get("missing", &GetOptions::default())
            .await
            .unwrap_err()
            .to_string(),
    );

    // Cookie session: the cookie must not leak either.
    let cookie_client = CouchClient::builder(server.url())
        .cookie_auth(user, password)
        .build()
        .unwrap();
    let cdb = cookie_client.db(guard.name());
    cdb.info().await.unwrap();
    let err = cdb
        .get("missing", &GetOptions::default())
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?} {cookie_client:?}"));

    // Wrong password in the URL, a bearer token, and a secret header: all fail with 401.
    let bad_url = format!(
        "{}/{}",
        server
            .url()
            .replacen("://", &format!("://{user}:{wrong}@"), 1),
        guard.name()
    );
    let bad = RemoteDb::from_url(&bad_url).unwrap();
    let err = bad.info().await.unwrap_err();
    assert_eq!(err.name(), "unauthorized");
    shown.push(format!("{err} {err:#?} {bad:?}"));
    let bearer = CouchClient::builder(server.url())
        .bearer_auth(token)
        .header("X-Api-Key", header_secret)
        .build()
        .unwrap();
    let result = bearer.db(guard.name()).put("b", &json!({})).await;
    shown.push(format!("{result:?} {bearer:?}"));
    // A transport error (nothing listens on port 9) with credentials in the URL.
    let down = RemoteDb::from_url(&format!("http://{user}:{wrong}@127.0.0.1:9/db")).unwrap();
    let err = down.info().await.unwrap_err();
    assert_eq!(err.name(), "transport");
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    shown.push(chain);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works: requests were logged, with their redacted URLs.
    assert!(logs.contains("couch request"), "nothing captured: {logs}");
    assert!(logs.contains(guard.name()));
    let everything = format!("{logs}\n{}", shown.join("\n"));
    for secret in [password, wrong, token, header_secret, "AuthSession="] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into:\n{everything}"
        );
    }
}
