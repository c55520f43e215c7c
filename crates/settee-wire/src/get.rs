//! The query parameters of `GET /{db}/{docid}` ([`GetOptions`]). The client sends them;
//! the store (and the server, which parses them into this type) reads by them.

use settee_revtree::Rev;

/// Options of `GET /{db}/{docid}`; each field is CouchDB's query parameter of the same
/// name, and the default (all off) is CouchDB's.
///
/// ```
/// let opts = settee_wire::GetOptions { conflicts: true, ..Default::default() };
/// assert!(opts.rev.is_none() && !opts.revs);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read this revision instead of the winner.
    pub rev: Option<Rev>,
    /// With `rev`: if it is not a leaf, read the newest leaf descending from it.
    pub latest: bool,
    /// Add `_revisions` (the ancestry, newest first).
    pub revs: bool,
    /// Add `_revs_info` (`[{rev, status}]`).
    pub revs_info: bool,
    /// Add `_conflicts` (live leaves other than the winner) when there are any.
    pub conflicts: bool,
    /// Add `_deleted_conflicts` (deleted leaves other than the winner) when there are any.
    pub deleted_conflicts: bool,
    /// Same as `conflicts`, `deleted_conflicts` and `revs_info` together (CouchDB's `meta`).
    pub meta: bool,
    /// Add `_local_seq`: the document's sequence in its database.
    pub local_seq: bool,
    /// Inline attachment bodies as base64 `data` instead of stubs.
    pub attachments: bool,
    /// Add `encoding` and `encoded_length` to encoded (gzipped) attachments, which CouchDB
    /// and a store keep as they were given.
    pub att_encoding_info: bool,
    /// Inline only attachments changed after the newest of these revisions that the
    /// document's tree knows (the rest stay stubs).
    pub atts_since: Vec<Rev>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_couchdbs_all_off() {
        let d = GetOptions::default();
        assert_eq!(d.rev, None);
        assert!(![
            d.latest,
            d.revs,
            d.revs_info,
            d.conflicts,
            d.deleted_conflicts,
            d.meta,
            d.local_seq,
            d.attachments,
            d.att_encoding_info
        ]
        .contains(&true));
        assert!(d.atts_since.is_empty());
    }
}
