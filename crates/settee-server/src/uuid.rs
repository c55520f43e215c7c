//! Random ids of 128 bits written as 32 lowercase hex digits, as CouchDB's `random`
//! uuids: `/_uuids`, the advertised owner's password and the hidden name a deleted store is
//! renamed to; and the server's own uuid (`GET /`), which stays the same across restarts.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A fresh random id.
pub(crate) fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file in a data directory that holds the server's uuid (a dot name: never a store).
const UUID_FILE: &str = ".settee-server-uuid";

/// The server's uuid, which clients take (with a database's name) as the database's
/// identity, so it must not change when the server restarts (CouchDB keeps its in its
/// config, the same on every node). With a data directory: the one kept in it, made on the
/// first start. Without one: derived from the served stores (`stores`: names and
/// directories), so the same stores served again are the same server.
///
/// # Errors
/// [`Error::Config`] when the data directory's uuid file cannot be read or written.
pub(crate) fn server_uuid(data_dir: Option<&Path>, stores: &[(String, PathBuf)]) -> Result<String> {
    let Some(dir) = data_dir else {
        let mut stores: Vec<(String, PathBuf)> = stores
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()),
                )
            })
            .collect();
        stores.sort();
        let mut h = Sha256::new();
        for (name, path) in &stores {
            // Length-prefixed: no list of names and paths can be spelled as another.
            let path = path.to_string_lossy();
            h.update(format!("{}:{name}{}:{path}", name.len(), path.len()));
        }
        return Ok(hex(&h.finalize()[..16]));
    };
    let file = dir.join(UUID_FILE);
    let config = |what: &str, e: std::io::Error| Error::Config {
        reason: format!("{what} the server's uuid in {}: {e}", file.display()),
    };
    match std::fs::read_to_string(&file) {
        Ok(text) if is_uuid(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(file = %file.display(), "the server's uuid file is not a uuid; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(config("reading", e)),
    }
    // Written beside and renamed into place: a crash leaves the old file or the new one.
    let uuid = new_uuid();
    let tmp = dir.join(format!("{UUID_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, format!("{uuid}\n")).map_err(|e| config("writing", e))?;
    std::fs::rename(&tmp, &file).map_err(|e| config("writing", e))?;
    Ok(uuid)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_keeps_its_server_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let a = server_uuid(Some(dir.path()), &[]).unwrap();
        assert!(is_uuid(&a));
        assert_eq!(server_uuid(Some(dir.path()), &[]).unwrap(), a);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(server_uuid(Some(other.path()), &[]).unwrap(), a);
    }

    #[test]
    fn without_a_data_directory_the_served_stores_name_the_server() {
        let s = |n: &str, p: &str| (n.to_owned(), PathBuf::from(p));
        let one = server_uuid(None, &[s("a", "/x/a"), s("b", "/x/b")]).unwrap();
        assert!(is_uuid(&one));
        assert_eq!(
            server_uuid(None, &[s("b", "/x/b"), s("a", "/x/a")]).unwrap(),
            one
        );
        assert_ne!(server_uuid(None, &[s("a", "/x/a")]).unwrap(), one);
    }
}
