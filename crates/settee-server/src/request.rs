//! A request as its handler gets it, after authentication ([`Request`]: who asks, and
//! what), and the access check every database handler makes with it ([`check`]).

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Uri};
use settee_revtree::Rev;

use crate::auth::{self, Need, UserCtx};
use crate::error::HttpError;
use crate::query::{parse_rev, Query};
use crate::registry::OpenDb;

/// A request after authentication.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) user: UserCtx,
    /// The client's address (for the login lockout), when known.
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl Request {
    pub(crate) fn query(&self) -> Query {
        Query::parse(self.uri.query())
    }

    /// The revision a write names: `?rev=`, else the `If-Match` header (quoted or not).
    pub(crate) fn rev(&self) -> Result<Option<Rev>, HttpError> {
        if let Some(r) = self.query().rev("rev")? {
            return Ok(Some(r));
        }
        match self
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) => parse_rev(v.trim().trim_matches('"')).map(Some),
            None => Ok(None),
        }
    }

    /// Refuses every method but POST with 405 (the endpoints that take only a POST body).
    pub(crate) fn require_post(&self) -> Result<(), HttpError> {
        if self.method != Method::POST {
            return Err(HttpError::method_not_allowed("POST"));
        }
        Ok(())
    }

    /// [`Request::require_post`], and a JSON body (415 for another content type).
    pub(crate) fn require_json_post(&self) -> Result<(), HttpError> {
        self.require_post()?;
        crate::body::require_json_type(&self.headers)
    }

    /// GET and HEAD are answered alike (hyper leaves out a HEAD answer's body).
    pub(crate) fn is_get(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// Access check against the database's security object.
pub(crate) fn check(open: &OpenDb, user: &UserCtx, need: Need) -> Result<(), HttpError> {
    auth::check(&open.security(), user, need)
}
