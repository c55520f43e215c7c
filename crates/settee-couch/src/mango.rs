//! Mango: `_find`, `_explain` and `_index`. Requests and answers are CouchDB's JSON, passed
//! through: checking a query is the server's job here, and the answer's shape is CouchDB's
//! (the facade reads it into the store's typed answers).

use reqwest::Method;
use serde_json::Value;

use crate::call::Call;
use crate::ids::encode_segment;
use crate::{RemoteDb, Result};

impl RemoteDb {
    /// `POST /{db}/_find` with `query` (`{"selector": ..., "sort": ..., ...}`): CouchDB's
    /// answer, `{"docs": [...], "bookmark": ..., "warning"?: ...}`. A read: retried like one.
    ///
    /// # Errors
    /// [`crate::Error::BadRequest`] with CouchDB's `error` name (`no_usable_index`,
    /// `invalid_operator`, ...) in its [`crate::Failure`]; [`crate::Error::NotFound`] for a
    /// missing database; [`crate::Error::Transport`].
    pub async fn find(&self, query: &Value) -> Result<Value> {
        let call = self
            .client
            .json_call(Method::POST, self.join(&["_find"]), query)?
            .idempotent();
        self.client.send_json(call).await
    }

    /// `POST /{db}/_explain`: how the server would run `query`.
    ///
    /// # Errors
    /// As [`RemoteDb::find`].
    pub async fn explain(&self, query: &Value) -> Result<Value> {
        let call = self
            .client
            .json_call(Method::POST, self.join(&["_explain"]), query)?
            .idempotent();
        self.client.send_json(call).await
    }

    /// `POST /{db}/_index` with `index` (`{"index": {"fields": [...]}, "ddoc"?, "name"?}`):
    /// `{"result": "created"|"exists", "id", "name"}`.
    ///
    /// # Errors
    /// [`crate::Error::BadRequest`] for a bad definition; [`crate::Error::Unauthorized`] /
    /// [`crate::Error::Forbidden`] for a user who may not write design documents;
    /// [`crate::Error::Transport`].
    pub async fn create_index(&self, index: &Value) -> Result<Value> {
        let call = self
            .client
            .json_call(Method::POST, self.join(&["_index"]), index)?;
        self.client.send_json(call).await
    }

    /// `GET /{db}/_index`: `{"total_rows", "indexes": [...]}`.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] for a missing database; [`crate::Error::Transport`].
    pub async fn get_indexes(&self) -> Result<Value> {
        self.client.get_json(self.join(&["_index"])).await
    }

    /// `DELETE /{db}/_index/{ddoc}/json/{name}` (`ddoc` with or without `_design/`).
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] if there is no such index; [`crate::Error::Transport`].
    pub async fn delete_index(&self, ddoc: &str, name: &str) -> Result<()> {
        let ddoc = ddoc.strip_prefix("_design/").unwrap_or(ddoc);
        let url = self.join(&[
            "_index",
            &encode_segment(ddoc),
            "json",
            &encode_segment(name),
        ]);
        self.client
            .send(Call::new(Method::DELETE, url))
            .await
            .map(drop)
    }
}
