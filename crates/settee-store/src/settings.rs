//! Database-level settings kept in meta records: CouchDB's `_revs_limit` and `_security`.
//! The store keeps them and hands them back; what `_security` means (who may read or
//! write) is the HTTP server's business.

use std::sync::atomic::Ordering;

use serde_json::{Map, Value};

use crate::keys;
use crate::{Database, Error, Result};

impl Database {
    /// Sets how many revisions per branch later writes keep (`PUT /{db}/_revs_limit`).
    /// Stored in the database, so it outlives this handle and overrides
    /// [`crate::OpenOptions::revs_limit`] on later opens. Existing trees are stemmed when
    /// their documents are next written, as in CouchDB.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.set_revs_limit(5)?;
    /// drop(db);
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// assert_eq!(db.revs_limit(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadRequest`] for 0 (CouchDB: "The revs limit must be a positive
    /// integer"); [`Error::Storage`] if it cannot be written.
    pub fn set_revs_limit(&self, limit: u64) -> Result<()> {
        if limit == 0 {
            return Err(Error::bad_request(
                "The revs limit must be a positive integer",
            ));
        }
        let inner = &*self.inner;
        // Under the writer lock: a write in progress stems with the limit it started with.
        let _guard = inner.lock_writer();
        inner.check_writable()?;
        inner
            .tree
            .insert(keys::META_REVS_LIMIT, &limit.to_be_bytes()[..])
            .map_err(|e| inner.storage(e))?;
        inner.tree.flush().map_err(|e| inner.storage(e))?;
        inner.revs_limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// The database's security object (`GET /{db}/_security`), or `None` if none was ever
    /// set (a server then applies its default; an object set to `{}` is `Some`).
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] if it cannot be read.
    pub fn security(&self) -> Result<Option<Map<String, Value>>> {
        let inner = &self.inner;
        match inner
            .tree
            .get(keys::META_SECURITY)
            .map_err(|e| inner.storage(e))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("security object: {e}"))),
            None => Ok(None),
        }
    }

    /// Replaces the security object (`PUT /{db}/_security`), durably. The store does not
    /// interpret it beyond requiring a JSON object.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let sec = serde_json::json!({"members": {"names": ["alice"]}});
    /// db.set_security(sec.as_object().unwrap().clone())?;
    /// assert_eq!(db.security()?.unwrap()["members"]["names"][0], "alice");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] if it cannot be written.
    pub fn set_security(&self, security: Map<String, Value>) -> Result<()> {
        let inner = &*self.inner;
        let bytes = serde_json::to_vec(&security)
            .map_err(|e| Error::bad_request(format!("security object: {e}")))?;
        let _guard = inner.lock_writer();
        inner.check_writable()?;
        inner
            .tree
            .insert(keys::META_SECURITY, bytes)
            .map_err(|e| inner.storage(e))?;
        inner.tree.flush().map(|_| ()).map_err(|e| inner.storage(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revs_limit_applies_to_later_writes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::open(&path).unwrap();
        db.set_revs_limit(2).unwrap();
        let mut rev = db
            .put(serde_json::json!({"_id": "a"}))
            .unwrap()
            .rev
            .unwrap();
        for _ in 0..4 {
            rev = db
                .put(serde_json::json!({"_id": "a", "_rev": rev.to_string()}))
                .unwrap()
                .rev
                .unwrap();
        }
        let opts = crate::GetOptions {
            revs: true,
            ..Default::default()
        };
        let doc = db.get("a", &opts).unwrap();
        assert_eq!(doc["_revisions"]["ids"].as_array().unwrap().len(), 2);
        drop(db);
        let db = Database::open(&path).unwrap();
        assert_eq!(db.revs_limit(), 2);
        assert_eq!(db.set_revs_limit(0).unwrap_err().name(), "bad_request");
    }

    #[test]
    fn security_object_round_trips_and_defaults_to_empty() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        assert!(db.security().unwrap().is_none());
        let sec = serde_json::json!({"admins": {"roles": ["boss"]}});
        db.set_security(sec.as_object().unwrap().clone()).unwrap();
        assert_eq!(Value::Object(db.security().unwrap().unwrap()), sec);
    }
}
