//! Shared setup for the integration tests: a client for the test server and a fresh db.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use settee_couch::{CouchClient, RemoteDb};
use settee_testkit::{TestDb, TestServer};

/// A client with the test server's admin credentials (basic auth).
pub fn client() -> CouchClient {
    let server = TestServer::get();
    let mut b = CouchClient::builder(server.url());
    if let Some((user, password)) = server.credentials() {
        b = b.basic_auth(user, password);
    }
    b.build().unwrap()
}

/// A freshly created database (deleted when the guard drops) and a handle on it.
pub fn fresh_db(prefix: &str) -> (TestDb, RemoteDb) {
    let guard = TestDb::create(prefix);
    let db = client().db(guard.name());
    (guard, db)
}
