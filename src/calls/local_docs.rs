//! `_local` documents, for a local store and a server alike: an application's own data that
//! must never replicate (a device's settings, a cursor), as CouchDB keeps checkpoints. Their
//! revisions are `0-N` counters, not revision ids, so they are strings here.

use serde_json::{json, Value};

use super::{blocking, Target};
use crate::{Error, Result};

/// `id` with its `_local/` prefix.
fn full_id(id: &str) -> String {
    if id.starts_with("_local/") {
        id.to_owned()
    } else {
        format!("_local/{id}")
    }
}

impl Target {
    pub(crate) async fn get_local(self, id: &str) -> Result<Value> {
        match &self {
            Target::Store(d) => {
                let id = id.to_owned();
                blocking(d, move |d| d.get_local(&id)).await
            }
            Target::Http(r) => r.get_local(id).await?.ok_or_else(|| {
                Error::Store(settee_store::Error::NotFound {
                    id: full_id(id),
                    reason: "missing".into(),
                })
            }),
        }
    }

    pub(crate) async fn put_local(self, doc: Value) -> Result<Value> {
        let id = doc
            .get("_id")
            .and_then(Value::as_str)
            .map(full_id)
            .ok_or_else(|| Error::BadRequest("a _local document needs a string _id".into()))?;
        let rev = match &self {
            Target::Store(d) => {
                let mut doc = doc;
                doc["_id"] = Value::String(id.clone());
                blocking(d, move |d| d.put_local(doc)).await?.rev
            }
            Target::Http(r) => r.put_local(&id, &doc).await?,
        };
        Ok(json!({"ok": true, "id": id, "rev": rev}))
    }

    pub(crate) async fn delete_local(self, id: &str, rev: &str) -> Result<()> {
        match &self {
            Target::Store(d) => {
                let (id, rev) = (id.to_owned(), rev.to_owned());
                blocking(d, move |d| d.delete_local(&id, &rev)).await?;
                Ok(())
            }
            Target::Http(r) => Ok(r.delete_local(id, rev).await?),
        }
    }
}
