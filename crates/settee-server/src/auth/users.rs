//! The `_users` database as CouchDB 3.5 keeps it: documents `org.couchdb.user:NAME` with
//! `type: "user"`, `name` and `roles`; a `password` given in clear is never stored but
//! replaced by a PBKDF2 hash (`couch_users_db:before_doc_update`); CouchDB's `_auth`
//! validation rules (its `validate_doc_update`, written here in Rust); and what a
//! non-admin may read of it (`after_doc_read`: their own document only).
//!
//! Login checks a password against the stored hash with PBKDF2 in constant time, on the
//! blocking pool, and [`CredentialCache`] remembers verified passwords briefly, keyed by
//! a hash of the name, the password and the stored salt and key, so that a changed
//! password or a deleted user is never served from the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::auth::UserCtx;
use crate::error::HttpError;

/// The id prefix of a user document.
pub(crate) const USER_PREFIX: &str = "org.couchdb.user:";
/// CouchDB's refusal of a login whose user document is in conflict.
pub(crate) const CONFLICTED: &str =
    "User document conflicts must be resolved before the document is used for authentication purposes.";
/// The most PBKDF2 rounds a login runs. A user may write their own hash fields (CouchDB's
/// rules allow it), and a huge `iterations` would make every login of theirs hold a core
/// for minutes; such a user cannot log in (CouchDB's `max_iterations` is 10^9).
const MAX_ITERATIONS: u32 = 10_000_000;

/// A user's stored credentials, from their `_users` document.
#[derive(Debug, Clone)]
pub(crate) struct StoredUser {
    pub(crate) name: String,
    pub(crate) roles: Vec<String>,
    /// The salt (hex text as stored); also what session cookies are signed with, so a new
    /// password ends every cookie issued before it.
    pub(crate) salt: String,
    derived_key: Vec<u8>,
    iterations: u32,
    prf: Prf,
    /// The document has a `totp` secret (CouchDB's second factor, which Settee does not
    /// have: such a user cannot log in).
    pub(crate) has_totp: bool,
}

/// The PBKDF2 pseudo-random function (`pbkdf2_prf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prf {
    Sha256,
    Sha512,
}

impl StoredUser {
    /// The credentials in a user document; `None` for a document that is not a user with a
    /// PBKDF2 password (Settee does not verify CouchDB 1's `simple` SHA-1 scheme, nor
    /// `pbkdf2_prf: "sha"`: such users must set their password again).
    pub(crate) fn from_doc(doc: &Value) -> Option<StoredUser> {
        if doc.get("_deleted") == Some(&Value::Bool(true)) || doc.get("type")? != "user" {
            return None;
        }
        if doc.get("password_scheme")?.as_str()? != "pbkdf2" {
            return None;
        }
        let prf = match doc.get("pbkdf2_prf").and_then(Value::as_str) {
            Some("sha256") => Prf::Sha256,
            Some("sha512") => Prf::Sha512,
            _ => return None,
        };
        let iterations = u32::try_from(doc.get("iterations")?.as_u64()?)
            .ok()
            .filter(|n| *n <= MAX_ITERATIONS)?;
        Some(StoredUser {
            name: doc.get("name")?.as_str()?.to_owned(),
            roles: string_list(doc.get("roles")),
            salt: doc.get("salt")?.as_str()?.to_owned(),
            derived_key: hex_decode(doc.get("derived_key")?.as_str()?)?,
            iterations: iterations.max(1),
            prf,
            has_totp: doc.get("totp").is_some_and(|t| !t.is_null()),
        })
    }

    /// Whether `password` is this user's, compared in constant time. PBKDF2 is CPU work:
    /// call it on the blocking pool.
    pub(crate) fn verify(&self, password: &str) -> bool {
        let key = derive(self.prf, password, &self.salt, self.iterations);
        key.len() == self.derived_key.len()
            && key
                .iter()
                .zip(&self.derived_key)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The request's user once the password is verified.
    pub(crate) fn ctx(&self, method: &'static str) -> UserCtx {
        UserCtx {
            name: Some(self.name.clone()),
            roles: self.roles.clone(),
            method: Some(method),
        }
    }

    /// The cache key of a login with `password` against these stored credentials.
    fn cache_key(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.name.as_bytes(),
            password.as_bytes(),
            self.salt.as_bytes(),
            &self.derived_key,
        ] {
            // Lengths first, so that no two different tuples hash alike.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

fn derive(prf: Prf, password: &str, salt: &str, iterations: u32) -> Vec<u8> {
    match prf {
        Prf::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            password.as_bytes(),
            salt.as_bytes(),
            iterations,
        )
        .to_vec(),
        Prf::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(
            password.as_bytes(),
            salt.as_bytes(),
            iterations,
        )
        .to_vec(),
    }
}

/// The roles of the live user document `doc` of `name` (none for anything else): what a
/// configured admin of that name has besides `_admin`.
pub(crate) fn doc_roles(doc: &Value, name: &str) -> Vec<String> {
    let is_user = doc.get("_deleted") != Some(&Value::Bool(true))
        && doc.get("type").and_then(Value::as_str) == Some("user")
        && doc.get("name").and_then(Value::as_str) == Some(name);
    if is_user {
        string_list(doc.get("roles"))
    } else {
        Vec::new()
    }
}

pub(crate) fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Verified logins, remembered for a short time (CouchDB's `couch_passwords_cache`), so
/// that a client sending basic auth on every request does not pay PBKDF2 each time.
/// Bounded: when full, it is emptied (a cache miss only costs a PBKDF2 run).
pub(crate) struct CredentialCache {
    entries: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
    capacity: usize,
}

impl CredentialCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> CredentialCache {
        CredentialCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    /// Whether `password` was verified against `user`'s current credentials lately.
    pub(crate) fn hit(&self, user: &StoredUser, password: &str) -> bool {
        let key = user.cache_key(password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&key).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers a verified password.
    pub(crate) fn insert(&self, user: &StoredUser, password: &str) {
        let key = user.cache_key(password);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, Instant::now());
    }
}

/// The id a user document must have for `name`.
pub(crate) fn user_doc_id(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

/// Who writes to `_users`, as its rules need it.
pub(crate) struct UsersWriter<'a> {
    pub(crate) user: &'a UserCtx,
    /// A server admin or an admin of `_users` (by its security object).
    pub(crate) is_db_admin: bool,
    /// PBKDF2 rounds for new passwords.
    pub(crate) iterations: u32,
}

/// A write to `_users` about to happen, CouchDB's way: a non-admin writes only their own
/// document (or, anonymous, a new one); a `password` in clear is replaced by its PBKDF2
/// hash; then the `_auth` design document's rules. `old` is the revision replaced
/// (`null` for a new document). Design documents are left to the admin check before.
pub(crate) fn before_doc_update(
    doc: &mut Value,
    old: &Value,
    writer: &UsersWriter<'_>,
) -> Result<(), HttpError> {
    let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
    if id.starts_with("_design/") || id.starts_with("_local/") {
        return Ok(());
    }
    // CouchDB names the document's user by its id (a deletion has no body).
    let doc_name = id.strip_prefix(USER_PREFIX);
    if !writer.is_db_admin && writer.user.name.is_some() && writer.user.name.as_deref() != doc_name
    {
        return Err(HttpError::not_found("missing"));
    }
    if let Value::Object(m) = doc {
        hash_password(m, writer.iterations)?;
    }
    validate(doc, old, writer)
}

/// Replaces a clear `password` with CouchDB 3.5's PBKDF2 fields (a new salt each time).
fn hash_password(doc: &mut Map<String, Value>, iterations: u32) -> Result<(), HttpError> {
    let Some(password) = doc.remove("password") else {
        return Ok(());
    };
    let Value::String(password) = password else {
        // CouchDB leaves a `null` password alone (no change); anything else is refused.
        if password.is_null() {
            return Ok(());
        }
        return Err(HttpError::bad_request("password must be a string"));
    };
    let salt = hex_encode(&rand::random::<[u8; 16]>());
    let key = derive(Prf::Sha256, &password, &salt, iterations);
    doc.remove("password_sha");
    doc.insert("password_scheme".into(), Value::from("pbkdf2"));
    doc.insert("pbkdf2_prf".into(), Value::from("sha256"));
    doc.insert("salt".into(), Value::from(salt));
    doc.insert("iterations".into(), Value::from(iterations));
    doc.insert("derived_key".into(), Value::from(hex_encode(&key)));
    Ok(())
}

fn forbidden(reason: &str) -> HttpError {
    HttpError::forbidden(reason)
}

/// CouchDB's `_design/_auth` `validate_doc_update`, rule by rule, with its messages.
fn validate(new: &Value, old: &Value, writer: &UsersWriter<'_>) -> Result<(), HttpError> {
    let user = writer.user;
    let old_name = old.get("name").and_then(Value::as_str);
    if new.get("_deleted") == Some(&Value::Bool(true)) {
        if user.is_admin() || user.name.as_deref() == old_name {
            return Ok(());
        }
        return Err(forbidden("Only admins may delete other user docs."));
    }
    if new.get("type").and_then(Value::as_str) != Some("user") {
        return Err(forbidden("doc.type must be user"));
    }
    let name = match new.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.as_str(),
        _ => return Err(forbidden("doc.name is required")),
    };
    let roles = match new.get("roles") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            return Err(forbidden("doc.roles must exist"))
        }
        Some(Value::Array(r)) => r,
        Some(_) => return Err(forbidden("doc.roles must be an array")),
    };
    if !roles.iter().all(Value::is_string) {
        return Err(forbidden("doc.roles can only contain strings"));
    }
    let roles: Vec<&str> = roles.iter().filter_map(Value::as_str).collect();
    if new.get("_id").and_then(Value::as_str) != Some(user_doc_id(name).as_str()) {
        return Err(forbidden(
            "Doc ID must be of the form org.couchdb.user:name",
        ));
    }
    let has_old = !old.is_null();
    if has_old && old_name != Some(name) {
        return Err(forbidden("Usernames can not be changed."));
    }
    if let Some(scheme) = new.get("password_scheme").and_then(Value::as_str) {
        if !["simple", "pbkdf2", "simple+pbkdf2"].contains(&scheme) {
            return Err(forbidden(&format!(
                "Password scheme `{scheme}` not supported."
            )));
        }
        if scheme == "pbkdf2" {
            if !new.get("iterations").is_some_and(Value::is_number) {
                return Err(forbidden("iterations must be a number."));
            }
            if !new.get("derived_key").is_some_and(Value::is_string) {
                return Err(forbidden("derived_key must be a string."));
            }
        }
    }
    if !writer.is_db_admin {
        if has_old {
            if user.name.as_deref() != Some(name) {
                return Err(forbidden("You may only update your own user document."));
            }
            let mut old_roles = string_list(old.get("roles"));
            let mut new_roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
            old_roles.sort();
            new_roles.sort();
            if old_roles != new_roles {
                return Err(forbidden("Only _admin may edit roles"));
            }
        } else if !roles.is_empty() {
            return Err(forbidden("Only _admin may set roles"));
        }
    }
    if roles.iter().any(|r| *r != "_metrics" && r.starts_with('_')) {
        return Err(forbidden(
            "No system roles (starting with underscore) in users db.",
        ));
    }
    if name.starts_with('_') {
        return Err(forbidden("Username may not start with underscore."));
    }
    if name.contains(':') {
        return Err(forbidden("Character `:` is not allowed in usernames."));
    }
    Ok(())
}

/// What a non-admin may read of a `_users` document (`after_doc_read`): their own; any
/// other is 404, a design document 403.
pub(crate) fn after_doc_read(
    doc: &Value,
    user: &UserCtx,
    is_db_admin: bool,
) -> Result<(), HttpError> {
    if is_db_admin {
        return Ok(());
    }
    let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
    if id.starts_with("_design/") {
        return Err(HttpError::forbidden(
            "Only administrators can view design docs in the users database.",
        ));
    }
    let name = doc.get("name").and_then(Value::as_str);
    if user.name.is_some() && user.name.as_deref() == name {
        return Ok(());
    }
    Err(HttpError::not_found("missing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn writer(user: &UserCtx, admin: bool) -> UsersWriter<'_> {
        UsersWriter {
            user,
            is_db_admin: admin,
            iterations: 10,
        }
    }

    #[test]
    fn a_password_is_hashed_and_verifies() {
        let admin = UserCtx {
            roles: vec!["_admin".into()],
            ..Default::default()
        };
        let mut doc = json!({"_id": "org.couchdb.user:ann", "type": "user", "name": "ann",
            "roles": ["team"], "password": "s3cret"});
        before_doc_update(&mut doc, &Value::Null, &writer(&admin, true)).unwrap();
        assert!(doc.get("password").is_none());
        assert_eq!(doc["pbkdf2_prf"], "sha256");
        assert_eq!(doc["derived_key"].as_str().unwrap().len(), 64);
        assert_eq!(doc["salt"].as_str().unwrap().len(), 32);
        let stored = StoredUser::from_doc(&doc).unwrap();
        assert!(stored.verify("s3cret"));
        assert!(!stored.verify("s3cret "));
        assert_eq!(stored.roles, ["team"]);
        let mut greedy = doc.clone();
        greedy["iterations"] = json!(4_000_000_000u64);
        assert!(
            StoredUser::from_doc(&greedy).is_none(),
            "too many rounds to run"
        );
    }

    /// The derived key matches CouchDB's for the same salt and rounds (a user made on
    /// CouchDB 3.5.0 with password `pw1`, 600,000 rounds, takes too long in a debug test:
    /// this is RFC 7914's PBKDF2-HMAC-SHA256 test vector instead).
    #[test]
    fn pbkdf2_sha256_matches_the_rfc_vector() {
        let key = derive(Prf::Sha256, "passwd", "salt", 1);
        assert_eq!(
            hex_encode(&key),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    /// A user document in CouchDB 3.5.0's shape logs in: CouchDB uses the salt's hex text
    /// as the PBKDF2 salt, not the bytes it spells. (The fields are those of a user made on
    /// CouchDB 3.5.0 with password `pw1`, whose 600,000-round key was checked with Python's
    /// `hashlib.pbkdf2_hmac`; 1,000 rounds here, key from the same tool, to stay fast.)
    #[test]
    fn a_couchdb_user_document_logs_in() {
        let doc = json!({"_id": "org.couchdb.user:probe_u1", "name": "probe_u1", "type": "user",
            "roles": [], "password_scheme": "pbkdf2", "pbkdf2_prf": "sha256",
            "salt": "627a3c3f8f415e055afffcec87957fc3", "iterations": 1000,
            "derived_key": "4f5014403f82a5e5981afbcf4fe3fe9c2e8c30f19abe737219de7b41275ebdf6"});
        let user = StoredUser::from_doc(&doc).unwrap();
        assert!(user.verify("pw1"));
        assert!(!user.verify("pw2"));
    }

    #[test]
    fn non_admins_cannot_give_themselves_roles_or_rename() {
        let anon = UserCtx::default();
        let mut doc = json!({"_id": "org.couchdb.user:bob", "type": "user", "name": "bob",
            "roles": ["boss"], "password": "x"});
        let e = before_doc_update(&mut doc, &Value::Null, &writer(&anon, false)).unwrap_err();
        assert_eq!(e.reason, "Only _admin may set roles");
        let bob = UserCtx {
            name: Some("bob".into()),
            ..Default::default()
        };
        let old =
            json!({"_id": "org.couchdb.user:bob", "type": "user", "name": "bob", "roles": []});
        let mut doc = json!({"_id": "org.couchdb.user:bob", "type": "user", "name": "bob",
            "roles": ["boss"]});
        let e = before_doc_update(&mut doc, &old, &writer(&bob, false)).unwrap_err();
        assert_eq!(e.reason, "Only _admin may edit roles");
        let mut other = json!({"_id": "org.couchdb.user:eve", "type": "user", "name": "eve",
            "roles": []});
        let e = before_doc_update(&mut other, &Value::Null, &writer(&bob, false)).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_cache_forgets_a_changed_password() {
        let mut doc = json!({"_id": "org.couchdb.user:c", "type": "user", "name": "c",
            "roles": [], "password": "one"});
        let admin = UserCtx {
            roles: vec!["_admin".into()],
            ..Default::default()
        };
        before_doc_update(&mut doc, &Value::Null, &writer(&admin, true)).unwrap();
        let first = StoredUser::from_doc(&doc).unwrap();
        let cache = CredentialCache::new(Duration::from_secs(60), 2);
        cache.insert(&first, "one");
        assert!(cache.hit(&first, "one"));
        assert!(!cache.hit(&first, "two"));
        doc["password"] = json!("one");
        before_doc_update(&mut doc, &Value::Null, &writer(&admin, true)).unwrap();
        let second = StoredUser::from_doc(&doc).unwrap();
        assert!(!cache.hit(&second, "one"), "a new salt is a new key");
    }
}
