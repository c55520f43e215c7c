//! `_revs_diff`: which of the given revisions the server lacks.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{RemoteDb, Result, Rev};

/// The answer of `_revs_diff` for one document.
///
/// A revision in the answer that is not a valid [`Rev`] is left out (with a warning) instead
/// of failing the whole answer: the server names only revisions it was asked about (which
/// are valid) as missing, and an ancestor left out only costs attachment stubs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevsDiffEntry {
    /// The revisions the server does not have.
    #[serde(default, deserialize_with = "valid_revs")]
    pub missing: Vec<Rev>,
    /// Revisions the server has that may be ancestors of the missing ones (CouchDB sends
    /// them as `atts_since` to skip unchanged attachments).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "valid_revs"
    )]
    pub possible_ancestors: Vec<Rev>,
}

/// A list of revs, leaving out any that is not a valid `Rev`.
fn valid_revs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Rev>, D::Error> {
    let texts = Vec::<Value>::deserialize(d)?;
    let mut revs = Vec::with_capacity(texts.len());
    for text in texts {
        match text.as_str().map(str::parse::<Rev>) {
            Some(Ok(rev)) => revs.push(rev),
            _ => {
                tracing::warn!(rev = %text, "_revs_diff answered a revision that is not valid; skipped")
            }
        }
    }
    Ok(revs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_revision_in_the_answer_is_left_out() {
        let answer: BTreeMap<String, RevsDiffEntry> = serde_json::from_str(
            r#"{"a":{"missing":["2-x","-1-q"],"possible_ancestors":["-1-b","0-c",3]},
                "b":{"missing":["1-"]}}"#,
        )
        .unwrap();
        assert_eq!(answer["a"].missing, ["2-x".parse::<Rev>().unwrap()]);
        assert_eq!(
            answer["a"].possible_ancestors,
            ["0-c".parse::<Rev>().unwrap()]
        );
        assert_eq!(answer["b"].missing, ["1-".parse::<Rev>().unwrap()]);
    }
}
