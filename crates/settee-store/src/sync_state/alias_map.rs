//! The `Maliases` record's value: a remote's other names (address → identity) and its
//! encoding. What it means and how it is learned is `aliases.rs`'s; this file is what the
//! registry and the watchers read, and imports nothing of the store's core.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The address → identity map, as `Maliases` holds it (JSON object, sorted by address).
pub(crate) type Aliases = BTreeMap<String, String>;

/// Decodes the `Maliases` record (absent: no aliases).
pub(crate) fn decode_aliases(bytes: Option<&[u8]>) -> Result<Aliases> {
    match bytes {
        Some(v) => serde_json::from_slice(v)
            .map_err(|e| Error::corrupt(format!("the remote aliases record: {e}"))),
        None => Ok(Aliases::new()),
    }
}

pub(crate) fn encode_aliases(aliases: &Aliases) -> Result<Vec<u8>> {
    serde_json::to_vec(aliases)
        .map_err(|e| Error::corrupt(format!("encoding the remote aliases: {e}")))
}
