//! The answer edits of the fault proxy: what a misbehaving or clustered server can send
//! back that a single healthy CouchDB node never does (a `_bulk_get` result dropped,
//! duplicated or out of order, `_changes` rows repeated, a `_revs_diff` entry missing, a
//! `_bulk_docs` row missing). Each edit works on the parsed JSON body and leaves an answer it
//! does not understand as it was.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;

use crate::http::Reply;

/// How an answer is edited (see [`super::Fault`] for what each means on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Edit {
    BulkGetDrop,
    BulkGetDuplicate,
    BulkGetReorder,
    ChangesRepeat,
    RevsDiffOmit,
    BulkDocsDropRow,
}

/// Applies `edit` to `reply`; returns the edited answer and a short note of what changed
/// (`None` when there was nothing to edit: an empty list, a body that is not JSON).
pub(super) fn apply(edit: Edit, reply: Reply, rng: &mut StdRng) -> (Reply, Option<String>) {
    if reply.status >= 300 {
        return (reply, None);
    }
    let Some(mut body) = reply.body_json() else {
        return (reply, None);
    };
    let note = match edit {
        Edit::BulkGetDrop => edit_list(&mut body, "results", rng, |rows, rng| {
            // A result of a document asked for more than once (two revisions of a conflict)
            // when there is one: the request it answered shares its id with another.
            let shared = |i: usize| rows.iter().filter(|r| r["id"] == rows[i]["id"]).count() > 1;
            let i = (0..rows.len())
                .find(|i| shared(*i))
                .unwrap_or_else(|| rng.gen_range(0..rows.len()));
            let gone = rows.remove(i);
            format!("dropped _bulk_get result for {}", gone["id"])
        }),
        Edit::BulkGetDuplicate => edit_list(&mut body, "results", rng, |rows, rng| {
            let i = rng.gen_range(0..rows.len());
            let copy = rows[i].clone();
            let at = rng.gen_range(0..=rows.len());
            rows.insert(at, copy);
            format!("duplicated _bulk_get result for {}", rows[at]["id"])
        }),
        Edit::BulkGetReorder => edit_list(&mut body, "results", rng, |rows, rng| {
            if rows.len() > 1 {
                rows.reverse();
            }
            // Within each document too: open_revs answers of a conflicted document.
            for row in rows.iter_mut() {
                if let Some(docs) = row.get_mut("docs").and_then(Value::as_array_mut) {
                    docs.shuffle(rng);
                }
            }
            format!("reordered {} _bulk_get results", rows.len())
        }),
        Edit::ChangesRepeat => edit_list(&mut body, "results", rng, |rows, rng| {
            let n = rng.gen_range(1..=rows.len());
            let again: Vec<Value> = rows[..n].to_vec();
            rows.extend(again);
            format!("repeated {n} _changes rows")
        }),
        Edit::RevsDiffOmit => match body.as_object_mut() {
            Some(map) if !map.is_empty() => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = &keys[rng.gen_range(0..keys.len())];
                map.remove(key);
                Some(format!("omitted {key} from _revs_diff"))
            }
            _ => None,
        },
        Edit::BulkDocsDropRow => match body.as_array_mut() {
            Some(rows) if !rows.is_empty() => {
                let gone = rows.remove(rng.gen_range(0..rows.len()));
                Some(format!("dropped _bulk_docs row {gone}"))
            }
            _ => None,
        },
    };
    let reply = match note {
        Some(_) => Reply::json(reply.status, &body),
        None => reply,
    };
    (reply, note)
}

/// Runs `f` on the non-empty array `body[field]`.
fn edit_list(
    body: &mut Value,
    field: &str,
    rng: &mut StdRng,
    f: impl FnOnce(&mut Vec<Value>, &mut StdRng) -> String,
) -> Option<String> {
    let rows = body.get_mut(field)?.as_array_mut()?;
    if rows.is_empty() {
        return None;
    }
    Some(f(rows, rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    fn run(edit: Edit, body: Value) -> (Value, Option<String>) {
        let mut rng = StdRng::seed_from_u64(7);
        let (reply, note) = apply(edit, Reply::json(200, &body), &mut rng);
        (reply.body_json().unwrap(), note)
    }

    #[test]
    fn bulk_get_edits_change_the_results() {
        let body = json!({"results": [{"id": "a", "docs": []}, {"id": "b", "docs": []}]});
        let (dropped, _) = run(Edit::BulkGetDrop, body.clone());
        assert_eq!(dropped["results"].as_array().unwrap().len(), 1);
        let (dup, _) = run(Edit::BulkGetDuplicate, body.clone());
        assert_eq!(dup["results"].as_array().unwrap().len(), 3);
        let (rev, _) = run(Edit::BulkGetReorder, body);
        assert_eq!(rev["results"][0]["id"], "b");
    }

    #[test]
    fn revs_diff_and_bulk_docs_lose_an_entry_and_empty_answers_stay() {
        let (diff, note) = run(Edit::RevsDiffOmit, json!({"a": {"missing": ["1-x"]}}));
        assert_eq!((diff, note.is_some()), (json!({}), true));
        let (rows, note) = run(Edit::BulkDocsDropRow, json!([]));
        assert_eq!((rows, note), (json!([]), None));
    }

    #[test]
    fn changes_rows_repeat() {
        let (page, _) = run(
            Edit::ChangesRepeat,
            json!({"results": [{"id": "a"}, {"id": "b"}], "last_seq": "2"}),
        );
        assert!(page["results"].as_array().unwrap().len() > 2);
        assert_eq!(page["last_seq"], "2");
    }
}
