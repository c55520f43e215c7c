//! Single documents (`GET`/`PUT`/`DELETE /{db}/{id}`), `_local` documents and `_all_docs`.
//! Bodies are `serde_json::Value`s: this crate does not interpret user documents. The
//! options of a `GET` and `_all_docs`' options and answer are `settee_wire`'s.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::Call;
use crate::ids::local_id;
use crate::{AllDocs, AllDocsOptions, Error, GetOptions, RemoteDb, Result, Rev};

/// The answer of `_all_docs`: `settee_wire`'s [`AllDocs`].
pub type AllDocsResponse = AllDocs;

/// The answer to a successful write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The document id.
    pub id: String,
    /// The new revision.
    pub rev: Rev,
}

impl RemoteDb {
    /// `GET /{db}/{id}`: a document.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing document, revision or database; [`Error::Transport`]
    /// and other HTTP errors.
    pub async fn get(&self, id: &str, opts: &GetOptions) -> Result<Value> {
        let mut url = self.doc_url(id);
        {
            let mut q = url.query_pairs_mut();
            if let Some(rev) = &opts.rev {
                q.append_pair("rev", &rev.to_string());
            }
            for (name, on) in [
                ("revs", opts.revs),
                ("conflicts", opts.conflicts),
                ("deleted_conflicts", opts.deleted_conflicts),
                ("latest", opts.latest),
                ("attachments", opts.attachments),
                ("att_encoding_info", opts.att_encoding_info),
                ("revs_info", opts.revs_info),
                ("meta", opts.meta),
                ("local_seq", opts.local_seq),
            ] {
                if on {
                    q.append_pair(name, "true");
                }
            }
            if !opts.atts_since.is_empty() {
                q.append_pair("atts_since", &json_list(&opts.atts_since));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.client.get_json(url).await
    }

    /// `PUT /{db}/{id}`: creates or updates a document (`_rev` in `doc` for an update).
    ///
    /// # Errors
    /// [`Error::Conflict`] if `_rev` is not the current leaf; [`Error::Forbidden`] or
    /// [`Error::Unauthorized`] from a validation function; [`Error::TooLarge`];
    /// [`Error::BadRequest`]; [`Error::Transport`].
    pub async fn put(&self, id: &str, doc: &Value) -> Result<PutResponse> {
        let call = self.client.json_call(Method::PUT, self.doc_url(id), doc)?;
        self.client.send_json(call).await
    }

    /// `DELETE /{db}/{id}?rev=`: deletes a document; returns the tombstone's revision.
    ///
    /// # Errors
    /// [`Error::Conflict`] if `rev` is not the current leaf; [`Error::NotFound`];
    /// [`Error::Transport`].
    pub async fn delete_doc(&self, id: &str, rev: &Rev) -> Result<Rev> {
        let mut url = self.doc_url(id);
        url.query_pairs_mut().append_pair("rev", &rev.to_string());
        let resp: PutResponse = self
            .client
            .send_json(Call::new(Method::DELETE, url))
            .await?;
        Ok(resp.rev)
    }

    /// `GET /{db}/_local/{id}`: a local (non-replicated) document such as a checkpoint, or
    /// `None` if there is none. `id` may include the `_local/` prefix.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the database does not exist; [`Error::Transport`].
    pub async fn get_local(&self, id: &str) -> Result<Option<Value>> {
        match self.client.get_json(self.doc_url(&local_id(id))).await {
            Ok(doc) => Ok(Some(doc)),
            Err(Error::NotFound(f)) if is_missing_doc(f.reason()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /{db}/_local/{id}`: writes a local document (`_rev` in `doc` to update one).
    /// Local docs are not replicated and have no revision tree; their `_rev` is `"0-N"`,
    /// which is not a [`Rev`], so it is returned as a string.
    ///
    /// # Errors
    /// [`Error::Conflict`] if `_rev` is stale; [`Error::NotFound`] if the database does not
    /// exist; [`Error::Transport`].
    pub async fn put_local(&self, id: &str, doc: &Value) -> Result<String> {
        #[derive(Deserialize)]
        struct LocalPut {
            rev: String,
        }
        let call = self
            .client
            .json_call(Method::PUT, self.doc_url(&local_id(id)), doc)?;
        let resp: LocalPut = self.client.send_json(call).await?;
        Ok(resp.rev)
    }

    /// `DELETE /{db}/_local/{id}?rev=`: deletes a local document.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`]; [`Error::Transport`].
    pub async fn delete_local(&self, id: &str, rev: &str) -> Result<()> {
        let mut url = self.doc_url(&local_id(id));
        url.query_pairs_mut().append_pair("rev", rev);
        self.client
            .send(Call::new(Method::DELETE, url))
            .await
            .map(drop)
    }

    /// `_all_docs` (a `POST` with `keys` when [`AllDocsOptions::keys`] is set).
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing database; [`Error::Transport`].
    pub async fn all_docs(&self, opts: &AllDocsOptions) -> Result<AllDocsResponse> {
        let mut url = self.join(&["_all_docs"]);
        {
            let mut q = url.query_pairs_mut();
            if opts.include_docs {
                q.append_pair("include_docs", "true");
            }
            if opts.conflicts {
                q.append_pair("conflicts", "true");
            }
            if opts.descending {
                q.append_pair("descending", "true");
            }
            if let Some(k) = &opts.startkey {
                q.append_pair("startkey", &Value::from(k.as_str()).to_string());
            }
            if let Some(k) = &opts.endkey {
                q.append_pair("endkey", &Value::from(k.as_str()).to_string());
            }
            if let Some(n) = opts.limit {
                q.append_pair("limit", &n.to_string());
            }
            if opts.skip > 0 {
                q.append_pair("skip", &opts.skip.to_string());
            }
            // Sent only when they differ from CouchDB's defaults.
            if !opts.inclusive_end {
                q.append_pair("inclusive_end", "false");
            }
            if opts.attachments {
                q.append_pair("attachments", "true");
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        match &opts.keys {
            None => self.client.get_json(url).await,
            Some(keys) => {
                let body = serde_json::json!({ "keys": keys });
                let call = self
                    .client
                    .json_call(Method::POST, url, &body)?
                    .idempotent();
                self.client.send_json(call).await
            }
        }
    }
}

/// A 404 about the document (`missing`, `deleted`), not about the database.
pub(crate) fn is_missing_doc(reason: &str) -> bool {
    reason == "missing" || reason == "deleted"
}

/// `["1-a","2-b"]`, for `open_revs` and `atts_since`.
pub(crate) fn json_list(revs: &[Rev]) -> String {
    Value::from(
        revs.iter()
            .map(|r| Value::from(r.to_string()))
            .collect::<Vec<_>>(),
    )
    .to_string()
}
