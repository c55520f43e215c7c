//! The `AuthSession` cookie, as CouchDB's: `base64url("name:issued-hex:hmac-hex")`, signed
//! with the server's secret followed by the user's salt, so that a new password (a new
//! salt) or a deleted user ends every cookie issued before. Sent `HttpOnly`, with
//! `SameSite` (Lax unless configured) and `Secure` when asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::users::{hex_decode, hex_encode};
use crate::error::HttpError;
use crate::options::SameSite;

type HmacSha256 = Hmac<Sha256>;

pub(crate) const COOKIE: &str = "AuthSession";

/// How session cookies are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieSettings {
    pub(crate) timeout: Duration,
    pub(crate) same_site: SameSite,
    pub(crate) secure: bool,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(secret: &[u8], salt: &str) -> HmacSha256 {
    let mut key = secret.to_vec();
    key.extend_from_slice(salt.as_bytes());
    // INVARIANT: HMAC takes a key of any length.
    HmacSha256::new_from_slice(&key).expect("hmac accepts any key")
}

/// A cookie value for `name` (whose salt is `salt`, empty for a configured admin).
pub(crate) fn token(secret: &[u8], name: &str, salt: &str, issued: u64) -> String {
    let payload = format!("{name}:{issued:X}");
    let mut m = mac(secret, salt);
    m.update(payload.as_bytes());
    let sig = hex_encode(&m.finalize().into_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{payload}:{sig}"))
}

/// The name in a cookie, unverified (to find the user's salt), with the rest to verify.
pub(crate) struct Unverified {
    pub(crate) name: String,
    payload: String,
    issued: u64,
    sig: Vec<u8>,
}

/// CouchDB's answer to a cookie that is not one of its shape.
pub(crate) const MALFORMED: &str = "Malformed AuthSession cookie. Please clear your cookies.";

/// Reads a cookie value. As CouchDB: one that is not base64url, or has fewer than three
/// `:`-separated parts, is a 400 ([`MALFORMED`]); one whose parts do not parse (a forgery)
/// is `Ok(None)`, and the request is anonymous.
pub(crate) fn parse(token: &str) -> Result<Option<Unverified>, HttpError> {
    let malformed = || HttpError::bad_request(MALFORMED);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| malformed())?;
    if raw.iter().filter(|b| **b == b':').count() < 2 {
        return Err(malformed());
    }
    let Ok(raw) = String::from_utf8(raw) else {
        return Ok(None);
    };
    let parts = (|| {
        let (payload, sig) = raw.rsplit_once(':')?;
        let (name, issued) = payload.rsplit_once(':')?;
        Some(Unverified {
            name: name.to_owned(),
            issued: u64::from_str_radix(issued, 16).ok()?,
            sig: hex_decode(sig)?,
            payload: payload.to_owned(),
        })
    })();
    Ok(parts)
}

impl Unverified {
    /// The issue time, if the signature is right for `salt` and the cookie not expired.
    pub(crate) fn verify(&self, secret: &[u8], salt: &str, timeout: Duration) -> Option<u64> {
        let mut m = mac(secret, salt);
        m.update(self.payload.as_bytes());
        m.verify_slice(&self.sig).ok()?;
        let age = now_secs().checked_sub(self.issued)?;
        (age < timeout.as_secs()).then_some(self.issued)
    }
}

impl CookieSettings {
    fn attributes(&self) -> String {
        let mut a = String::from("Path=/; HttpOnly");
        match self.same_site {
            SameSite::Lax => a.push_str("; SameSite=Lax"),
            SameSite::Strict => a.push_str("; SameSite=Strict"),
            SameSite::None => a.push_str("; SameSite=None"),
            SameSite::Unset => {}
        }
        if self.secure {
            a.push_str("; Secure");
        }
        a
    }

    /// `Set-Cookie` for a new session.
    pub(crate) fn header(&self, secret: &[u8], name: &str, salt: &str) -> HeaderValue {
        let token = token(secret, name, salt, now_secs());
        let max_age = self.timeout.as_secs();
        let expires = httpdate::fmt_http_date(SystemTime::now() + self.timeout);
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Version=1; Expires={expires}; Max-Age={max_age}; {}",
            self.attributes()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("AuthSession=; Path=/"))
    }

    /// `Set-Cookie` ending the session.
    pub(crate) fn clear(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Version=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; {}",
            self.attributes()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("AuthSession=; Max-Age=0; Path=/"))
    }
}

/// The value of cookie `name` in a request.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trips_and_tampering_is_rejected() {
        let secret = [7u8; 32];
        let t = Duration::from_secs(600);
        let tok = token(&secret, "boss", "salt1", now_secs());
        let u = parse(&tok).unwrap().unwrap();
        assert_eq!(u.name, "boss");
        assert!(u.verify(&secret, "salt1", t).is_some());
        // Another salt (a changed password) or another secret does not verify it.
        assert!(u.verify(&secret, "salt2", t).is_none());
        assert!(u.verify(&[8u8; 32], "salt1", t).is_none());
        let raw = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&tok)
                .unwrap(),
        )
        .unwrap();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(raw.replacen("boss", "bosx", 1));
        assert!(parse(&forged)
            .unwrap()
            .unwrap()
            .verify(&secret, "salt1", t)
            .is_none());
        let old = token(&secret, "boss", "salt1", now_secs() - 601);
        assert!(parse(&old)
            .unwrap()
            .unwrap()
            .verify(&secret, "salt1", t)
            .is_none());
    }

    /// CouchDB answers 400 to a cookie that is not base64url or has fewer than three parts,
    /// and treats one whose parts do not parse as no cookie.
    #[test]
    fn malformed_cookies_are_refused_and_forged_ones_ignored() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in ["garbage!!".to_owned(), enc("abc"), enc("onlytwo:parts")] {
            match parse(&bad) {
                Err(e) => assert_eq!(e.reason, MALFORMED, "{bad}"),
                Ok(_) => panic!("{bad} was read"),
            }
        }
        for forged in [
            enc("admin:00:00"),
            enc("admin:ZZ:abcd"),
            enc("admin:6B16A849:xyz"),
        ] {
            let read = parse(&forged).unwrap();
            assert!(read.is_none_or(|u| u.verify(&[0; 32], "", Duration::from_secs(600)).is_none()));
        }
    }
}
