//! The calls a local store and a server both answer, each written once over [`Target`]:
//! where a call goes (a store open in this process, or a database over HTTP: a server, or
//! the process that holds a store). [`crate::Documents`] is their public face; each file
//! here holds one family of calls.

use settee_couch::RemoteDb;
use settee_store::Database;

use crate::{Error, Result};

pub(crate) mod attachments;
pub(crate) mod documents;
pub(crate) mod feed;
pub(crate) mod mango;
pub(crate) mod typed;

/// Where a call goes. Cheap to clone (both sides are handles).
#[derive(Debug, Clone)]
pub enum Target {
    /// A store open in this process.
    Store(Database),
    /// A database over HTTP: a server, or the process that holds a store.
    Http(RemoteDb),
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    db: &Database,
    f: impl FnOnce(Database) -> settee_store::Result<R> + Send + 'static,
) -> Result<R> {
    let db = db.clone();
    Ok(tokio::task::spawn_blocking(move || f(db))
        .await
        .map_err(|e| Error::Task(e.to_string()))??)
}
