//! The owner's advertisement: a process that holds a store (sled lets one process open it)
//! and serves it writes `settee-owner.json` into the store directory with its loopback URL
//! and a credential made for this run, readable by the same user only. Another process
//! that finds the store in use reads it ([`Advert::read`]) and talks to the holder over
//! HTTP instead of failing with `store_in_use`. The file goes when the server stops; one
//! left by a crash is harmless, since it is read only while the store's lock is held.
//!
//! This module owns the file (its name, format, permissions); the store itself never
//! reads or writes it. It lives here, below both, because the server writes it and the
//! facade reads it, and an application built without the server must still find a store
//! another process serves. When to write and remove it is `settee-server`'s decision.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name inside a store directory (not one of sled's).
pub const ADVERT_FILE: &str = "settee-owner.json";

/// How to reach the process that holds a store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The database's URL on the holder's server, without credentials.
    pub url: String,
    /// The user name to authenticate as.
    pub user: String,
    /// The password, made for this run of the holder.
    pub password: String,
    /// The holder's process id (for messages).
    pub pid: u32,
}

impl std::fmt::Debug for Advert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advert")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("pid", &self.pid)
            .finish()
    }
}

impl Advert {
    /// The advertisement in store directory `store`, if its holder left one.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// assert!(settee_store::Advert::read(dir.path()).is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read(store: &Path) -> Option<Advert> {
        let bytes = std::fs::read(store.join(ADVERT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The URL with the credentials in it (for a client that takes them from the URL).
    ///
    /// ```
    /// let advert = settee_store::Advert {
    ///     url: "http://127.0.0.1:5984/notes".into(),
    ///     user: "_owner".into(),
    ///     password: "pw".into(),
    ///     pid: 7,
    /// };
    /// assert_eq!(advert.url_with_credentials(), "http://_owner:pw@127.0.0.1:5984/notes");
    /// ```
    pub fn url_with_credentials(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}:{}@{rest}", self.user, self.password),
            None => self.url.clone(),
        }
    }

    /// Writes the file into store directory `store` (owner-only permissions where the
    /// platform has them), atomically: a reader sees the old file or the new one whole.
    /// Returns the file's path, for removing it when the holder stops serving.
    ///
    /// # Errors
    /// The I/O error of writing, syncing or renaming the file.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let advert = settee_store::Advert {
    ///     url: "http://127.0.0.1:5984/notes".into(),
    ///     user: "_owner".into(),
    ///     password: "made-for-this-run".into(),
    ///     pid: std::process::id(),
    /// };
    /// let path = advert.write(dir.path())?;
    /// assert!(path.ends_with(settee_store::ADVERT_FILE));
    /// assert_eq!(settee_store::Advert::read(dir.path()), Some(advert));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write(&self, store: &Path) -> std::io::Result<PathBuf> {
        let path = store.join(ADVERT_FILE);
        let tmp = store.join(format!(".{ADVERT_FILE}.tmp"));
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        {
            use std::io::Write;
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_advert_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Advert {
            url: "http://127.0.0.1:1/db".into(),
            user: "_owner".into(),
            password: "pw".into(),
            pid: 7,
        };
        let path = a.write(dir.path()).unwrap();
        assert_eq!(Advert::read(dir.path()), Some(a.clone()));
        assert_eq!(a.url_with_credentials(), "http://_owner:pw@127.0.0.1:1/db");
        assert!(!format!("{a:?}").contains("pw"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }
}
