//! `_revs_diff`: which of the given revisions the server lacks.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{RemoteDb, Result, Rev};

/// The answer of `_revs_diff` for one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevsDiffEntry {
    /// The revisions the server does not have.
    #[serde(default)]
    pub missing: Vec<Rev>,
    /// Revisions the server has that may be ancestors of the missing ones (CouchDB sends
    /// them as `atts_since` to skip unchanged attachments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub possible_ancestors: Vec<Rev>,
}

impl RemoteDb {
    /// `POST /{db}/_revs_diff`: for each id, the given revisions the server lacks. Ids with
    /// nothing missing are absent from the answer.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing database;
    /// [`Error::Transport`](crate::Error::Transport); [`Error::InvalidResponse`](crate::Error::InvalidResponse).
    pub async fn revs_diff(
        &self,
        revs: &BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiffEntry>> {
        let call = self
            .client
            .json_call(Method::POST, self.join(&["_revs_diff"]), revs)?
            .idempotent();
        self.client.send_json(call).await
    }
}
