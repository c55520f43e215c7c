//! The benchmark's "note" documents: about 1 KB of JSON each (title, body text, tags,
//! timestamps), generated deterministically from their index so every implementation
//! (Settee, RouchDB here; PouchDB and the server loader in `bench/notes.js`) writes the same
//! documents. Keep the two files in step: same word lists, same xorshift32, same fields.

use serde_json::{json, Value};

const WORDS: [&str; 64] = [
    "meeting", "project", "idea", "draft", "review", "garden", "recipe", "travel", "budget",
    "invoice", "call", "email", "follow", "up", "with", "the", "team", "about", "next", "week",
    "remember", "to", "buy", "milk", "bread", "and", "coffee", "before", "friday", "plan",
    "sprint", "release", "notes", "check", "server", "logs", "fix", "bug", "in", "sync", "code",
    "write", "tests", "for", "offline", "mode", "book", "flight", "hotel", "train", "ticket",
    "read", "chapter", "three", "of", "that", "novel", "call", "mom", "on", "sunday", "pay",
    "rent", "today",
];
const TAGS: [&str; 12] = [
    "work", "home", "todo", "ideas", "travel", "shopping", "health", "finance", "reading",
    "family", "urgent", "someday",
];
/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
const BASE_MS: u64 = 1_767_225_600_000;

/// xorshift32, the same steps as `bench/notes.js` (which uses `>>> 0` to stay in u32).
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Rng {
        Rng(seed.wrapping_mul(2_654_435_761).wrapping_add(1) | 1)
    }
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// The id of note `i` (zero-padded so ids sort in insertion order).
pub fn note_id(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:08}")
}

fn words(rng: &mut Rng, min_chars: usize) -> String {
    let mut s = String::new();
    while s.len() < min_chars {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u32) as usize]);
    }
    s
}

/// ISO 8601 UTC with milliseconds, as JavaScript's `Date.prototype.toISOString`.
fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Note `i` with id `prefix + i` (about 1 KB as JSON).
pub fn note(prefix: &str, i: u64) -> Value {
    let mut rng = Rng::new(i as u32);
    let title = words(&mut rng, 24);
    let body = words(&mut rng, 760);
    let ntags = 1 + rng.below(3);
    let tags: Vec<&str> = (0..ntags)
        .map(|_| TAGS[rng.below(TAGS.len() as u32) as usize])
        .collect();
    let created = BASE_MS + i * 37_000;
    let updated = created + u64::from(rng.below(86_400_000));
    json!({
        "_id": note_id(prefix, i),
        "type": "note",
        "title": title,
        "body": body,
        "tags": tags,
        "pinned": rng.below(10) == 0,
        "created_at": iso(created),
        "updated_at": iso(updated),
    })
}

/// The order in which the `gets` phase reads ids: `count` pseudo-random indexes below `n`.
pub fn read_order(n: u64, count: u64) -> Vec<u64> {
    let mut rng = Rng::new(0xC0FFEE);
    (0..count).map(|_| u64::from(rng.next()) % n).collect()
}
