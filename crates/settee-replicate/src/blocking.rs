//! One blocking store call on tokio's blocking pool, its error naming the store: what every
//! file that talks to a local store from async code shares (`peer_store.rs`,
//! `store_fetch.rs`, `streamed.rs`, `offline.rs`), in a room of its own so that none of them
//! imports another for it.

use settee_store::Database;

use crate::{Error, Result};

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<R, F>(db: &Database, f: F) -> Result<R>
where
    F: FnOnce(Database) -> settee_store::Result<R> + Send + 'static,
    R: Send + 'static,
{
    let store = db.clone(); // cheap: an Arc-backed handle
    let path = db.path().display().to_string();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(|source| Error::Store { path, source })
}
