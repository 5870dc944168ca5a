//! Arbitrary strings → [`JwtVerifier::verify`] with a fixed key set (an HS256 secret and one
//! RS256 key in a JWKS file; `RS256`, `HS256` and `ES256` allowed), so the header pre-parse
//! (`parse_header`: base64url, JSON, `alg`, `kid`, `crit`), the JWS shape check, the key choice
//! and, for HS256, the claim checks all see hostile input.
//!
//! Input layout: byte 0 picks the mode.
//! * even: the rest is the token, as sent.
//! * odd: the rest is `header JSON` `\0` `claims JSON`; the harness encodes both and signs them
//!   with the HS256 secret, so fuzzed claims get past the signature to `iss`/`aud`/`exp`/`nbf`,
//!   `sub` and `roles` (nested claim paths included).
//!
//! Invariants: no panic; an accepted token yields a JWT identity with a non-empty subject free of
//! control characters, roles free of `,` and control characters, and an `exp` not past the
//! leeway; `verify` (cached) and `verify_uncached` agree, also on the cache hit.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gatehouse::auth::AuthMethod;
use gatehouse::auth::jwt::{JwtError, JwtVerifier};
use gatehouse::config::JwtSettings;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const RSA_KEY: &str = include_str!("../../src/auth/testdata/jwt-rsa-2048-TEST-ONLY.pem");
const HMAC_SECRET: &[u8] = b"fuzz-only-hmac-secret-0123456789abcdef";
/// 2030-01-01T00:00:00Z.
const NOW: i64 = 1_893_456_000;
const LEEWAY: Duration = Duration::from_secs(60);
const REASONS: [&str; 8] = [
    "signature",
    "alg",
    "kid",
    "iss",
    "aud",
    "nbf",
    "malformed",
    "expired",
];

/// Key files in a per-process temporary folder, written once.
fn key_files() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-jwt-{}", std::process::id()));
    let jwks = dir.join("jwks.json");
    let secret = dir.join("hmac.secret");
    let written = (|| -> Result<(), String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).map_err(|e| e.to_string())?;
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&key, Algorithm::RS256).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        jwk["kid"] = serde_json::json!("rsa-1");
        let set = serde_json::json!({ "keys": [jwk] }).to_string();
        std::fs::write(&jwks, set).map_err(|e| e.to_string())?;
        std::fs::write(&secret, HMAC_SECRET).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        panic!("harness set-up failed: {e}");
    }
    (jwks, secret)
}

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    let (jwks, secret) = key_files();
    let settings = JwtSettings {
        issuer: Some("https://issuer.example".to_owned()),
        audiences: vec!["gatehouse".to_owned()],
        algorithms: vec!["RS256".to_owned(), "HS256".to_owned(), "ES256".to_owned()],
        jwks_file: Some(jwks),
        jwks_url: None,
        jwks_refresh: Duration::from_secs(600),
        hmac_secret_file: Some(secret),
        roles_claim: "realm_access.roles".to_owned(),
        subject_claim: "sub".to_owned(),
        leeway: LEEWAY,
    };
    match JwtVerifier::build(&settings, None) {
        Ok(verifier) => verifier,
        Err(e) => panic!("harness verifier: {e}"),
    }
});

/// Polls a future that never waits: without `jwks_url` verification does no IO.
fn now_or_never<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("verification waited without a jwks_url"),
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// `header.claims.signature`, signed with the HS256 secret whatever the header says.
fn signed(header: &[u8], claims: &[u8]) -> Option<String> {
    let message = format!("{}.{}", base64url(header), base64url(claims));
    let key = EncodingKey::from_secret(HMAC_SECRET);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).ok()?;
    Some(format!("{message}.{signature}"))
}

fn check(token: &str) {
    let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let uncached = now_or_never(VERIFIER.verify_uncached(token, now));
    let first = now_or_never(VERIFIER.verify(token, now));
    let second = now_or_never(VERIFIER.verify(token, now));
    assert_eq!(uncached, first, "verify and verify_uncached disagree");
    assert_eq!(first, second, "the cache changed the answer");
    match first {
        Ok(identity) => {
            assert_eq!(identity.method, AuthMethod::Jwt);
            assert!(!identity.subject.is_empty());
            assert!(!identity.subject.chars().any(char::is_control));
            for role in identity.roles.iter() {
                assert!(!role.is_empty() && !role.contains(','), "role {role:?}");
                assert!(!role.chars().any(char::is_control), "role {role:?}");
            }
            let exp = identity.expires.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            assert!(exp + LEEWAY >= now, "accepted a token expired at {exp}");
        }
        Err(error @ (JwtError::Invalid(_) | JwtError::Expired(_))) => {
            assert!(REASONS.contains(&error.reason()), "{error:?}");
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            check(token);
        }
        return;
    }
    let (header, claims) = match rest.iter().position(|b| *b == 0) {
        Some(zero) => (&rest[..zero], &rest[zero + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
    };
    if let Some(token) = signed(header, claims) {
        check(&token);
    }
});
