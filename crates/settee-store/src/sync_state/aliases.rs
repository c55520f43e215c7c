//! Other names of a registered remote: the `Maliases` record, a map from a name the
//! replicator knew a remote by before it learned the remote's identity (its *address*: for
//! a CouchDB database, the URL with the user and without the password) to that identity.
//! An offline question asked with an address ([`Database::resolve_remote`]) then reads the
//! state kept under the identity, whichever spelling of the server's URL it was learned
//! through. What an identity is, and when it is learned, is the replicator's business; the
//! store keeps the names it is given.

use std::collections::BTreeMap;

use super::registry::Registry;
use crate::database::Flush;
use crate::keys;
use crate::{Database, Error, Result};

/// The address → identity map, as `Maliases` holds it (JSON object, sorted by address).
pub(crate) type Aliases = BTreeMap<String, String>;

/// Decodes the `Maliases` record (absent: no aliases).
pub(crate) fn decode_aliases(bytes: Option<&[u8]>) -> Result<Aliases> {
    match bytes {
        Some(v) => serde_json::from_slice(v)
            .map_err(|e| Error::corrupt(format!("the remote aliases record: {e}"))),
        None => Ok(Aliases::new()),
    }
}

fn encode_aliases(aliases: &Aliases) -> Result<Vec<u8>> {
    serde_json::to_vec(aliases)
        .map_err(|e| Error::corrupt(format!("encoding the remote aliases: {e}")))
}

/// What [`Database::learn_remote_alias`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasLearned {
    /// The address already named the identity, and nothing was kept under the address:
    /// nothing was written.
    Known,
    /// The address now names the identity; nothing was kept under the address.
    Recorded,
    /// The address now names the identity, and the remote registered under the address
    /// (its sync state, counts and meta) was renamed to the identity in the same write.
    Moved,
    /// The address now names the identity; both had a registered remote, and the one
    /// under the identity (the newer state) is kept. The one under the address is left
    /// as it is, and no question reads it any more.
    Shadowed,
}

impl Database {
    /// The name remote `name` is kept under: the identity `name` is an alias of
    /// ([`Database::learn_remote_alias`]), or `name` itself. Needs no disk read.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// assert_eq!(db.resolve_remote("http://127.0.0.1:5984/notes"), "http://127.0.0.1:5984/notes");
    /// db.learn_remote_alias("http://127.0.0.1:5984/notes", "couchdb:f00d/notes")?;
    /// assert_eq!(db.resolve_remote("http://127.0.0.1:5984/notes"), "couchdb:f00d/notes");
    /// assert_eq!(db.resolve_remote("couchdb:f00d/notes"), "couchdb:f00d/notes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve_remote(&self, name: &str) -> String {
        self.inner
            .registry()
            .aliases
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The aliases this store knows: address → identity.
    pub fn remote_aliases(&self) -> BTreeMap<String, String> {
        self.inner.registry().aliases.clone()
    }

    /// Records that `address` names the remote whose identity is `identity`, and moves
    /// what was kept under `address` (a remote registered under it by a build that named
    /// remotes by address) to `identity`, when `identity` has nothing yet: the remote's
    /// number, and so its sync-state entries, counts, pending intervals and meta, stay as
    /// they are under the new name. The alias and the rename are one atomic write.
    /// Learning the same alias again writes nothing.
    ///
    /// ```
    /// use settee_store::{AliasLearned, SyncState};
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let rev = db.put(serde_json::json!({"_id": "a"}))?.rev.unwrap();
    /// let url = "http://admin@127.0.0.1:5984/notes";
    /// db.register_remote(url, Default::default())?;
    /// db.record_remote_revs(url, &[("a".to_string(), vec![rev])].into(), &[])?;
    /// assert_eq!(db.learn_remote_alias(url, "couchdb:admin@f00d/notes")?, AliasLearned::Moved);
    /// assert_eq!(db.sync_state("couchdb:admin@f00d/notes", "a")?, Some(SyncState::Synced));
    /// assert!(db.remote(url).is_none());
    /// assert_eq!(db.learn_remote_alias(url, "couchdb:admin@f00d/notes")?, AliasLearned::Known);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Storage`] / [`crate::Error::Corrupt`]; nothing changes on error.
    pub fn learn_remote_alias(&self, address: &str, identity: &str) -> Result<AliasLearned> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut reg: Registry = inner.registry().clone();
        let known = reg.aliases.get(address).map(String::as_str) == Some(identity);
        let under_address = reg.remotes.iter().position(|r| r.name == address);
        let under_identity = reg.remotes.iter().any(|r| r.name == identity);
        let outcome = match (under_address, under_identity) {
            (Some(i), false) if address != identity => {
                if let Some(r) = reg.remotes.get_mut(i) {
                    r.name = identity.to_owned();
                }
                AliasLearned::Moved
            }
            (Some(_), true) if address != identity && !known => AliasLearned::Shadowed,
            _ if known || address == identity => return Ok(AliasLearned::Known),
            _ => AliasLearned::Recorded,
        };
        reg.aliases.insert(address.to_owned(), identity.to_owned());
        let mut batch = sled::Batch::default();
        batch.insert(keys::META_ALIASES, encode_aliases(&reg.aliases)?);
        if outcome == AliasLearned::Moved {
            batch.insert(keys::META_REMOTES, reg.encode_remotes()?);
        }
        let counters = *guard;
        inner.commit_with(&mut guard, batch, counters, Flush::AsConfigured, || {
            *inner.registry_mut() = reg;
        })?;
        tracing::info!(
            address,
            identity,
            ?outcome,
            "learned the identity of a remote"
        );
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SyncState;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        (dir, db)
    }

    #[test]
    fn an_alias_resolves_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Database::open(&path).unwrap();
            assert_eq!(db.resolve_remote("http://h/db"), "http://h/db");
            assert_eq!(
                db.learn_remote_alias("http://h/db", "couchdb:u1/db")
                    .unwrap(),
                AliasLearned::Recorded
            );
            assert_eq!(
                db.learn_remote_alias("http://localhost/db", "couchdb:u1/db")
                    .unwrap(),
                AliasLearned::Recorded
            );
            assert_eq!(
                db.learn_remote_alias("http://h/db", "couchdb:u1/db")
                    .unwrap(),
                AliasLearned::Known
            );
        }
        let db = Database::open(&path).unwrap();
        assert_eq!(db.resolve_remote("http://h/db"), "couchdb:u1/db");
        assert_eq!(db.resolve_remote("http://localhost/db"), "couchdb:u1/db");
        assert_eq!(db.resolve_remote("http://other/db"), "http://other/db");
        assert_eq!(db.remote_aliases().len(), 2);
        // Another server answers at the address now: the alias follows it.
        assert_eq!(
            db.learn_remote_alias("http://h/db", "couchdb:u2/db")
                .unwrap(),
            AliasLearned::Recorded
        );
        assert_eq!(db.resolve_remote("http://h/db"), "couchdb:u2/db");
        db.verify().unwrap();
    }

    #[test]
    fn state_kept_under_the_address_moves_to_the_identity() {
        let (_dir, db) = store();
        let a = db.put(json!({"_id": "a"})).unwrap().rev.unwrap();
        db.put(json!({"_id": "b"})).unwrap();
        let url = "http://admin@127.0.0.1:5984/db";
        let meta = [("push_filter".to_owned(), json!(null))]
            .into_iter()
            .collect();
        db.register_remote(url, meta).unwrap();
        db.record_remote_revs(url, &[("a".to_string(), vec![a])].into(), &[])
            .unwrap();
        assert_eq!(db.sync_counts(url).unwrap().unsynced, 1);
        let id = "couchdb:admin@f00d/db";
        assert_eq!(db.learn_remote_alias(url, id).unwrap(), AliasLearned::Moved);
        assert!(db.remote(url).is_none());
        let moved = db.remote(id).unwrap();
        assert_eq!(moved.counts.unsynced, 1);
        assert!(moved.meta.contains_key("push_filter"));
        assert_eq!(db.sync_state(id, "a").unwrap(), Some(SyncState::Synced));
        assert!(matches!(
            db.sync_state(id, "b").unwrap(),
            Some(SyncState::Unpushed { .. })
        ));
        // A write after the move keeps the state under the new name.
        db.put(json!({"_id": "c"})).unwrap();
        assert_eq!(db.sync_counts(id).unwrap().unsynced, 2);
        db.verify().unwrap();
    }

    #[test]
    fn an_identity_with_state_of_its_own_keeps_it() {
        let (_dir, db) = store();
        db.put(json!({"_id": "a"})).unwrap();
        let (url, id) = ("http://localhost/db", "couchdb:f00d/db");
        db.register_remote(url, Default::default()).unwrap();
        db.register_remote(id, Default::default()).unwrap();
        assert_eq!(
            db.learn_remote_alias(url, id).unwrap(),
            AliasLearned::Shadowed
        );
        assert!(db.remote(url).is_some() && db.remote(id).is_some());
        assert_eq!(db.resolve_remote(url), id);
        assert_eq!(db.learn_remote_alias(url, id).unwrap(), AliasLearned::Known);
        db.verify().unwrap();
    }
}
