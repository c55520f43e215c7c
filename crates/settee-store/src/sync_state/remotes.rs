//! Registering a remote ([`Database::register_remote`]) and listing the registered ones.

use serde_json::{Map, Value};

use super::all_unsynced;
use super::registry::{clear_unregistered, next_number, RemoteReg, SyncCounts};
use super::Remote;
use crate::database::Flush;
use crate::keys;
use crate::{Database, Result};

impl Database {
    /// Registers `name` as a remote this store syncs with, or updates it: the keys of `meta`
    /// replace those the remote's meta had (the replicator records its sync filters there;
    /// the store does not read them). Returns whether the remote is new.
    ///
    /// A new remote is known to hold nothing yet, so every document is unsynced with all its
    /// leaves: one small write says so (a pending interval up to the update seq, see the
    /// module docs); from then on writes and confirmations keep the state. Before
    /// registration a remote's state reads the same way: every document unpushed.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::SyncState;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let rev = db.put(json!({"_id": "a"}))?.rev.unwrap();
    /// assert!(db.register_remote("http://couch/db", Default::default())?);
    /// assert_eq!(db.sync_state("http://couch/db", "a")?, Some(SyncState::Unpushed { revs: vec![rev.clone()] }));
    /// // The remote confirms it holds the revision (a push wrote it).
    /// db.record_remote_revs("http://couch/db", &[("a".to_string(), vec![rev])].into(), &[])?;
    /// assert_eq!(db.sync_state("http://couch/db", "a")?, Some(SyncState::Synced));
    /// assert_eq!(db.sync_counts("http://couch/db")?.unsynced, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Storage`] / [`crate::Error::Corrupt`]; nothing is registered on error.
    pub fn register_remote(&self, name: &str, meta: Map<String, Value>) -> Result<bool> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut reg = inner.registry().clone();
        let mut batch = sled::Batch::default();
        let fresh = match reg.remotes.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                let before = r.meta.clone();
                r.meta.extend(meta);
                if r.meta == before {
                    return Ok(false);
                }
                false
            }
            None => {
                // Every document is unsynced with a new remote: one pending interval up to
                // the update seq says so for all of them, and the counts come from the
                // store's counters (each document has one live by-seq entry).
                clear_unregistered(&inner.tree, &reg, &|e| inner.storage(e))?;
                let (docs, pending) = all_unsynced(*guard);
                reg.remotes.push(RemoteReg {
                    num: next_number(&reg)?,
                    name: name.to_owned(),
                    meta,
                    counts: SyncCounts {
                        unsynced: docs,
                        rejected: 0,
                    },
                    pending,
                });
                batch.insert(keys::META_SYNC, reg.encode_counts());
                true
            }
        };
        batch.insert(keys::META_REMOTES, reg.encode_remotes()?);
        let counters = *guard;
        inner.commit_with(&mut guard, batch, counters, Flush::AsConfigured, || {
            *inner.registry_mut() = reg;
        })?;
        if fresh {
            tracing::info!(remote = name, "registered a remote for sync state");
        }
        Ok(fresh)
    }

    /// The remotes this store syncs with, with their counts.
    pub fn remotes(&self) -> Vec<Remote> {
        self.inner
            .registry()
            .remotes
            .iter()
            .map(|r| Remote {
                name: r.name.clone(),
                meta: r.meta.clone(),
                counts: r.counts,
            })
            .collect()
    }

    /// The registered remote `name`, if it is one.
    pub fn remote(&self, name: &str) -> Option<Remote> {
        self.remotes().into_iter().find(|r| r.name == name)
    }
}
