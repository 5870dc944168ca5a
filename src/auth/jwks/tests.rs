//! `KeySet::parse` and `VerifyKey::from_jwk` as a table (which JWKs become which keys, and why
//! the others are skipped), and the JWKS refresh rules: when the background refresh is due
//! (`FetchTimes::refresh_due_in`) and when an unknown `kid` may trigger a refetch.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

use super::*;

/// The fixed RSA test key (see `testdata/README.md`).
const RSA_TEST_KEY: &str = include_str!("../testdata/jwt-rsa-2048-TEST-ONLY.pem");

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_jwk() -> Value {
    let encoding = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap();
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap()).unwrap();
    // `from_encoding_key` names RS256; a JWK without `alg` is the general case.
    jwk.as_object_mut().unwrap().remove("alg");
    jwk["kid"] = json!("rsa");
    jwk
}

fn ec_jwk(alg: &'static rcgen::SignatureAlgorithm, crv: &str, len: usize) -> Value {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let point = pair.public_key_raw();
    json!({"kty": "EC", "crv": crv, "kid": crv,
        "x": b64(&point[1..=len]), "y": b64(&point[len + 1..=2 * len])})
}

fn ed_jwk() -> Value {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(pair.public_key_raw())})
}

fn with(mut jwk: Value, key: &str, value: Value) -> Value {
    jwk[key] = value;
    jwk
}

/// `from_jwk` on a JWK that deserializes: the key's type and own `alg`, or why it is refused.
fn verdict(jwk: &Value) -> Result<(KeyKind, Option<Algorithm>), &'static str> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("a JWK jsonwebtoken can read");
    VerifyKey::from_jwk(&jwk).map(|key| (key.kind, key.alg))
}

#[test]
fn each_usable_jwk_becomes_a_key_of_its_type() {
    let p256 = ec_jwk(&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32);
    let p384 = ec_jwk(&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48);
    let table: [(&str, Value, KeyKind, Option<Algorithm>); 7] = [
        ("RSA", rsa_jwk(), KeyKind::Rsa, None),
        (
            "RSA for PS256 only",
            with(rsa_jwk(), "alg", json!("PS256")),
            KeyKind::Rsa,
            Some(Algorithm::PS256),
        ),
        (
            "RSA with use sig and key_ops verify",
            with(
                with(rsa_jwk(), "use", json!("sig")),
                "key_ops",
                json!(["verify"]),
            ),
            KeyKind::Rsa,
            None,
        ),
        ("P-256", p256.clone(), KeyKind::P256, None),
        (
            "P-256 naming ES256",
            with(p256, "alg", json!("ES256")),
            KeyKind::P256,
            Some(Algorithm::ES256),
        ),
        ("P-384", p384, KeyKind::P384, None),
        ("Ed25519", ed_jwk(), KeyKind::Ed25519, None),
    ];
    for (name, jwk, kind, alg) in table {
        assert_eq!(verdict(&jwk), Ok((kind, alg)), "{name}");
    }
}

#[test]
fn each_unusable_jwk_is_refused_with_its_reason() {
    let p256 = ec_jwk(&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32);
    // 1024-bit modulus, left-padded with zeros to look like 2048 bits.
    let short_n = b64(&[vec![0u8; 128], vec![0xc5; 128]].concat());
    let table: [(&str, Value, &str); 13] = [
        (
            "encryption use",
            with(rsa_jwk(), "use", json!("enc")),
            "its use is not \"sig\"",
        ),
        (
            "key_ops without verify",
            with(rsa_jwk(), "key_ops", json!(["encrypt"])),
            "its key_ops lack \"verify\"",
        ),
        (
            "an encryption alg",
            with(rsa_jwk(), "alg", json!("RSA-OAEP")),
            "its alg is not a supported signature algorithm",
        ),
        (
            "an alg of another key type",
            with(rsa_jwk(), "alg", json!("ES256")),
            "its alg does not match its key type",
        ),
        (
            "RSA under 2048 bits",
            with(rsa_jwk(), "n", json!(short_n)),
            "RSA key shorter than 2048 bits",
        ),
        (
            "RSA exponent zero",
            with(rsa_jwk(), "e", json!("AAA")),
            "RSA exponent is zero",
        ),
        (
            "not base64url",
            with(rsa_jwk(), "e", json!("AQ+B")),
            "a key parameter is not base64url",
        ),
        (
            "symmetric key",
            json!({"kty": "oct", "k": b64(&[7u8; 32])}),
            "symmetric keys are read from hmac_secret_file only",
        ),
        (
            "P-521",
            with(p256.clone(), "crv", json!("P-521")),
            "unsupported EC curve (P-256 and P-384 are)",
        ),
        (
            "P-256 coordinates of P-384 length",
            with(p256.clone(), "x", json!(b64(&[1u8; 48]))),
            "EC coordinates have the wrong length for the curve",
        ),
        (
            "a point off the curve",
            with(p256, "y", json!(b64(&[1u8; 32]))),
            "the key is not a valid public key",
        ),
        (
            "an OKP key on an EC curve",
            with(ed_jwk(), "crv", json!("P-256")),
            "unsupported OKP curve (Ed25519 is)",
        ),
        (
            "Ed25519 of 31 bytes",
            with(ed_jwk(), "x", json!(b64(&[9u8; 31]))),
            "Ed25519 key is not 32 bytes",
        ),
    ];
    for (name, jwk, reason) in table {
        assert_eq!(verdict(&jwk).map(|_| ()), Err(reason), "{name}");
    }
}

#[test]
fn a_key_verifies_only_its_own_algorithms() {
    let rsa = KeyKind::Rsa;
    for alg in [Algorithm::RS256, Algorithm::PS512] {
        assert!(rsa.accepts(alg), "{alg:?}");
    }
    for alg in [Algorithm::ES256, Algorithm::HS256, Algorithm::EdDSA] {
        assert!(!rsa.accepts(alg), "{alg:?}");
    }
    assert!(KeyKind::P384.accepts(Algorithm::ES384));
    assert!(!KeyKind::P384.accepts(Algorithm::ES256));

    let ps256_only = serde_json::from_value(with(rsa_jwk(), "alg", json!("PS256"))).unwrap();
    let key = VerifyKey::from_jwk(&ps256_only).unwrap();
    assert!(key.accepts(Algorithm::PS256));
    assert!(
        !key.accepts(Algorithm::RS256),
        "a JWK's own alg narrows its type"
    );
}

#[test]
fn parse_keeps_usable_keys_in_order_and_skips_the_rest() {
    let json = json!({"keys": [
        ed_jwk(),
        {"kty": "weird"},
        5,
        with(rsa_jwk(), "use", json!("enc")),
        rsa_jwk(),
        {"kty": "RSA", "kid": "no-params"},
        with(ed_jwk(), "crv", json!("X25519")),
    ]});
    let set = KeySet::parse(json.to_string().as_bytes(), "test").unwrap();
    let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, [Some("ed"), Some("rsa")]);
    assert_eq!(set.len(), 2);
}

#[test]
fn parse_refuses_what_is_not_a_jwk_set() {
    for text in [
        "",
        "[]",
        "{}",
        r#"{"keys": "x"}"#,
        r#"{"kes": []}"#,
        "not json",
    ] {
        let error = KeySet::parse(text.as_bytes(), "test").expect_err(text);
        assert!(error.starts_with("not a JWK Set"), "{text}: {error}");
    }
    let empty = KeySet::parse(br#"{"keys": []}"#, "test").unwrap();
    assert_eq!(
        empty.len(),
        0,
        "an empty set parses; the fetch is what refuses it"
    );
}

/// An instant `ago` in the past.
fn ago(ago: Duration) -> Instant {
    Instant::now().checked_sub(ago).unwrap()
}

/// `due` is `expected`, less the few microseconds the call itself took.
fn assert_due(due: Duration, expected: Duration, what: &str) {
    assert!(
        due <= expected && expected - due < Duration::from_secs(1),
        "{what}: due in {due:?}, expected {expected:?}"
    );
}

#[test]
fn refresh_is_due_at_once_before_the_first_fetch() {
    let never = FetchTimes::default();
    assert_eq!(
        never.refresh_due_in(Duration::from_secs(300)),
        Duration::ZERO
    );
}

#[test]
fn refresh_follows_the_period_after_a_success() {
    let secs = Duration::from_secs;
    let fetched = FetchTimes {
        last_attempt: Some(ago(secs(100))),
        last_success: Some(ago(secs(100))),
        last_on_demand: None,
    };
    assert_due(fetched.refresh_due_in(secs(300)), secs(200), "mid-period");
    assert_eq!(
        fetched.refresh_due_in(secs(60)),
        Duration::ZERO,
        "past the period"
    );
}

#[test]
fn a_failed_fetch_is_retried_after_at_most_the_refetch_interval() {
    let secs = Duration::from_secs;
    let failed_first = FetchTimes {
        last_attempt: Some(ago(secs(10))),
        last_success: None,
        last_on_demand: None,
    };
    assert_due(
        failed_first.refresh_due_in(secs(3600)),
        MIN_REFETCH_INTERVAL - secs(10),
        "no keys yet: retry after the refetch interval, not the period",
    );
    assert_due(
        failed_first.refresh_due_in(secs(15)),
        secs(5),
        "a period shorter than the interval retries sooner",
    );

    let failed_later = FetchTimes {
        last_attempt: Some(ago(secs(10))),
        last_success: Some(ago(secs(4000))),
        last_on_demand: None,
    };
    assert_due(
        failed_later.refresh_due_in(secs(3600)),
        MIN_REFETCH_INTERVAL - secs(10),
        "an overdue refresh that just failed waits for the retry, it does not spin",
    );
}

/// A loopback address that refuses connections: a socket bound to it that never listens.
fn refusing() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/jwks.json", socket.local_addr().unwrap());
    (socket, url)
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let (_reserved, url) = refusing();
    let jwks = RemoteJwks::new(&url).unwrap();

    let seen = jwks.attempts();
    assert!(
        !jwks.refetch_unknown(seen).await,
        "the fetch failed: nothing changed"
    );
    assert_eq!(jwks.attempts(), seen + 1, "one fetch was made");

    let seen = jwks.attempts();
    assert!(!jwks.refetch_unknown(seen).await);
    assert_eq!(
        jwks.attempts(),
        seen,
        "within the interval an unknown kid fetches nothing"
    );

    jwks.flight.lock().await.last_on_demand =
        Some(ago(MIN_REFETCH_INTERVAL + Duration::from_secs(1)));
    assert!(!jwks.refetch_unknown(seen).await);
    assert_eq!(
        jwks.attempts(),
        seen + 1,
        "after the interval it fetches again"
    );
}

#[tokio::test]
async fn a_fetch_since_the_caller_looked_counts_as_the_refetch() {
    let (_reserved, url) = refusing();
    let jwks = RemoteJwks::new(&url).unwrap();
    let stale = jwks.attempts();
    let _ = jwks.refresh_now().await;
    assert!(
        jwks.refetch_unknown(stale).await,
        "keys may have changed since: look again"
    );
    assert_eq!(jwks.attempts(), stale + 1, "without fetching a second time");
}
