//! `RemoteDb`: a database on a CouchDB server, and the database-level calls (info, create,
//! delete, `_ensure_full_commit`). Documents, changes and the replication endpoints are in
//! their own modules.

use std::fmt;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use reqwest::Method;
use url::Url;

use crate::call::Call;
use crate::ids::encode_doc_id;
use crate::{CouchClient, Error, RedactedUrl, Result, Seq};

/// Database information (`GET /{db}`): `settee_wire`'s [`DbInfo`](settee_wire::DbInfo) with
/// the server's opaque sequences; members it does not name are kept in `other`.
pub type DbInfo = settee_wire::DbInfo<Seq>;

/// A database on a CouchDB server. Cloning is cheap; clones share the client and what was
/// learnt about the server (whether it has `_bulk_get`, and answers it in multipart).
#[derive(Clone)]
pub struct RemoteDb {
    pub(crate) client: CouchClient,
    name: String,
    url: Url,
    shown: RedactedUrl,
    /// `bulk_get.rs`'s memory of whether the server has `_bulk_get`.
    pub(crate) bulk_get_support: Arc<AtomicU8>,
    /// `bulk_get_multipart.rs`'s memory of whether the server answers in multipart.
    pub(crate) multipart_support: Arc<AtomicU8>,
    /// The server's uuid as `GET /` last answered it ([`RemoteDb::learn_server_uuid`]),
    /// shared by clones: `None` until asked, or when the server has none.
    server_uuid: Arc<std::sync::RwLock<Option<String>>>,
}

impl fmt::Debug for RemoteDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteDb")
            .field("url", &self.shown)
            .finish()
    }
}

impl RemoteDb {
    pub(crate) fn new(client: CouchClient, name: String, url: Url) -> RemoteDb {
        let shown = RedactedUrl::new(&url);
        RemoteDb {
            client,
            name,
            url,
            shown,
            bulk_get_support: Arc::new(AtomicU8::new(0)),
            multipart_support: Arc::new(AtomicU8::new(0)),
            server_uuid: Arc::default(),
        }
    }

    /// This database through a client with another retry policy (see
    /// [`CouchClient::with_retry`]).
    pub fn with_retry(&self, policy: crate::RetryPolicy) -> RemoteDb {
        RemoteDb {
            client: self.client.with_retry(policy),
            name: self.name.clone(),
            url: self.url.clone(),
            shown: self.shown.clone(),
            bulk_get_support: self.bulk_get_support.clone(),
            multipart_support: self.multipart_support.clone(),
            server_uuid: self.server_uuid.clone(),
        }
    }

    /// The server's uuid as [`RemoteDb::learn_server_uuid`] last learned it (shared by
    /// this handle's clones); `None` before that, or when the server answered none. No
    /// request is made.
    pub fn server_uuid(&self) -> Option<String> {
        self.server_uuid
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the server for its uuid (`GET /`: CouchDB answers the same one on every node of
    /// a cluster, pouchdb-server and `settee serve` one per data directory), remembers it
    /// for [`RemoteDb::server_uuid`] and returns it; `None` when the answer has none (the
    /// remembered one is then forgotten).
    ///
    /// # Errors
    /// The client's errors for `GET /`; what was remembered stays then.
    pub async fn learn_server_uuid(&self) -> Result<Option<String>> {
        let uuid = self
            .client
            .server_info()
            .await?
            .uuid
            .filter(|u| !u.is_empty());
        *self.server_uuid.write().unwrap_or_else(|p| p.into_inner()) = uuid.clone();
        Ok(uuid)
    }

    /// A database from its full URL, `http://[user:password@]host:5984[/prefix]/dbname`,
    /// with default client options (credentials from the URL).
    ///
    /// ```
    /// let db = settee_couch::RemoteDb::from_url("http://bob:pw@127.0.0.1:5984/my%2Fnotes")?;
    /// assert_eq!(db.name(), "my/notes");
    /// assert_eq!(db.url().as_str(), "http://127.0.0.1:5984/my%2Fnotes");
    /// # Ok::<(), settee_couch::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] if the URL does not parse or names no database.
    pub fn from_url(url: &str) -> Result<RemoteDb> {
        let (server, db) = split_db_url(url)?;
        Ok(CouchClient::builder(server).build()?.db(&db))
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL, without credentials.
    pub fn url(&self) -> &RedactedUrl {
        &self.shown
    }

    /// The client (server) this database is on.
    pub fn client(&self) -> &CouchClient {
        &self.client
    }

    /// The database URL with already-encoded path segments appended.
    pub(crate) fn join(&self, encoded: &[&str]) -> Url {
        let mut url = self.url.clone();
        let mut path = url.path().to_owned();
        for seg in encoded {
            path.push('/');
            path.push_str(seg);
        }
        url.set_path(&path);
        url
    }

    pub(crate) fn doc_url(&self, id: &str) -> Url {
        self.join(&[&encode_doc_id(id)])
    }

    pub(crate) fn db_url(&self) -> Url {
        self.url.clone()
    }

    /// `GET /{db}`: counts and the current update sequence.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the database does not exist; [`Error::Unauthorized`],
    /// [`Error::Transport`], [`Error::InvalidResponse`].
    pub async fn info(&self) -> Result<DbInfo> {
        self.client.get_json(self.db_url()).await
    }

    /// `HEAD /{db}`: whether the database exists.
    ///
    /// # Errors
    /// [`Error::Unauthorized`], [`Error::Transport`] and other statuses than 200 and 404.
    pub async fn exists(&self) -> Result<bool> {
        match self
            .client
            .send(Call::new(Method::HEAD, self.db_url()))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /{db}`: creates the database.
    ///
    /// # Errors
    /// [`Error::FileExists`] if it exists already; [`Error::Unauthorized`] for non-admins;
    /// [`Error::BadRequest`] for an illegal name; [`Error::Transport`].
    pub async fn create(&self) -> Result<()> {
        self.client
            .send(Call::new(Method::PUT, self.db_url()))
            .await
            .map(drop)
    }

    /// `DELETE /{db}`: deletes the database and everything in it.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist; [`Error::Unauthorized`]; [`Error::Transport`].
    pub async fn delete(&self) -> Result<()> {
        self.client
            .send(Call::new(Method::DELETE, self.db_url()))
            .await
            .map(drop)
    }

    /// `POST /{db}/_ensure_full_commit`. A no-op since CouchDB 3 (no delayed commits), still
    /// sent by replicators for older servers.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Transport`] and other HTTP errors.
    pub async fn ensure_full_commit(&self) -> Result<()> {
        let url = self.join(&["_ensure_full_commit"]);
        let call = self
            .client
            .json_call(Method::POST, url, &serde_json::json!({}))?
            .idempotent();
        self.client.send(call).await.map(drop)
    }

    /// `GET /{db}/{segments...}?{query}` for an endpoint this client has no method of its
    /// own for (a server's extension, such as Settee's `_settee/...` sync-state endpoints):
    /// the answer's JSON, decoded. Segments and query values are percent-encoded here.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), settee_couch::Error> {
    /// let db = settee_couch::RemoteDb::from_url("http://admin:pw@127.0.0.1:5984/notes")?;
    /// let status: serde_json::Value = db
    ///     .get_extension(&["_settee", "sync_status"], &[("remote", "http://bob@couch/notes")])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As any call: [`Error::NotFound`], [`Error::Unauthorized`], [`Error::BadRequest`],
    /// [`Error::Transport`], [`Error::InvalidResponse`] when the answer does not decode.
    pub async fn get_extension<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T> {
        let encoded: Vec<String> = segments
            .iter()
            .map(|s| crate::ids::encode_segment(s))
            .collect();
        let mut url = self.join(&encoded.iter().map(String::as_str).collect::<Vec<_>>());
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.client.get_json(url).await
    }
}

/// Splits a database URL into (server URL with credentials, decoded db name), for building
/// its client with options: `CouchClient::builder(server)...build()?.db(&name)`.
///
/// ```
/// let (server, name) = settee_couch::split_db_url("http://bob@127.0.0.1:5984/my%2Fnotes")?;
/// assert_eq!((server.as_str(), name.as_str()), ("http://bob@127.0.0.1:5984/", "my/notes"));
/// # Ok::<(), settee_couch::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidUrl`] if the URL does not parse or names no database.
pub fn split_db_url(url: &str) -> Result<(String, String)> {
    let mut parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        reason: format!("not a URL ({e})"),
    })?;
    let path = parsed.path().trim_end_matches('/').to_owned();
    let (prefix, encoded) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    if encoded.is_empty() {
        return Err(Error::InvalidUrl {
            reason: "the URL names no database".into(),
        });
    }
    let name = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| Error::InvalidUrl {
            reason: "the database name is not UTF-8".into(),
        })?
        .into_owned();
    parsed.set_path(&format!("{prefix}/"));
    parsed.set_query(None);
    Ok((parsed.to_string(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_url_splits_into_server_and_name() {
        let (server, name) = split_db_url("http://u:p@h:5984/couch/a%2Fb/").unwrap();
        assert_eq!(server, "http://u:p@h:5984/couch/");
        assert_eq!(name, "a/b");
        assert!(split_db_url("http://h:5984/").is_err());
    }
}
