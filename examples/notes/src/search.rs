//! Search in titles and bodies: a small in-memory word index of the notes, kept by
//! `queries::FacetCache` in step with the store's changes feed (as it keeps the notebook and
//! tag counts), so a search costs a few map lookups, not a scan of every note.
//!
//! Why not Mango: a `$regex` over bodies reads every note's body on every keystroke (about
//! a second at 10,000 notes); a word index answers in well under a millisecond and costs
//! memory in proportion to the notes' distinct words. It is rebuilt at each start (from the
//! same read that builds the counts), so it has no format to keep.
//!
//! What matches: every whitespace-separated term of the query must start a word of the
//! note's title or body (case-insensitive: "plan" finds "Planning"), and occur literally in
//! it (so "pl.n" is text, not a pattern). Words are runs of letters and digits.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The words of `text`: runs of letters and digits, lowercased, each once.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// A parsed search: its terms (lowercased), and each term's words.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    terms: Vec<(String, Vec<String>)>,
}

impl Query {
    /// The search for `text`, or `None` when it has no word to look for.
    pub(crate) fn parse(text: &str) -> Option<Query> {
        let terms: Vec<(String, Vec<String>)> = text
            .split_whitespace()
            .map(|t| (t.to_lowercase(), words(t)))
            .filter(|(_, w)| !w.is_empty())
            .collect();
        (!terms.is_empty()).then_some(Query { terms })
    }
}

/// Note ids by the words of their title and body, and each note's lowercased text (to
/// check that a term occurs literally).
#[derive(Debug, Default)]
pub(crate) struct WordIndex {
    postings: BTreeMap<String, HashSet<String>>,
    texts: HashMap<String, String>,
}

impl WordIndex {
    /// Indexes note `id` with this title and body, replacing what it had.
    pub(crate) fn insert(&mut self, id: &str, title: &str, body: &str) {
        self.remove(id);
        let text = format!("{}\n{}", title.to_lowercase(), body.to_lowercase());
        for w in words(&text) {
            self.postings.entry(w).or_default().insert(id.to_owned());
        }
        self.texts.insert(id.to_owned(), text);
    }

    /// Forgets note `id`.
    pub(crate) fn remove(&mut self, id: &str) {
        let Some(text) = self.texts.remove(id) else {
            return;
        };
        for w in words(&text) {
            if let Some(ids) = self.postings.get_mut(&w) {
                ids.remove(id);
                if ids.is_empty() {
                    self.postings.remove(&w);
                }
            }
        }
    }

    /// The postings of the words starting with `prefix`.
    fn starting_with(&self, prefix: &str) -> Vec<&HashSet<String>> {
        self.postings
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(w, _)| w.starts_with(prefix))
            .map(|(_, ids)| ids)
            .collect()
    }

    /// The notes that match `query` (in no order). The candidates are the notes of the
    /// query's rarest word (the one with the fewest notes); each is then checked against
    /// its text, so no large set is built for a common word.
    pub(crate) fn matching<'a>(&'a self, query: &Query) -> HashSet<&'a str> {
        let rarest = query.terms.iter().flat_map(|(_, ws)| ws).min_by_key(|w| {
            self.starting_with(w)
                .iter()
                .map(|ids| ids.len())
                .sum::<usize>()
        });
        let Some(rarest) = rarest else {
            return HashSet::new();
        };
        self.starting_with(rarest)
            .into_iter()
            .flat_map(|ids| ids.iter().map(String::as_str))
            .filter(|id| {
                self.texts.get(*id).is_some_and(|t| {
                    query.terms.iter().all(|(term, ws)| {
                        t.contains(term.as_str()) && ws.iter().all(|w| starts_a_word(t, w))
                    })
                })
            })
            .collect()
    }
}

/// Whether `word` occurs in `text` at the start of a word.
fn starts_a_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(notes: &[(&str, &str, &str)]) -> WordIndex {
        let mut ix = WordIndex::default();
        for (id, title, body) in notes {
            ix.insert(id, title, body);
        }
        ix
    }

    fn find(ix: &WordIndex, q: &str) -> Vec<String> {
        let mut v: Vec<String> = ix
            .matching(&Query::parse(q).unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn words_of_bodies_and_titles_are_found_by_their_start() {
        let ix = index(&[
            ("a", "Groceries", "bread, MILK and eggs"),
            ("b", "Milkshake recipe", "banana"),
            ("c", "Trip", "pack the camera"),
        ]);
        assert_eq!(find(&ix, "milk"), ["a", "b"]);
        assert_eq!(find(&ix, "EGG bread"), ["a"]);
        assert_eq!(find(&ix, "camera"), ["c"]);
        assert_eq!(find(&ix, "amera"), Vec::<String>::new());
        assert_eq!(find(&ix, "mil.k"), Vec::<String>::new());
        assert!(Query::parse(" .. ").is_none());
    }

    #[test]
    fn an_edit_or_a_deletion_leaves_no_stale_word() {
        let mut ix = index(&[("a", "old title", "old body")]);
        ix.insert("a", "new title", "new body");
        assert_eq!(find(&ix, "old"), Vec::<String>::new());
        assert_eq!(find(&ix, "new"), ["a"]);
        ix.remove("a");
        assert_eq!(find(&ix, "new"), Vec::<String>::new());
        assert!(ix.postings.is_empty() && ix.texts.is_empty());
    }

    /// The 10,000-note search the page does, timed and printed (never asserted: the
    /// machine's load decides the number; the issue asks for under 50 ms).
    #[test]
    fn ten_thousand_notes_are_searched_in_well_under_50_ms() {
        let mut ix = WordIndex::default();
        for i in 0..10_000 {
            ix.insert(
                &format!("note:{i:05}"),
                &format!("Note {i:05}"),
                &format!(
                    "Generated note number {i}, about topic{} and more words",
                    i % 97
                ),
            );
        }
        let start = std::time::Instant::now();
        let hits = ix.matching(&Query::parse("topic42 note").unwrap()).len();
        let rare = ix.matching(&Query::parse("0999").unwrap()).len();
        let took = start.elapsed();
        eprintln!("word index: two searches over 10,000 notes in {took:?}");
        assert_eq!(hits, (0..10_000).filter(|i| i % 97 == 42).count());
        assert_eq!(rare, 10);
    }
}
