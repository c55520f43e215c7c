//! A private database per user, as CouchDB's `couch_peruser`: for each user document in
//! `_users`, a database `userdb-<hex of the name>` whose security object lists the user in
//! `admins.names` and `members.names`; when the user is deleted, the database is deleted
//! too (`delete_dbs`) or the user is taken off its lists.
//!
//! CouchDB follows `_users`' changes feed in the background; Settee catches up with the
//! same feed right after each write to `_users` it answers (and once at start), so that
//! a user's database exists when the `PUT` of the user returns.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use settee_store::ChangesOptions;

use crate::auth::users::{hex_encode, USER_PREFIX};
use crate::error::HttpError;
use crate::options::PerUser;
use crate::registry::{default_security, OpenDb, Registry, USERS_DB};

/// The per-user databases' state: the `_users` sequence handled so far.
pub(crate) struct PerUserDbs {
    settings: PerUser,
    since: tokio::sync::Mutex<u64>,
}

/// The database name of user `name`.
pub(crate) fn db_name(name: &str) -> String {
    format!("userdb-{}", hex_encode(name.as_bytes()))
}

impl PerUserDbs {
    pub(crate) fn new(settings: PerUser) -> PerUserDbs {
        PerUserDbs {
            settings,
            since: tokio::sync::Mutex::new(0),
        }
    }

    /// Creates, secures or deletes the databases of the users changed since the last call.
    pub(crate) async fn catch_up(&self, registry: &Registry) -> Result<(), HttpError> {
        let Some(users) = registry.get(USERS_DB).await? else {
            return Ok(());
        };
        // One catch-up at a time, so that two writes do not both create a database.
        let mut since = self.since.lock().await;
        let from = *since;
        let changes = users
            .run(move |db| {
                Ok(db.changes(&ChangesOptions {
                    since: from,
                    include_docs: true,
                    ..Default::default()
                })?)
            })
            .await?;
        for change in &changes.results {
            let Some(name) = change.id.strip_prefix(USER_PREFIX) else {
                continue;
            };
            let db = db_name(name);
            if change.deleted {
                if self.settings.delete_dbs {
                    match registry.delete(&db).await {
                        Err(e) if e.status != axum::http::StatusCode::NOT_FOUND => return Err(e),
                        _ => {}
                    }
                } else if let Some(open) = registry.get(&db).await? {
                    edit_names(&open, name, false).await?;
                }
                continue;
            }
            let is_user = change
                .doc
                .as_ref()
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                == Some("user");
            if !is_user {
                continue;
            }
            let open = match registry.get(&db).await? {
                Some(open) => open,
                None => registry.create(&db).await?,
            };
            edit_names(&open, name, true).await?;
        }
        *since = changes.last_seq.max(from);
        Ok(())
    }
}

/// Adds `name` to (or removes it from) `admins.names` and `members.names`.
async fn edit_names(open: &Arc<OpenDb>, name: &str, add: bool) -> Result<(), HttpError> {
    let mut sec = open.security();
    if sec == default_security() {
        // A new database: CouchDB's peruser gives it only its user.
        sec = Map::new();
    }
    let mut changed = false;
    for part in ["admins", "members"] {
        let entry = sec
            .entry(part)
            .or_insert_with(|| json!({"names": [], "roles": []}));
        let Value::Object(p) = entry else { continue };
        let names = p.entry("names").or_insert_with(|| json!([]));
        let Value::Array(names) = names else { continue };
        let listed = names.iter().any(|n| n == name);
        if add && !listed {
            names.push(Value::from(name));
            changed = true;
        } else if !add && listed {
            names.retain(|n| n != name);
            changed = true;
        }
    }
    if changed {
        let stored = sec.clone();
        open.run(move |db| Ok(db.set_security(stored)?)).await?;
        open.cache_security(sec);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_hex_encoded() {
        assert_eq!(super::db_name("ann"), "userdb-616e6e");
        assert_eq!(super::db_name("A b"), "userdb-412062");
    }
}
