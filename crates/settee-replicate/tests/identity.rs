//! A remote database's identity (issue 22): its server's uuid with the database name, so
//! that every spelling of the server's URL (127.0.0.1, localhost) is one remote, whose sync
//! state and checkpoints are found under any of them; and the upgrade of a store that kept
//! them under the URL, as builds before the identity was learned did.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use serde_json::json;
use settee_couch::RemoteDb;
use settee_replicate::{Peer, ReplicateOptions, Replication, Stats, SyncState};
use settee_store::Database;
use settee_testkit::peer::{Wrap, Wrapped};
use settee_testkit::{TestDb, TestServer};

/// The test server's URL of `db` as `localhost` instead of `127.0.0.1`.
fn localhost(db: &TestDb) -> RemoteDb {
    let server = TestServer::get();
    assert!(server.url().contains("127.0.0.1"), "{}", server.url());
    let other = server.via(&server.url().replace("127.0.0.1", "localhost"));
    RemoteDb::from_url(&other.db_url_with_credentials(db.name())).unwrap()
}

fn numeric(db: &TestDb) -> RemoteDb {
    RemoteDb::from_url(&db.url_with_credentials()).unwrap()
}

async fn push<S: Peer, T: Peer>(source: &S, target: &T) -> Stats {
    Replication::new(source.clone(), target.clone(), ReplicateOptions::default())
        .run()
        .await
        .unwrap()
        .stats
}

fn fill(local: &Database, n: usize) {
    for i in 0..n {
        local.put(json!({"_id": format!("n{i:03}")})).unwrap();
    }
}

/// A remote database as builds before issue 22 named it: by its URL, never asking the
/// server's uuid.
#[derive(Clone)]
struct NamedByUrl(RemoteDb);

impl Wrap for NamedByUrl {
    type Inner = RemoteDb;
    fn inner(&self) -> &RemoteDb {
        &self.0
    }
    fn identity(&self) -> String {
        self.0.address()
    }
    async fn learn_identity(&self) -> settee_replicate::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_22_both_spellings_of_the_server_are_one_remote_with_one_checkpoint() {
    let db = TestDb::create("identity");
    let dir = tempfile::tempdir().unwrap();
    let local = Database::open(dir.path().join("local")).unwrap();
    fill(&local, 20);
    let (a, b) = (numeric(&db), localhost(&db));
    assert_ne!(a.address(), b.address());
    assert_eq!(push(&local, &a).await.docs_written, 20);
    // The second spelling learns the same identity: the same checkpoint, nothing to check.
    let again = push(&local, &b).await;
    assert_eq!(
        (
            again.changes_read,
            again.missing_checked,
            again.docs_written
        ),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(a.identity(), b.identity());
    assert!(a.identity().starts_with("couchdb://"), "{}", a.identity());
    // Offline, with fresh handles that never asked the server: both spellings resolve.
    for url in [a.address(), b.address()] {
        let fresh = RemoteDb::from_url(&url).unwrap();
        assert_eq!(fresh.identity(), url, "not learned yet");
        let st = settee_replicate::status(&local, &fresh).await.unwrap();
        assert_eq!((st.unpushed, st.never_synced), (0, false), "{st:?}");
        assert_eq!((st.remote, st.identity), (url, a.identity()));
    }
    // A spelling never used has no state.
    let never = settee_replicate::status_named(&local, "http://admin@[::1]:1/nothing")
        .await
        .unwrap();
    assert!(never.never_synced);
    // One more local edit shows under either spelling.
    local.put(json!({"_id": "late"})).unwrap();
    let st = settee_replicate::status(&local, &b).await.unwrap();
    assert_eq!(st.unpushed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_22_an_upgraded_store_keeps_its_state_and_checkpoint() {
    let db = TestDb::create("identity-upgrade");
    let dir = tempfile::tempdir().unwrap();
    let local = Database::open(dir.path().join("local")).unwrap();
    fill(&local, 30);
    let remote = numeric(&db);
    let old = Wrapped(NamedByUrl(remote.clone()));
    let address = remote.address();
    // The old build: state and checkpoints named by the URL.
    assert_eq!(push(&local, &old).await.docs_written, 30);
    assert_eq!(local.sync_counts(&address).unwrap().unsynced, 0);
    local.put(json!({"_id": "after-the-old-sync"})).unwrap();
    // The new build learns the identity and moves everything there.
    let stats = push(&local, &remote).await;
    assert_eq!(
        (stats.changes_read, stats.docs_written),
        (1, 1),
        "the checkpoint was taken over: {stats:?}"
    );
    let identity = remote.identity();
    assert_ne!(identity, address);
    assert!(local.remote(&address).is_none(), "moved, not copied");
    assert_eq!(local.sync_counts(&identity).unwrap().unsynced, 0);
    assert_eq!(local.resolve_remote(&address), identity);
    // And the next run resumes from the new checkpoint.
    let stats = push(&local, &remote).await;
    assert_eq!(stats.changes_read, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_22_state_written_under_the_url_is_found_once_the_identity_is_learned() {
    let db = TestDb::create("identity-state");
    let dir = tempfile::tempdir().unwrap();
    let local = Database::open(dir.path().join("local")).unwrap();
    let a = local.put(json!({"_id": "a"})).unwrap().rev.unwrap();
    local.put(json!({"_id": "b"})).unwrap();
    let remote = numeric(&db);
    // As the old code kept it: registered under the URL, `a` confirmed there.
    let address = remote.address();
    local.register_remote(&address, Default::default()).unwrap();
    local
        .record_remote_revs(&address, &[("a".to_string(), vec![a])].into(), &[])
        .unwrap();
    let identity = settee_replicate::learn_identity(&local, &remote)
        .await
        .unwrap();
    assert_ne!(identity, address);
    assert_eq!(
        settee_replicate::sync_state(&local, &remote, "a")
            .await
            .unwrap(),
        Some(SyncState::Synced)
    );
    let by_url = RemoteDb::from_url(&remote.address()).unwrap();
    let st = settee_replicate::status(&local, &by_url).await.unwrap();
    assert_eq!((st.unpushed, st.never_synced), (1, false), "{st:?}");
    assert_eq!((st.remote, st.identity), (address, identity));
}
