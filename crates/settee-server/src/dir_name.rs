//! The directory a database lives in under the data directory, and back: every name
//! CouchDB accepts (up to 238 characters, `/` allowed) must be storable, but a file name
//! holds at most 255 bytes and `/` cannot be in one. A short name is its directory's name
//! with `/` written `%2F`; a name whose directory name would be long gets a readable
//! prefix, `~` and a hash of the name, and its real name in a file inside the directory
//! ([`NAME_FILE`]). `~` is never in a database name, so the two forms cannot collide.
//! Which databases exist is the registry's business (`registry.rs`).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The file holding a hashed directory's database name (not one of sled's).
pub(crate) const NAME_FILE: &str = "settee-db-name";

/// The longest directory name written as the name itself; longer ones are hashed. Well
/// under the 255-byte limit of common file systems, so that tools adding a suffix to a
/// file name (backups, editors) still fit.
const PLAIN_MAX: usize = 200;

/// How many bytes of the escaped name a hashed directory name keeps, for people reading
/// a directory listing.
const PREFIX_LEN: usize = 100;

/// The directory name of database `name` (already checked by `check_db_name`).
pub(crate) fn dir_of_name(name: &str) -> String {
    let escaped = name.replace('/', "%2F");
    if escaped.len() <= PLAIN_MAX {
        return escaped;
    }
    // INVARIANT: a checked name is ASCII, so any byte index is a char boundary.
    let mut prefix = escaped.get(..PREFIX_LEN).unwrap_or(&escaped);
    // Never end inside a `%2F`, so that the prefix reads as the name's start.
    for cut in ["%2", "%"] {
        if let Some(p) = prefix.strip_suffix(cut) {
            prefix = p;
        }
    }
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}~{hex}")
}

/// The database name of the store in `path` (a directory of the data directory named
/// `dir`): read from [`NAME_FILE`] for a hashed name (`None` if it is missing or does not
/// hash to `dir`), else `dir` with `%2F` read as `/`.
pub(crate) fn name_of_dir(path: &Path, dir: &str) -> Option<String> {
    if !dir.contains('~') {
        return Some(dir.replace("%2F", "/"));
    }
    let name = std::fs::read_to_string(path.join(NAME_FILE)).ok()?;
    let name = name.trim_end_matches('\n').to_owned();
    (dir_of_name(&name) == dir).then_some(name)
}

/// Records `name` in its store directory `path` when the directory name is hashed (a
/// plain one needs nothing).
///
/// # Errors
/// The write's I/O error.
pub(crate) fn record_name(path: &Path, name: &str) -> std::io::Result<()> {
    let dir = path.file_name().and_then(|d| d.to_str()).unwrap_or("");
    if !dir.contains('~') {
        return Ok(());
    }
    std::fs::write(path.join(NAME_FILE), format!("{name}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_their_directory() {
        assert_eq!(dir_of_name("a/b"), "a%2Fb");
        assert_eq!(
            name_of_dir(Path::new("/nowhere"), "a%2Fb").as_deref(),
            Some("a/b")
        );
    }

    #[test]
    fn long_names_hash_to_a_short_distinct_directory() {
        let slashes = format!("a{}", "/".repeat(90));
        let long = format!("a{}", "b".repeat(237));
        let other = format!("a{}c", "b".repeat(236));
        for name in [&slashes, &long, &other] {
            let dir = dir_of_name(name);
            assert!(dir.len() <= PLAIN_MAX, "{dir}");
            assert!(dir.contains('~'), "{dir}");
            assert!(!dir.ends_with('%'), "{dir}");
        }
        assert_ne!(dir_of_name(&long), dir_of_name(&other));
        assert!(dir_of_name(&slashes).starts_with("a%2F%2F"));
    }

    #[test]
    fn a_hashed_directory_is_read_back_from_its_name_file() {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("a{}", "/x".repeat(100));
        let path = tmp.path().join(dir_of_name(&name));
        std::fs::create_dir(&path).unwrap();
        record_name(&path, &name).unwrap();
        let dir = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name_of_dir(&path, dir).as_deref(), Some(name.as_str()));
        // A name file that does not hash to its directory is not believed.
        std::fs::write(path.join(NAME_FILE), "other\n").unwrap();
        assert_eq!(name_of_dir(&path, dir), None);
    }
}
