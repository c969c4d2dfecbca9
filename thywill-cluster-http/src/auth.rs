//! Request signatures: `<unix ms>.<hex HMAC-SHA256(secret, "<unix ms>." + body)>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mac(secret: &[u8], ts: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac takes any key"));
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
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

/// The header value for `body`, signed now.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    sign_at(secret, body, now_ms())
}

fn sign_at(secret: &[u8], body: &[u8], ts: u64) -> String {
    let ts = ts.to_string();
    let tag = mac(secret, &ts, body).finalize().into_bytes();
    format!("{ts}.{}", hex(&tag))
}

/// Checks a header value; the error says why it was refused.
pub(crate) fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    skew: Duration,
) -> Result<(), &'static str> {
    let header = header.ok_or("missing signature")?;
    let (ts, tag) = header.split_once('.').ok_or("malformed signature")?;
    let when: u64 = ts.parse().map_err(|_| "malformed timestamp")?;
    if now_ms().abs_diff(when) > skew.as_millis() as u64 {
        return Err("stale signature");
    }
    let tag = unhex(tag).ok_or("malformed signature")?;
    mac(secret, ts, body)
        .verify_slice(&tag)
        .map_err(|_| "wrong signature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let secret = b"0123456789abcdef";
        let skew = Duration::from_secs(30);
        let h = sign(secret, b"body");
        assert_eq!(verify(secret, Some(&h), b"body", skew), Ok(()));
        assert_eq!(verify(secret, Some(&h), b"other", skew), Err("wrong signature"));
        assert_eq!(
            verify(b"another secret!!", Some(&h), b"body", skew),
            Err("wrong signature")
        );
        assert_eq!(verify(secret, None, b"body", skew), Err("missing signature"));
        let old = sign_at(secret, b"body", now_ms() - 60_000);
        assert_eq!(verify(secret, Some(&old), b"body", skew), Err("stale signature"));
        assert_eq!(
            verify(secret, Some("12.zz"), b"body", skew),
            Err("stale signature")
        );
        let fresh_bad = format!("{}.zz", now_ms());
        assert_eq!(
            verify(secret, Some(&fresh_bad), b"body", skew),
            Err("malformed signature")
        );
    }
}
