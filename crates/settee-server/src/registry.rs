//! The databases a server serves: a name for each store, opened on first use and kept open,
//! created under the data directory by `PUT /{db}`, closed and removed by `DELETE /{db}`.
//! Names follow CouchDB's rule; their directory names are `dir_name.rs`'s.
//!
//! **Invariant:** a store directory is removed only once no request holds its database
//! (no `Arc<OpenDb>` and no store call in flight), and it is first renamed out of the
//! way, so that a new database of the same name never opens the old one's files. Stores
//! named on the command line are the operator's: `DELETE` refuses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use settee_store::{Database, OpenOptions};
use tokio_util::sync::CancellationToken;

use crate::dir_name;
use crate::error::HttpError;
use crate::error::{Error, Result};
use crate::options::ServerOptions;

/// The authentication database's name: the one system database Settee serves, created in
/// a data directory at start.
pub(crate) const USERS_DB: &str = "_users";

/// The security object CouchDB 3 gives a database nobody has set one on: admins only.
pub(crate) fn default_security() -> Map<String, Value> {
    let v = json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}});
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An open database.
pub(crate) struct OpenDb {
    pub(crate) name: String,
    pub(crate) db: Database,
    /// Cancelled when the database is being deleted: live feeds on it end. Replaced by a
    /// fresh token when a delete is refused.
    closed: Mutex<CancellationToken>,
    /// One clone per store call running on the blocking pool ([`OpenDb::run`]): such a
    /// call goes on after its request is dropped, and the store must not be removed
    /// under it.
    calls: Arc<()>,
    /// The security object in force (CouchDB 3's admins-only default when none was set),
    /// kept here so that checking access reads no storage.
    security: RwLock<Map<String, Value>>,
    /// PBKDF2 rounds for passwords written here (used by `_users` only).
    pub(crate) password_iterations: u32,
    /// The server's JavaScript workers.
    pub(crate) js: crate::js::Js,
}

impl OpenDb {
    fn new(
        name: String,
        db: Database,
        security: Map<String, Value>,
        password_iterations: u32,
        js: crate::js::Js,
    ) -> OpenDb {
        OpenDb {
            name,
            db,
            closed: Mutex::new(CancellationToken::new()),
            calls: Arc::new(()),
            security: RwLock::new(security),
            password_iterations,
            js,
        }
    }

    /// Cancelled when the database is being deleted: a live feed selects on it and ends.
    pub(crate) fn closed(&self) -> CancellationToken {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The security object in force.
    pub(crate) fn security(&self) -> Map<String, Value> {
        self.security
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs a store call on the blocking pool (every store call of the server goes
    /// through here: sled must not block a runtime worker). If the returned future is
    /// dropped (the client went away), the call's JavaScript is cancelled: its worker is
    /// killed and the call ends with an error.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, HttpError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, HttpError> + Send + 'static,
    {
        let db = self.db.clone();
        let call = self.calls.clone();
        crate::js::spawn_cancellable(move || {
            let _call = call;
            f(&db)
        })
        .await
        .map_err(|e| HttpError::internal(format!("a store call failed: {e}")))?
    }

    /// Records a security object just stored.
    pub(crate) fn cache_security(&self, security: Map<String, Value>) {
        *self.security.write().unwrap_or_else(|p| p.into_inner()) = security;
    }
}

/// Where a served database lives, and its handle once opened.
struct Slot {
    path: PathBuf,
    /// Whether `DELETE /{db}` may remove it: a store of the data directory, not one named
    /// on the command line.
    deletable: bool,
    open: tokio::sync::OnceCell<Arc<OpenDb>>,
}

pub(crate) struct Registry {
    data_dir: Option<PathBuf>,
    cache_capacity: u64,
    /// How long a delete waits for the requests holding its database.
    delete_wait: Duration,
    password_iterations: u32,
    js: crate::js::Js,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Held by create and delete, so that a database is never created in a directory
    /// that is still being removed.
    lifecycle: tokio::sync::Mutex<()>,
}

impl Registry {
    /// The registry for `opts`: its stores and every store found in its data directory.
    pub(crate) fn new(opts: &ServerOptions) -> Result<Registry> {
        let js = crate::js::Js::new(opts.js_worker.clone(), opts.js_limits);
        let mut slots = BTreeMap::new();
        if let Some(dir) = &opts.data_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::Config {
                reason: format!("cannot create the data directory {}: {e}", dir.display()),
            })?;
            let entries = std::fs::read_dir(dir).map_err(|e| Error::Config {
                reason: format!("cannot read the data directory {}: {e}", dir.display()),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !is_store_dir(&path) || name.starts_with('.') {
                    continue;
                }
                match dir_name::name_of_dir(&path, name) {
                    Some(name) => {
                        slots.insert(name, Slot::new(path, true));
                    }
                    None => tracing::warn!(
                        store = %path.display(),
                        "a store in the data directory has no readable database name; not served"
                    ),
                }
            }
        }
        for db in &opts.databases {
            let path = db.path().to_path_buf();
            let name = named_store(&path)?;
            let security = db
                .security()
                .map_err(|source| Error::Store {
                    path: path.clone(),
                    source,
                })?
                .unwrap_or_else(default_security);
            let open = Arc::new(OpenDb::new(
                name.clone(),
                db.clone(),
                security,
                opts.password_iterations,
                js.clone(),
            ));
            slots.insert(
                name,
                Arc::new(Slot {
                    path,
                    deletable: false,
                    open: tokio::sync::OnceCell::new_with(Some(open)),
                }),
            );
        }
        for path in &opts.stores {
            let name = named_store(path)?;
            if let Some(other) = slots.get(&name) {
                if other.path != *path {
                    return Err(Error::Config {
                        reason: format!(
                            "two stores would be served as {name:?}: {} and {}",
                            other.path.display(),
                            path.display()
                        ),
                    });
                }
            }
            slots.insert(name, Slot::new(path.clone(), false));
        }
        Ok(Registry {
            data_dir: opts.data_dir.clone(),
            cache_capacity: opts.cache_capacity,
            delete_wait: opts.limits.delete_wait,
            password_iterations: opts.password_iterations,
            js,
            slots: Mutex::new(slots),
            lifecycle: tokio::sync::Mutex::new(()),
        })
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Opens every served store now (at startup, so that a store in use or damaged is
    /// reported before the server listens).
    pub(crate) async fn open_all(&self) -> Result<()> {
        let names = self.names();
        for name in names {
            if let Some(slot) = self.slot(&name) {
                self.open_slot(&name, &slot, false)
                    .await
                    .map_err(|source| Error::Store {
                        path: slot.path.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    async fn open_slot(
        &self,
        name: &str,
        slot: &Slot,
        create: bool,
    ) -> settee_store::Result<Arc<OpenDb>> {
        let password_iterations = self.password_iterations;
        let js = self.js.clone();
        let opts = OpenOptions {
            create,
            cache_capacity: self.cache_capacity,
            ..OpenOptions::new(&slot.path)
        };
        slot.open
            .get_or_try_init(|| async {
                let (db, security) = tokio::task::spawn_blocking(move || {
                    let db = Database::open_with(opts)?;
                    let security = db.security()?.unwrap_or_else(default_security);
                    Ok::<_, settee_store::Error>((db, security))
                })
                .await
                .map_err(|e| settee_store::Error::Corrupt {
                    what: format!("opening the store panicked: {e}"),
                })??;
                Ok(Arc::new(OpenDb::new(
                    name.to_owned(),
                    db,
                    security,
                    password_iterations,
                    js,
                )))
            })
            .await
            .cloned()
    }

    /// Creates the `_users` database in the data directory if there is one and it has none
    /// (CouchDB's `chttpd_auth_cache` does so at start).
    pub(crate) async fn ensure_users_db(&self) -> Result<()> {
        let users = USERS_DB;
        if self.data_dir.is_none() || self.slot(users).is_some() {
            return Ok(());
        }
        match self.create(users).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Config {
                reason: format!("cannot create the {users} database: {}", e.reason),
            }),
        }
    }

    /// The database `name`, opened if needed; `None` if no such database is served.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Arc<OpenDb>>, HttpError> {
        let Some(slot) = self.slot(name) else {
            return Ok(None);
        };
        match self.open_slot(name, &slot, false).await {
            Ok(db) => Ok(Some(db)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every served database's name and store directory.
    pub(crate) fn paths(&self) -> Vec<(String, PathBuf)> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, s)| (n.clone(), s.path.clone()))
            .collect()
    }

    /// The names of the served databases, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Creates database `name` under the data directory (`PUT /{db}`).
    pub(crate) async fn create(&self, name: &str) -> Result<Arc<OpenDb>, HttpError> {
        check_db_name(name)?;
        let _guard = self.lifecycle.lock().await;
        if self.slot(name).is_some() {
            return Err(HttpError::new(
                StatusCode::PRECONDITION_FAILED,
                "file_exists",
                "The database could not be created, the file already exists.",
            ));
        }
        let Some(dir) = &self.data_dir else {
            return Err(HttpError::forbidden(
                "this server has no data directory to create databases in (settee serve --data-dir)",
            ));
        };
        let slot = Slot::new(dir.join(dir_name::dir_of_name(name)), true);
        let db = self.open_slot(name, &slot, true).await?;
        if let Err(e) = dir_name::record_name(&slot.path, name) {
            tracing::error!(db = name, store = %slot.path.display(), error = %e,
                "cannot record the database's name in its store");
            return Err(HttpError::internal(
                "the database's name could not be recorded in its store (see the server's log)",
            ));
        }
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), slot);
        Ok(db)
    }

    /// Deletes database `name` and its store directory (`DELETE /{db}`): it stops being
    /// served at once and its live feeds end; once no request holds it (waiting at most
    /// `delete_wait`), its directory is renamed away and removed. A database still held
    /// after the wait is left as it was (409), and a store named on the command line is
    /// never removed (403).
    pub(crate) async fn delete(&self, name: &str) -> Result<(), HttpError> {
        let _guard = self.lifecycle.lock().await;
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot = slots.get(name).ok_or_else(HttpError::db_not_found)?;
            if !slot.deletable {
                return Err(HttpError::forbidden(
                    "this database is a store named on settee serve's command line; it is the operator's to remove, not the server's",
                ));
            }
            slots.remove(name).ok_or_else(HttpError::db_not_found)?
        };
        if let Some(open) = slot.open.get() {
            open.closed().cancel();
        }
        let deadline = tokio::time::Instant::now() + self.delete_wait;
        while !is_released(&slot) {
            if tokio::time::Instant::now() >= deadline {
                // Serve it again, as it was: no request may write into a directory being
                // removed, and this one's requests are still running.
                if let Some(open) = slot.open.get() {
                    *open.closed.lock().unwrap_or_else(|p| p.into_inner()) =
                        CancellationToken::new();
                }
                self.slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), slot);
                return Err(HttpError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "the database is in use by requests still running; it was not deleted, try again",
                ));
            }
            // Holders are request tasks that end on their own (feeds were cancelled
            // above); polling keeps the handles free of any delete-time bookkeeping.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let path = slot.path.clone();
        // INVARIANT: `is_released` saw no other handle on the slot, and it is out of the
        // map, so no new one can be made.
        if let Ok(slot) = Arc::try_unwrap(slot) {
            drop(slot.open.into_inner());
        }
        if !is_store_dir(&path) {
            // Never remove a directory that is not a store (a served path that was
            // replaced behind our back).
            tracing::error!(db = name, store = %path.display(), "not a Settee store; not removed");
            return Err(HttpError::internal(
                "the database's directory is not a Settee store; it was not removed",
            ));
        }
        tokio::task::spawn_blocking(move || remove_store(&path))
            .await
            .map_err(|e| HttpError::internal(format!("removing the store: {e}")))?
            .map_err(|e| {
                tracing::error!(db = name, error = %e, "removing the store");
                HttpError::internal(
                    "the database's files could not be removed (see the server's log)",
                )
            })?;
        Ok(())
    }
}

/// Whether nothing but the registry holds the database: no request has its slot or its
/// handle, and no store call runs on it.
fn is_released(slot: &Arc<Slot>) -> bool {
    if Arc::strong_count(slot) > 1 {
        return false;
    }
    match slot.open.get() {
        None => true,
        Some(open) => Arc::strong_count(open) == 1 && Arc::strong_count(&open.calls) == 1,
    }
}

/// Removes a store directory: first renamed to a hidden name beside it (atomic, so the
/// database's name is free at once and a new database never sees half-removed files),
/// then removed. A hidden leftover (removal failed) is never served.
fn remove_store(path: &Path) -> std::io::Result<()> {
    let hidden = path.with_file_name(format!(".deleted-{}", crate::uuid::new_uuid()));
    std::fs::rename(path, &hidden)?;
    std::fs::remove_dir_all(&hidden)
}

impl Slot {
    fn new(path: PathBuf, deletable: bool) -> Arc<Slot> {
        Arc::new(Slot {
            path,
            deletable,
            open: tokio::sync::OnceCell::new(),
        })
    }
}

/// Whether `path` holds a sled database (the files a Settee store has).
/// The database name of a store named on the command line (or opened by the caller): its
/// directory's name, `%2F` read as `/`.
fn named_store(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|d| d.replace("%2F", "/"))
        .ok_or_else(|| Error::Config {
            reason: format!("{} has no usable directory name", path.display()),
        })
}

fn is_store_dir(path: &Path) -> bool {
    path.join("db").is_file() && path.join("conf").is_file()
}

/// CouchDB's rule for database names: a lowercase letter, then lowercase letters, digits
/// and `_$()+-/`; or `_users`, the one system database Settee serves.
pub(crate) fn check_db_name(name: &str) -> Result<(), HttpError> {
    if name == USERS_DB {
        return Ok(());
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+-/".contains(c));
    if first_ok && rest_ok && name.len() <= 238 {
        return Ok(());
    }
    Err(HttpError::bad_request(format!(
        "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
    ))
    .with_error("illegal_database_name"))
}

impl HttpError {
    fn with_error(mut self, error: &str) -> HttpError {
        error.clone_into(&mut self.error);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_couchdb() {
        for ok in ["a", "db_1", "a/b", "x$()+-"] {
            assert!(check_db_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "1a", "_userz", "a b", "a.b"] {
            let e = check_db_name(bad).unwrap_err();
            assert_eq!(e.error, "illegal_database_name", "{bad}");
        }
    }
}
