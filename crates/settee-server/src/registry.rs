//! The databases a server serves: a name for each store, opened on first use and kept open,
//! created under the data directory by `PUT /{db}`, closed and removed by `DELETE /{db}`.
//! Names follow CouchDB's rule; a name's `/` is `%2F` in its directory name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Map, Value};
use settee_store::{Database, OpenOptions};
use tokio_util::sync::CancellationToken;

use crate::auth::default_security;
use crate::error::HttpError;
use crate::{Error, Result, ServerOptions};

/// An open database.
pub(crate) struct OpenDb {
    pub(crate) name: String,
    pub(crate) db: Database,
    /// Cancelled when the database is deleted: live feeds on it end.
    pub(crate) closed: CancellationToken,
    /// The security object in force (CouchDB 3's admins-only default when none was set),
    /// kept here so that checking access reads no storage.
    security: RwLock<Map<String, Value>>,
    /// PBKDF2 rounds for passwords written here (used by `_users` only).
    pub(crate) password_iterations: u32,
}

impl OpenDb {
    /// The security object in force.
    pub(crate) fn security(&self) -> Map<String, Value> {
        self.security
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs a store call on the blocking pool (every store call of the server goes
    /// through here: sled must not block a runtime worker).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, HttpError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, HttpError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
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
    open: tokio::sync::OnceCell<Arc<OpenDb>>,
}

pub(crate) struct Registry {
    data_dir: Option<PathBuf>,
    cache_capacity: u64,
    password_iterations: u32,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Held by create and delete, so that a database is never created in a directory
    /// that is still being removed.
    lifecycle: tokio::sync::Mutex<()>,
}

/// How long `DELETE /{db}` waits for requests still using the database to finish before
/// it removes the files anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Registry {
    /// The registry for `opts`: its stores and every store found in its data directory.
    pub(crate) fn new(opts: &ServerOptions) -> Result<Registry> {
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
                if is_store_dir(&path) && !name.starts_with('.') {
                    slots.insert(name_of_dir(name), Slot::new(path));
                }
            }
        }
        for db in &opts.databases {
            let path = db.path().to_path_buf();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(name_of_dir)
                .ok_or_else(|| Error::Config {
                    reason: format!("{} has no usable directory name", path.display()),
                })?;
            let security = db
                .security()
                .map_err(|source| Error::Store {
                    path: path.clone(),
                    source,
                })?
                .unwrap_or_else(default_security);
            let open = Arc::new(OpenDb {
                name: name.clone(),
                db: db.clone(),
                closed: CancellationToken::new(),
                security: RwLock::new(security),
                password_iterations: opts.password_iterations,
            });
            slots.insert(
                name,
                Arc::new(Slot {
                    path,
                    open: tokio::sync::OnceCell::new_with(Some(open)),
                }),
            );
        }
        for path in &opts.stores {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(name_of_dir)
                .ok_or_else(|| Error::Config {
                    reason: format!("{} has no usable directory name", path.display()),
                })?;
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
            slots.insert(name, Slot::new(path.clone()));
        }
        Ok(Registry {
            data_dir: opts.data_dir.clone(),
            cache_capacity: opts.cache_capacity,
            password_iterations: opts.password_iterations,
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
                Ok(Arc::new(OpenDb {
                    name: name.to_owned(),
                    db,
                    closed: CancellationToken::new(),
                    security: RwLock::new(security),
                    password_iterations,
                }))
            })
            .await
            .cloned()
    }

    /// Creates the `_users` database in the data directory if there is one and it has none
    /// (CouchDB's `chttpd_auth_cache` does so at start).
    pub(crate) async fn ensure_users_db(&self) -> Result<()> {
        let users = crate::auth::users::USERS_DB;
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
        let slot = Slot::new(dir.join(dir_of_name(name)));
        let db = self.open_slot(name, &slot, true).await?;
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), slot);
        Ok(db)
    }

    /// Deletes database `name` and its store directory (`DELETE /{db}`): it stops being
    /// served at once, its live feeds end, and its files go once the requests still using
    /// it are done (after at most [`CLOSE_WAIT`]).
    pub(crate) async fn delete(&self, name: &str) -> Result<(), HttpError> {
        let _guard = self.lifecycle.lock().await;
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(HttpError::db_not_found)?;
        let path = slot.path.clone();
        if let Ok(slot) = Arc::try_unwrap(slot) {
            if let Some(open) = slot.open.into_inner() {
                open.closed.cancel();
                // Wait (bounded) for in-flight requests to drop their handles, so that sled
                // has closed its files before they are removed.
                let deadline = Instant::now() + CLOSE_WAIT;
                let mut open = open;
                loop {
                    match Arc::try_unwrap(open) {
                        Ok(db) => {
                            drop(db);
                            break;
                        }
                        Err(still) if Instant::now() < deadline => {
                            open = still;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if !is_store_dir(&path) {
            // Never remove a directory that is not a store (a served path that was
            // replaced behind our back).
            return Err(HttpError::internal(format!(
                "{} is not a Settee store; it was not removed",
                path.display()
            )));
        }
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path))
            .await
            .map_err(|e| HttpError::internal(format!("removing the store: {e}")))?
            .map_err(|e| HttpError::internal(format!("removing the store: {e}")))?;
        Ok(())
    }
}

impl Slot {
    fn new(path: PathBuf) -> Arc<Slot> {
        Arc::new(Slot {
            path,
            open: tokio::sync::OnceCell::new(),
        })
    }
}

/// Whether `path` holds a sled database (the files a Settee store has).
fn is_store_dir(path: &Path) -> bool {
    path.join("db").is_file() && path.join("conf").is_file()
}

/// The directory name of database `name`: `/` (allowed in CouchDB names) becomes `%2F`.
fn dir_of_name(name: &str) -> String {
    name.replace('/', "%2F")
}

fn name_of_dir(dir: &str) -> String {
    dir.replace("%2F", "/")
}

/// CouchDB's rule for database names: a lowercase letter, then lowercase letters, digits
/// and `_$()+-/`; or `_users`, the one system database Settee serves.
pub(crate) fn check_db_name(name: &str) -> Result<(), HttpError> {
    if name == crate::auth::users::USERS_DB {
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

    #[test]
    fn slash_in_a_name_is_escaped_in_its_directory() {
        assert_eq!(dir_of_name("a/b"), "a%2Fb");
        assert_eq!(name_of_dir("a%2Fb"), "a/b");
    }
}
