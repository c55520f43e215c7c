//! `Seq`: an update sequence as a peer gave it. Opaque: stored and sent back, never parsed,
//! compared or incremented (CouchDB 2+ sequences are strings like `"12-g1AAAA..."`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An opaque update sequence (`since`, `seq`, `last_seq`, `update_seq`).
///
/// ```
/// use settee_revtree::Seq;
/// let seq: Seq = serde_json::from_str(r#""12-g1AAAA""#)?;
/// assert_eq!(seq.to_string(), r#""12-g1AAAA""#);
/// assert_eq!(Seq::from(5u64).to_query(), "5");
/// assert_eq!(seq.to_query(), "12-g1AAAA");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(serde_json::Value);

impl Seq {
    /// The start of every feed: `0`.
    pub fn zero() -> Seq {
        Seq(serde_json::Value::from(0))
    }

    /// Wraps a JSON value received from a peer.
    pub fn from_json(value: serde_json::Value) -> Seq {
        Seq(value)
    }

    /// The JSON value, as received.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }

    /// The value for a `since=` query parameter: a string as is, anything else as JSON.
    pub fn to_query(&self) -> String {
        match &self.0 {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Whether this is the initial sequence `0` (number or string).
    pub fn is_zero(&self) -> bool {
        match &self.0 {
            serde_json::Value::Number(n) => n.as_u64() == Some(0),
            serde_json::Value::String(s) => s == "0",
            _ => false,
        }
    }

    /// The local store's own sequences are integers; this reads one back. `None` for a
    /// remote peer's opaque sequence, which must never be interpreted.
    pub fn as_local(&self) -> Option<u64> {
        match &self.0 {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl Default for Seq {
    fn default() -> Seq {
        Seq::zero()
    }
}

impl From<u64> for Seq {
    fn from(n: u64) -> Seq {
        Seq(serde_json::Value::from(n))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}
