//! The session cookie on the wire: its value (codec and HMAC), the `Set-Cookie` headers that set
//! and clear it, and finding or removing it in a request's `Cookie` headers.
//!
//! Value: `base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`, unpadded,
//! where the payload is 25 bytes — a version byte, the 16-byte random session id and the expiry
//! (unix seconds, big endian). The value carries no token and no identity: the session id is the
//! key into the server-side [`SessionTable`](super::table::SessionTable), which names the token
//! id. The MAC makes a guessed or edited value worthless before the table is even consulted, and
//! the expiry lets a stale cookie be told apart from a forged one without a table lookup.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, header};
use sha2::Sha256;

/// Payload layout version; a new layout gets a new number so old cookies fail to parse.
const VERSION: u8 = 1;
/// Version byte + session id + expiry.
const PAYLOAD_BYTES: usize = 1 + 16 + 8;
/// base64url length of the payload (25 bytes, unpadded).
const PAYLOAD_CHARS: usize = 34;
/// base64url length of an HMAC-SHA256 tag (32 bytes, unpadded).
const TAG_CHARS: usize = 43;

/// A session's random identifier: the key into the session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh id from rand's OS-seeded CSPRNG (128 bits: never guessed, never reused).
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }
}

/// What a cookie value claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The session.
    pub id: SessionId,
    /// When the session ends, unix seconds.
    pub expires: i64,
}

/// A cookie value split into its parts, its MAC not checked yet.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// What the payload claims (trust it only after [`Parsed::verify`]).
    pub claims: Claims,
    signed: &'a str,
    tag: [u8; 32],
}

impl Parsed<'_> {
    /// Whether the MAC matches under `key` (constant-time comparison).
    pub(crate) fn verify(&self, key: &[u8]) -> bool {
        mac(key, self.signed).verify_slice(&self.tag).is_ok()
    }
}

fn mac(key: &[u8], signed: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(signed.as_bytes());
    mac
}

/// The cookie value for `claims`, signed with `key`.
pub fn encode(claims: &Claims, key: &[u8]) -> String {
    let mut payload = [0u8; PAYLOAD_BYTES];
    payload[0] = VERSION;
    payload[1..17].copy_from_slice(&claims.id.0);
    payload[17..].copy_from_slice(&claims.expires.to_be_bytes());
    let signed = URL_SAFE_NO_PAD.encode(payload);
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &signed).finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// Splits a cookie value; `None` when it is not one of ours (wrong shape, length, alphabet or
/// version). Lengths are checked before decoding, so a huge value costs nothing.
pub fn parse(value: &str) -> Option<Parsed<'_>> {
    let (signed, tag) = value.split_once('.')?;
    if signed.len() != PAYLOAD_CHARS || tag.len() != TAG_CHARS {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(signed).ok()?;
    let tag: [u8; 32] = URL_SAFE_NO_PAD.decode(tag).ok()?.try_into().ok()?;
    let payload: [u8; PAYLOAD_BYTES] = payload.try_into().ok()?;
    if payload[0] != VERSION {
        return None;
    }
    let id = SessionId(payload[1..17].try_into().ok()?);
    let expires = i64::from_be_bytes(payload[17..].try_into().ok()?);
    Some(Parsed {
        claims: Claims { id, expires },
        signed,
        tag,
    })
}

/// `Set-Cookie` for a new session: `HttpOnly; Secure; SameSite=Strict; Path=/` and `Max-Age`.
/// No `Domain`, so the cookie stays with this host (and a `__Host-` name is allowed).
pub(crate) fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age_secs}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .ok()
}

/// `Set-Cookie` that makes the browser drop the cookie (`Max-Age=0`, same attributes).
pub(crate) fn clear_cookie(name: &str) -> Option<HeaderValue> {
    set_cookie(name, "", 0)
}

/// The first value of cookie `name` in the request's `Cookie` headers (HTTP/2 may split them
/// into several).
pub(crate) fn find(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|value| {
            pairs(value.as_bytes()).find_map(|(n, v)| (n == name.as_bytes()).then_some(v))
        })
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Like [`find`], and removes every pair named `name` from the `Cookie` headers (a header left
/// empty goes), so neither the external auth service nor the upstream ever sees the session
/// cookie. Other cookies are kept, in order. Allocates only when the cookie is present.
pub(crate) fn take(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let found = find(headers, name)?;
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    headers.remove(header::COOKIE);
    for value in values {
        let kept: Vec<&[u8]> = raw_pairs(value.as_bytes())
            .filter(|raw| pair_name(raw) != name.as_bytes())
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(rebuilt) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.append(header::COOKIE, rebuilt);
        }
    }
    Some(found)
}

/// The `name=value` items of a `Cookie` header, trimmed, empty ones skipped.
fn raw_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// The name of a `name=value` item (the whole item when it has no `=`).
fn pair_name(raw: &[u8]) -> &[u8] {
    raw.iter()
        .position(|b| *b == b'=')
        .map_or(raw, |at| raw[..at].trim_ascii())
}

/// `(name, value)` of each item; the value's surrounding spaces and quotes are removed.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw_pairs(value).map(|raw| {
        let value = raw
            .iter()
            .position(|b| *b == b'=')
            .map_or(&raw[raw.len()..], |at| raw[at + 1..].trim_ascii());
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        (pair_name(raw), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> Claims {
        Claims {
            id: SessionId([7; 16]),
            expires: 1_900_000_000,
        }
    }

    #[test]
    fn a_value_round_trips_and_verifies_only_under_its_key() {
        let value = encode(&claims(), KEY);
        assert_eq!(value.len(), PAYLOAD_CHARS + 1 + TAG_CHARS);
        let parsed = parse(&value).expect("parses");
        assert_eq!(parsed.claims, claims());
        assert!(parsed.verify(KEY));
        assert!(!parsed.verify(b"another key, another gateway....."));
    }

    #[test]
    fn every_single_character_edit_is_detected() {
        let value = encode(&claims(), KEY);
        for at in 0..value.len() {
            let mut edited = value.clone().into_bytes();
            edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(edited).unwrap();
            if edited == value {
                continue;
            }
            let verified = parse(&edited).is_some_and(|p| p.verify(KEY));
            assert!(!verified, "edit at {at} accepted: {edited}");
        }
    }

    #[test]
    fn foreign_shapes_do_not_parse() {
        let value = encode(&claims(), KEY);
        let (signed, tag) = value.split_once('.').unwrap();
        for bad in [
            String::new(),
            "x".into(),
            signed.to_owned(),
            format!("{signed}.{tag}x"),
            format!("{signed}x.{tag}"),
            format!("{signed}.{}", "!".repeat(TAG_CHARS)),
            "a".repeat(100_000),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
        // Another payload version with a valid MAC is still refused.
        let mut payload = URL_SAFE_NO_PAD.decode(signed).unwrap();
        payload[0] = 2;
        let signed = URL_SAFE_NO_PAD.encode(payload);
        let tag = URL_SAFE_NO_PAD.encode(mac(KEY, &signed).finalize().into_bytes());
        assert!(parse(&format!("{signed}.{tag}")).is_none());
    }

    #[test]
    fn the_value_holds_no_identity() {
        let value = encode(&claims(), KEY);
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }

    #[test]
    fn set_cookie_has_the_exact_attributes() {
        assert_eq!(
            set_cookie("gatehouse_session", "v", 3600).unwrap(),
            "gatehouse_session=v; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            clear_cookie("s").unwrap(),
            "s=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn the_cookie_is_found_and_taken_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; s=\"first\"; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("s=second"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3;ss=4"));
        assert_eq!(find(&headers, "s").as_deref(), Some("first"));
        assert_eq!(take(&mut headers, "s").as_deref(), Some("first"));
        let left: Vec<&str> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3; ss=4"]);
        assert_eq!(take(&mut headers, "s"), None);
        assert_eq!(find(&headers, "missing"), None);
    }
}
