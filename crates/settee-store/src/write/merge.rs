//! How one document's revision joins its tree in a write call: an edit
//! ([`write_edit`], `new_edits=true`), checked against the current leaves, or a replicated
//! revision (`new_edits=false`), merged as given with its attachment stubs resolved.

use std::collections::HashSet;

use serde_json::{Map, Value};
use settee_revtree::{new_rev_hash, MergeKind, Rev, RevPath, RevTree};

use super::batch::BatchState;
use crate::attachments::{attachment_digest, metas, AttMeta};
use crate::keys::{AttEncoding, AttHead, DocRecord};
use crate::sync_state::Edit;
use crate::validate::{AttIn, Body, ParsedDoc};
use crate::{Error, Result};

/// The document's tree with `path` added: a new tree for a new document, else a copy of the
/// current one with `path` merged. Also the revisions stemming dropped, and how the path
/// merged (`None` for a new tree).
pub(super) fn with_path(
    current: Option<&DocRecord>,
    path: &RevPath,
    deleted: bool,
    limit: u64,
) -> (RevTree, Vec<Rev>, Option<MergeKind>) {
    match current {
        None => {
            let mut tree = RevTree::new(path, deleted);
            let stemmed = tree.stem(limit);
            (tree, stemmed, None)
        }
        Some(rec) => {
            let mut tree = rec.tree.clone();
            let outcome = tree.merge(path, deleted, limit);
            (tree, outcome.stemmed, Some(outcome.kind))
        }
    }
}

/// A normal edit (`new_edits=true`), CouchDB's rules (`couch_db_updater:merge_rev_tree/4`).
pub(crate) fn write_edit(st: &mut BatchState<'_>, id: &str, doc: ParsedDoc) -> Result<Rev> {
    let current = st.doc(id)?;
    let given = doc.rev.clone().or_else(|| {
        doc.revisions
            .as_ref()
            .and_then(|r| Rev::new(r.start, r.ids[0].clone()).ok())
    });
    let conflict = || Error::Conflict { id: id.to_owned() };
    let parent = match (&current, given) {
        (None, None) => None,
        // "old revs specified but none exist" (couch_db:prep_and_validate_updates).
        (None, Some(_)) => return Err(conflict()),
        // Recreating a deleted document: the new revision is a child of the winning
        // tombstone, not a new root (couch_db_updater, PouchDB updateDoc.js).
        (Some(rec), None) if rec.tree.is_deleted() => Some(rec.tree.winner()),
        (Some(_), None) => return Err(conflict()),
        (Some(rec), Some(rev)) if rec.tree.is_leaf(&rev) => Some(rev),
        (Some(_), Some(_)) => return Err(conflict()),
    };
    let pos = parent.as_ref().map_or(1, |p| p.pos() + 1);
    // Only a stub refers to the parent's attachments (CouchDB does not carry others over).
    let has_stub = doc
        .attachments
        .iter()
        .any(|(_, a)| matches!(a, AttIn::Stub { .. }));
    let parent_atts = match &parent {
        Some(p) if has_stub => st.body(id, p)?.map(|b| metas(&b)).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut att_meta = Map::new();
    let mut digests: Vec<(String, String)> = Vec::new();
    let mut new_atts: Vec<(String, &[u8], AttEncoding)> = Vec::new();
    let mut staged: Vec<(&str, &AttHead)> = Vec::new();
    for (name, att) in &doc.attachments {
        let meta = match att {
            AttIn::Staged {
                content_type,
                digest,
                head,
                decoded_length,
                ..
            } => {
                staged.push((digest, head));
                AttMeta::of_stored(
                    content_type.clone(),
                    digest.clone(),
                    pos,
                    *decoded_length,
                    head.length,
                    head.encoding,
                )
            }
            AttIn::Data {
                content_type,
                data,
                encoded,
                ..
            } => {
                let digest = attachment_digest(data);
                let (encoding, length) = inline_encoding(data, *encoded);
                new_atts.push((digest.clone(), data, encoding));
                AttMeta::of_stored(
                    content_type.clone(),
                    digest,
                    pos,
                    length,
                    data.len() as u64,
                    encoding,
                )
            }
            AttIn::Follows { .. } => return Err(follows_unsupported(name)),
            AttIn::Stub { .. } => parent_atts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| Error::MissingStub {
                    id: id.to_owned(),
                    name: name.clone(),
                })?,
        };
        digests.push((name.clone(), meta.digest.clone()));
        att_meta.insert(name.clone(), meta.to_value());
    }
    let pairs: Vec<(&str, &str)> = digests
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_str()))
        .collect();
    let mut body = doc.body.into_map()?;
    let hash = new_rev_hash(parent.as_ref(), doc.deleted, &body, &pairs);
    let path = RevPath::child_of(parent.as_ref(), &hash)?;
    let new_rev = path.leaf();
    let limit = st.inner.revs_limit();
    let (tree, stemmed, kind) = with_path(current.as_ref(), &path, doc.deleted, limit);
    if kind.is_some_and(|k| k != MergeKind::NewLeaf) {
        return Err(conflict());
    }
    // Every check passed: only now does anything go into the batch.
    for (digest, data, encoding) in new_atts {
        st.store_att(&digest, data, encoding)?;
    }
    for (digest, head) in staged {
        st.commit_staged(digest, head)?;
    }
    if !att_meta.is_empty() {
        body.insert("_attachments".into(), Value::Object(att_meta));
    }
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        Some((new_rev.clone(), Body::Map(body))),
        &stemmed,
        Edit::Local,
    )?;
    Ok(new_rev)
}

/// A replicated revision (`new_edits=false`): merged as given, no conflict check
/// (`couch_db_updater:merge_rev_tree(..., true)`).
pub(super) fn write_replicated(st: &mut BatchState<'_>, id: &str, doc: ParsedDoc) -> Result<Rev> {
    let path = match (&doc.revisions, &doc.rev) {
        (Some(revs), _) => revs.to_path()?,
        (None, Some(rev)) => RevPath::from_rev(rev),
        (None, None) => {
            return Err(Error::bad_request(
                "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
            ))
        }
    };
    let leaf = path.leaf();
    let current = st.doc(id)?;
    if let Some(rec) = current.as_ref().filter(|rec| rec.tree.contains(&leaf)) {
        // PouchDB updateDoc.js: `revExists && !newEdits` is a silent success.
        st.held_by_origin(id, rec, &leaf)?;
        return Ok(leaf);
    }
    let mut att_meta = Map::new();
    let mut new_atts: Vec<(String, Vec<u8>, AttEncoding, u64)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    // The attachments of the nearest stored ancestor, read when a stub first needs them.
    let mut ancestor_atts: Option<Vec<(String, AttMeta)>> = None;
    let mut staged: Vec<(&str, &AttHead, u64)> = Vec::new();
    for (name, att) in &doc.attachments {
        let meta = match att {
            AttIn::Staged {
                content_type,
                digest,
                head,
                decoded_length,
                revpos,
            } => {
                staged.push((digest, head, *decoded_length));
                AttMeta::of_stored(
                    content_type.clone(),
                    digest.clone(),
                    revpos.unwrap_or(leaf.pos()),
                    *decoded_length,
                    head.length,
                    head.encoding,
                )
            }
            AttIn::Data {
                content_type,
                data,
                revpos,
                encoded,
            } => {
                let digest = attachment_digest(data);
                let (encoding, length) = inline_encoding(data, *encoded);
                if seen.insert(digest.clone()) {
                    new_atts.push((digest.clone(), data.clone(), encoding, length));
                }
                AttMeta::of_stored(
                    content_type.clone(),
                    digest,
                    revpos.unwrap_or(leaf.pos()),
                    length,
                    data.len() as u64,
                    encoding,
                )
            }
            AttIn::Follows { .. } => return Err(follows_unsupported(name)),
            AttIn::Stub {
                content_type,
                digest,
                revpos,
                length: stub_length,
                encoding: stub_encoding,
            } => {
                // (stored length, encoding, decoded length when known) of the digest.
                let stored = match digest {
                    Some(d) => match new_atts.iter().find(|(nd, ..)| nd == d) {
                        Some((_, data, encoding, length)) => {
                            Some((data.len() as u64, *encoding, Some(*length)))
                        }
                        None => match staged.iter().find(|(sd, _, _)| sd == d) {
                            Some((_, head, decoded)) => {
                                Some((head.length, head.encoding, Some(*decoded)))
                            }
                            None => st.att_len(d)?.map(|(len, enc)| (len, enc, None)),
                        },
                    },
                    None => None,
                };
                let resolved = stored.and_then(|(len, enc, decoded)| {
                    by_digest(len, enc, decoded, *stub_length, *stub_encoding)
                });
                match (digest, resolved) {
                    (Some(digest), Some((length, stored_length, encoding))) => AttMeta::of_stored(
                        content_type
                            .clone()
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        digest.clone(),
                        revpos.unwrap_or(leaf.pos()),
                        length,
                        stored_length,
                        encoding,
                    ),
                    // A digest this store does not hold: Apache CouchDB gives a compressible
                    // attachment the digest of its gzipped bytes, which differs from ours
                    // for the same bytes. Resolve the stub as CouchDB does.
                    _ => {
                        let stored = match &mut ancestor_atts {
                            Some(atts) => atts,
                            None => ancestor_atts.insert(nearest_stored_atts(
                                st,
                                id,
                                current.as_ref(),
                                &path,
                            )?),
                        };
                        stored
                            .iter()
                            .find(|(n, m)| n == name && revpos.is_none_or(|p| p == m.revpos))
                            .map(|(_, m)| m.clone())
                            .ok_or_else(|| Error::MissingStub {
                                id: id.to_owned(),
                                name: name.clone(),
                            })?
                    }
                }
            }
        };
        att_meta.insert(name.clone(), meta.to_value());
    }
    // Every check passed: only now does anything go into the batch.
    for (digest, data, encoding, _) in &new_atts {
        st.store_att(digest, data, *encoding)?;
    }
    for (digest, head, _) in staged {
        st.commit_staged(digest, head)?;
    }
    let limit = st.inner.revs_limit();
    let (tree, stemmed, _) = with_path(current.as_ref(), &path, doc.deleted, limit);
    let mut body = doc.body;
    if !att_meta.is_empty() {
        body.push("_attachments", Value::Object(att_meta));
    }
    let keep_body = tree.contains(&leaf);
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        keep_body.then(|| (leaf.clone(), body)),
        &stemmed,
        Edit::Replicated { leaf: &leaf },
    )?;
    Ok(leaf)
}

/// How inline `data` is stored: `(encoding, decoded length)`, identity unless it came
/// encoded (`validate::encoded_inline`, which checked it).
fn inline_encoding(data: &[u8], encoded: Option<(AttEncoding, u64)>) -> (AttEncoding, u64) {
    encoded.unwrap_or((AttEncoding::Identity, data.len() as u64))
}

/// An attachment whose bytes were to follow, given where none do.
fn follows_unsupported(name: &str) -> Error {
    Error::bad_request(format!(
        "attachment {name:?}: `follows` (multipart) is not supported here; send data inline"
    ))
}

/// How a replicated stub naming stored bytes (`stored_length` long, first stored as
/// `stored_encoding`, `decoded` long once decoded when this call staged them) reads:
/// `(length, stored length, encoding)`. The stub's own `encoding` wins over how the bytes
/// were first stored (one digest, two readings: a `.gz` kept as it is, a text CouchDB
/// gzipped to the same bytes). `None` when an encoded attachment's decoded length is not
/// known or the stub's encoded length is not the stored one: the stub is then resolved
/// against the document's stored ancestors, as CouchDB does.
fn by_digest(
    stored_length: u64,
    stored_encoding: AttEncoding,
    decoded: Option<u64>,
    stub_length: Option<u64>,
    stub_encoding: Option<(AttEncoding, Option<u64>)>,
) -> Option<(u64, u64, AttEncoding)> {
    let encoding = stub_encoding.map_or(stored_encoding, |(e, _)| e);
    if encoding == AttEncoding::Identity {
        return Some((stored_length, stored_length, encoding));
    }
    if stub_encoding.is_some_and(|(_, len)| len.is_some_and(|l| l != stored_length)) {
        return None;
    }
    let length = if encoding == stored_encoding {
        decoded.or(stub_length)
    } else {
        stub_length
    }?;
    Some((length, stored_length, encoding))
}

/// The attachments of the newest ancestor of `path`'s leaf whose body this store holds,
/// none if it holds none. CouchDB resolves a replicated revision's stubs against that
/// revision, by name and `revpos` (`couch_db:prep_and_validate_replicated_updates`,
/// `couch_att:merge_stubs`).
pub(super) fn nearest_stored_atts(
    st: &mut BatchState<'_>,
    id: &str,
    current: Option<&DocRecord>,
    path: &RevPath,
) -> Result<Vec<(String, AttMeta)>> {
    let Some(rec) = current else {
        return Ok(Vec::new());
    };
    let ancestors: Vec<Rev> = path.revs().collect();
    // Newest first, the leaf itself left out.
    for rev in ancestors.iter().rev().skip(1) {
        if !rec.tree.contains(rev) {
            continue;
        }
        if let Some(body) = st.body(id, rev)? {
            return Ok(metas(&body));
        }
    }
    Ok(Vec::new())
}
