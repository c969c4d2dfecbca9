//! Request authentication: every task request carries signed headers that the receiver checks
//! before it reads a byte of the body.
//!
//! | header | value |
//! |---|---|
//! | `x-thywill-from` | the sender's member id |
//! | `x-thywill-incarnation` | the sender's incarnation (its start time, unix ms; strictly increasing across its restarts) |
//! | `x-thywill-to-incarnation` | the receiver's incarnation as the sender knows it (`0` if it does not) |
//! | `x-thywill-seq` | request number, from 1, per sender incarnation (every attempt takes a new one) |
//! | `x-thywill-timestamp` | unix ms when the attempt was signed |
//! | `x-thywill-body-sha256` | hex SHA-256 of the body |
//! | `content-length` | the body's length (required; no chunked bodies) |
//! | `x-thywill-signature` | hex HMAC-SHA256(secret, [`canonical`] of all the above and the receiver's member id) |
//!
//! The receiver's member id is signed but not sent: a request signed for one member is refused
//! by every other one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use warp::http::HeaderMap;

type HmacSha256 = Hmac<Sha256>;

/// Header: sender member id.
pub(crate) const FROM: &str = "x-thywill-from";
/// Header: sender incarnation.
pub(crate) const INCARNATION: &str = "x-thywill-incarnation";
/// Header: the receiver incarnation the request is addressed to (also sent back with 409).
pub(crate) const TO_INCARNATION: &str = "x-thywill-to-incarnation";
/// Header: request number within the sender incarnation.
pub(crate) const SEQ: &str = "x-thywill-seq";
/// Header: signing time, unix ms.
pub(crate) const TIMESTAMP: &str = "x-thywill-timestamp";
/// Header: hex SHA-256 of the body.
pub(crate) const BODY_SHA256: &str = "x-thywill-body-sha256";
/// Header: the signature.
pub(crate) const SIGNATURE: &str = "x-thywill-signature";
/// On a 401 answer: the (validly signed) request's number was overtaken; sign it again.
pub(crate) const STALE: &str = "x-thywill-stale";
/// The only content type of task requests.
pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

/// Milliseconds since the unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The signed fields of one task request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Sender member id.
    pub from: String,
    /// Sender incarnation.
    pub incarnation: u64,
    /// Receiver incarnation addressed.
    pub to_incarnation: u64,
    /// Request number.
    pub seq: u64,
    /// Signing time, unix ms.
    pub timestamp: u64,
    /// Body length.
    pub length: u64,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
}

/// Hex SHA-256 of `body`.
pub(crate) fn digest(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// The signed text: a version tag and every claim, one a line, with the receiver's id.
/// Member ids hold no whitespace (the configuration refuses them), so it is unambiguous.
pub(crate) fn canonical(c: &Claims, to: &str) -> String {
    format!(
        "thywill-cluster-http/2\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        c.from, to, c.incarnation, c.to_incarnation, c.seq, c.timestamp, c.length, c.body_sha256
    )
}

fn mac(secret: &[u8], text: &str) -> HmacSha256 {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac takes any key"));
    m.update(text.as_bytes());
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// The headers of a request with these claims to member `to` (without `content-length`, which
/// the client sets from the body).
pub(crate) fn headers(secret: &[u8], c: &Claims, to: &str) -> Vec<(&'static str, String)> {
    let tag = mac(secret, &canonical(c, to)).finalize().into_bytes();
    vec![
        (FROM, c.from.clone()),
        (INCARNATION, c.incarnation.to_string()),
        (TO_INCARNATION, c.to_incarnation.to_string()),
        (SEQ, c.seq.to_string()),
        (TIMESTAMP, c.timestamp.to_string()),
        (BODY_SHA256, c.body_sha256.clone()),
        (SIGNATURE, hex(&tag)),
        ("content-type", CONTENT_TYPE.to_owned()),
    ]
}

fn text<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, &'static str> {
    h.get(name)
        .ok_or("missing signature header")?
        .to_str()
        .map_err(|_| "malformed signature header")
}

fn number(h: &HeaderMap, name: &str) -> Result<u64, &'static str> {
    text(h, name)?
        .trim()
        .parse()
        .map_err(|_| "malformed signature header")
}

/// Checks the signed headers of a request to member `to`, at receiver time `now` (unix ms):
/// every header present and well formed, the timestamp within `max_age` in the past and
/// `max_ahead` in the future, the signature right. Says why on refusal.
pub(crate) fn verify(
    secret: &[u8],
    h: &HeaderMap,
    to: &str,
    now: u64,
    max_age: Duration,
    max_ahead: Duration,
) -> Result<Claims, &'static str> {
    let tag = text(h, SIGNATURE)?;
    let claims = Claims {
        from: text(h, FROM)?.to_owned(),
        incarnation: number(h, INCARNATION)?,
        to_incarnation: number(h, TO_INCARNATION)?,
        seq: number(h, SEQ)?,
        timestamp: number(h, TIMESTAMP)?,
        length: number(h, "content-length").map_err(|_| "missing or malformed content-length")?,
        body_sha256: text(h, BODY_SHA256)?.to_owned(),
    };
    let age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let ahead = u64::try_from(max_ahead.as_millis()).unwrap_or(u64::MAX);
    if claims.timestamp < now.saturating_sub(age) {
        return Err("stale timestamp");
    }
    if claims.timestamp > now.saturating_add(ahead) {
        return Err("timestamp in the future");
    }
    let tag = unhex(tag).ok_or("malformed signature")?;
    mac(secret, &canonical(&claims, to))
        .verify_slice(&tag)
        .map_err(|_| "wrong signature")?;
    if claims.seq == 0 || claims.incarnation == 0 {
        return Err("zero incarnation or sequence");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::{HeaderName, HeaderValue};

    fn map(headers: &[(&'static str, String)], length: u64) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in headers {
            m.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("")),
            );
        }
        m.insert("content-length", HeaderValue::from(length));
        m
    }

    #[test]
    fn signatures_cover_every_claim_and_the_receiver() {
        let secret = b"0123456789abcdef";
        let (age, ahead) = (Duration::from_secs(5), Duration::from_secs(1));
        let now = now_ms();
        let c = Claims {
            from: "alpha".into(),
            incarnation: 7,
            to_incarnation: 9,
            seq: 3,
            timestamp: now,
            length: 4,
            body_sha256: digest(b"body"),
        };
        let h = headers(secret, &c, "beta");
        assert_eq!(
            verify(secret, &map(&h, 4), "beta", now, age, ahead),
            Ok(c.clone())
        );
        assert_eq!(
            verify(secret, &map(&h, 4), "gamma", now, age, ahead),
            Err("wrong signature"),
            "signed for beta"
        );
        assert_eq!(
            verify(secret, &map(&h, 5), "beta", now, age, ahead),
            Err("wrong signature"),
            "the length is signed"
        );
        assert_eq!(
            verify(b"another secret!!", &map(&h, 4), "beta", now, age, ahead),
            Err("wrong signature")
        );
        for name in [FROM, INCARNATION, TO_INCARNATION, SEQ, TIMESTAMP, BODY_SHA256] {
            let mut forged = h.clone();
            let Some(i) = forged.iter().position(|(k, _)| *k == name) else {
                panic!("{name} is sent");
            };
            forged[i].1 = match name {
                TIMESTAMP => (now - 1).to_string(),
                FROM => "gamma".into(),
                BODY_SHA256 => digest(b"other"),
                _ => "12345".into(),
            };
            assert_eq!(
                verify(secret, &map(&forged, 4), "beta", now, age, ahead),
                Err("wrong signature"),
                "{name} is signed"
            );
        }
        assert_eq!(
            verify(secret, &map(&h, 4), "beta", now + 5_001, age, ahead),
            Err("stale timestamp")
        );
        assert_eq!(
            verify(secret, &map(&h, 4), "beta", now - 1_001, age, ahead),
            Err("timestamp in the future")
        );
        assert!(verify(secret, &map(&h, 4), "beta", now + 5_000, age, ahead).is_ok());
        assert!(verify(secret, &map(&h, 4), "beta", now - 1_000, age, ahead).is_ok());
        assert_eq!(
            verify(secret, &map(&h[1..], 4), "beta", now, age, ahead),
            Err("missing signature header")
        );
        let mut bad = h.clone();
        if let Some(sig) = bad.iter_mut().find(|(k, _)| *k == SIGNATURE) {
            sig.1 = "zz".into();
        }
        assert_eq!(
            verify(secret, &map(&bad, 4), "beta", now, age, ahead),
            Err("malformed signature")
        );
    }
}
