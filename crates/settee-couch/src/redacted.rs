//! `RedactedUrl`: the only form in which this crate shows a URL (errors, `Debug`, tracing).
//! It owns the redaction rule; where credentials are kept is `client.rs`'s business.

use std::fmt;
use std::sync::Arc;

use url::Url;

/// Query parameters whose values are secrets (CouchDB proxies and Cloudant accept some of
/// these); their values are replaced by `REDACTED`.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "token",
    "access_token",
    "auth",
    "key",
    "api_key",
    "apikey",
    "secret",
];

/// A URL with its userinfo removed and the values of credential-like query parameters
/// (`password`, `token`, `access_token`, `api_key`, ...) replaced, safe to print and log.
///
/// ```
/// use settee_couch::RedactedUrl;
/// let url = url::Url::parse("http://alice:hunter2@127.0.0.1:5984/db?token=abc&limit=1")?;
/// let shown = RedactedUrl::new(&url);
/// assert_eq!(shown.to_string(), "http://127.0.0.1:5984/db?token=REDACTED&limit=1");
/// assert!(!format!("{shown:?}").contains("hunter2"));
/// # Ok::<(), url::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(Arc<Url>); // an Arc: cheap clones, and a small Error

impl RedactedUrl {
    /// Redacts `url`. The original is not kept.
    pub fn new(url: &Url) -> RedactedUrl {
        let mut url = url.clone();
        // Both setters only fail for URLs that cannot have credentials (cannot-be-a-base),
        // which then have none to remove.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                    let v = if secret {
                        "REDACTED".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        RedactedUrl(Arc::new(url))
    }

    /// The redacted URL as a string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The redacted URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl From<&Url> for RedactedUrl {
    fn from(url: &Url) -> RedactedUrl {
        RedactedUrl::new(url)
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_params_are_removed() {
        let url = Url::parse("https://u%40x:p%2Fw@h.example/db?password=pw&since=3").unwrap();
        let r = RedactedUrl::new(&url);
        assert_eq!(r.as_str(), "https://h.example/db?password=REDACTED&since=3");
        assert!(!format!("{r:?}{r}").contains("p%2Fw"));
    }

    #[test]
    fn url_without_query_keeps_no_question_mark() {
        let url = Url::parse("http://a:b@h/db/doc").unwrap();
        assert_eq!(RedactedUrl::new(&url).as_str(), "http://h/db/doc");
    }
}
