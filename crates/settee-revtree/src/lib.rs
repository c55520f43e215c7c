//! CouchDB revision trees, with no I/O.
//!
//! Every replica that syncs with a CouchDB server must pick the same winning revision and
//! keep the same conflicts as the server and as every PouchDB client of it. This crate holds
//! that logic and nothing else:
//!
//! - [`Rev`] (`N-hash`), [`Revisions`] (`_revisions`) and [`RevPath`] (a checked history);
//! - [`RevTree`]: merging a path ([`RevTree::merge`]) with `revs_limit` stemming, the winner,
//!   leaves, `_conflicts`, `_deleted_conflicts`, ancestry, `_revs_info`, `latest` and
//!   `_revs_diff`;
//! - [`new_rev_hash`]: deterministic revision ids;
//! - [`Seq`]: an opaque update sequence, shared by the store and the HTTP client.
//!
//! The merge and stemming rules are PouchDB's (`pouchdb-merge`), which the test suite checks
//! against the npm package itself on generated cases; the winner rule is CouchDB's and
//! PouchDB's alike. Where CouchDB and PouchDB differ, the item's docs say which we follow.
//!
//! ```
//! use settee_revtree::{RevPath, RevTree, Revisions};
//! // A replica wrote 1-a then 2-b; another wrote 2-c on top of 1-a, then deleted it.
//! let mut tree = RevTree::new(&RevPath::new(1, ["a", "b"])?, false);
//! let theirs = Revisions { start: 3, ids: vec!["d".into(), "c".into(), "a".into()] };
//! tree.merge(&theirs.to_path()?, true, 1000);
//! assert_eq!(tree.winner().to_string(), "2-b"); // a live leaf beats a deleted one
//! assert!(tree.conflicts().is_empty());
//! assert_eq!(tree.deleted_conflicts()[0].to_string(), "3-d");
//! # Ok::<(), settee_revtree::Error>(())
//! ```

mod encoding;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod merge;
mod rev;
mod revid;
mod revisions;
mod seq;
mod stem;
mod tree;

pub use error::{Error, Result};
pub use merge::{MergeKind, MergeOutcome};
pub use rev::{Rev, MAX_POS};
pub use revid::{canonical_json, new_rev_hash};
pub use revisions::{RevPath, Revisions};
pub use seq::Seq;
pub use tree::{Leaf, RevInfoStatus, RevStatus, RevTree, RevsDiff};
