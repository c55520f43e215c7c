//! CouchDB's `_security` rules for a database: server admins do everything; database
//! admins (by name or role) also write design documents and `_security`; members (by name
//! or role, or legacy `readers` when `members` is absent) read and write documents; a
//! database without members is open to anyone.

use serde_json::{Map, Value};

use crate::auth::users::string_list;
use crate::auth::UserCtx;
use crate::error::HttpError;

/// What a request needs on a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Read and write documents: a member (or any user when the database has no members).
    Member,
    /// Design documents and settings: a database or server admin.
    Admin,
}

fn names_roles(sec: &Map<String, Value>, part: &str) -> (Vec<String>, Vec<String>) {
    let list = |key: &str| string_list(sec.get(part).and_then(|p| p.get(key)));
    (list("names"), list("roles"))
}

fn listed(user: &UserCtx, names: &[String], roles: &[String]) -> bool {
    user.name.as_ref().is_some_and(|n| names.contains(n))
        || user.roles.iter().any(|r| roles.contains(r))
}

/// CouchDB's `_security` check: 401 for an anonymous request that lacks access, 403 for a
/// logged-in one.
pub(crate) fn check(
    security: &Map<String, Value>,
    user: &UserCtx,
    need: Need,
) -> Result<(), HttpError> {
    if user.is_admin() {
        return Ok(());
    }
    let (admin_names, admin_roles) = names_roles(security, "admins");
    if listed(user, &admin_names, &admin_roles) {
        return Ok(());
    }
    if need == Need::Admin {
        return Err(if user.name.is_none() {
            HttpError::unauthorized("You are not a db or server admin.")
        } else {
            HttpError::forbidden("You are not a db or server admin.")
        });
    }
    // A security object without `members` uses its legacy `readers`, as CouchDB does
    // (`couch_db:get_members`); ignoring them left such a database open to anyone (issue 20).
    let part = if security.contains_key("members") {
        "members"
    } else {
        "readers"
    };
    let (names, roles) = names_roles(security, part);
    if (names.is_empty() && roles.is_empty()) || listed(user, &names, &roles) {
        return Ok(());
    }
    Err(if user.name.is_none() {
        HttpError::unauthorized("You are not authorized to access this db.")
    } else {
        HttpError::forbidden("You are not allowed to access this db.")
    })
}

/// 401 unless the request is a server admin: CouchDB answers 401, not 403, to a logged-in
/// user too (`chttpd:verify_is_server_admin`).
pub(crate) fn require_server_admin(user: &UserCtx) -> Result<(), HttpError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(HttpError::unauthorized("You are not a server admin."))
    }
}

/// What `_compact` and `_view_cleanup` need: a member's request is checked as for any
/// endpoint, then anyone but a database or server admin gets CouchDB's 401.
pub(crate) fn require_db_admin_to_maintain(
    security: &Map<String, Value>,
    user: &UserCtx,
) -> Result<(), HttpError> {
    check(security, user, Need::Member)?;
    check(security, user, Need::Admin)
        .map_err(|_| HttpError::unauthorized("You are not a server or db admin."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::default_security;
    use axum::http::StatusCode;

    /// Issue 20, finding 10: legacy `readers` count when `members` is absent, as in
    /// CouchDB; `members` wins when both are there.
    #[test]
    fn legacy_readers_are_members_when_members_is_absent() {
        let sec = |v: serde_json::Value| v.as_object().unwrap().clone();
        let anonymous = UserCtx::default();
        let alice = UserCtx {
            name: Some("alice".into()),
            ..Default::default()
        };
        let readers = sec(serde_json::json!({"readers": {"names": ["alice"]}}));
        assert!(check(&readers, &alice, Need::Member).is_ok());
        assert!(check(&readers, &anonymous, Need::Member).is_err());
        let both = sec(
            serde_json::json!({"members": {"names": ["bob"]}, "readers": {"names": ["alice"]}}),
        );
        assert!(check(&both, &alice, Need::Member).is_err());
        let open = sec(serde_json::json!({"members": {}, "readers": {"names": ["alice"]}}));
        assert!(check(&open, &anonymous, Need::Member).is_ok());
    }

    #[test]
    fn security_members_and_admins() {
        let sec = serde_json::json!({"members": {"names": ["alice"], "roles": ["team"]},
            "admins": {"names": ["carol"]}});
        let sec = sec.as_object().unwrap();
        let user = |n: &str, roles: &[&str]| UserCtx {
            name: Some(n.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            method: Some("default"),
        };
        assert!(check(sec, &user("alice", &[]), Need::Member).is_ok());
        assert!(check(sec, &user("bob", &["team"]), Need::Member).is_ok());
        assert_eq!(
            check(sec, &user("bob", &[]), Need::Member)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            check(sec, &UserCtx::default(), Need::Member)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert!(check(sec, &user("alice", &[]), Need::Admin).is_err());
        assert!(check(sec, &user("carol", &[]), Need::Admin).is_ok());
        assert!(check(&Map::new(), &UserCtx::default(), Need::Member).is_ok());
        assert!(check(&default_security(), &UserCtx::default(), Need::Member).is_err());
    }
}
