use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use time::macros::datetime;
use tokio::time::timeout;

use super::*;

/// A fixed RSA key for tests only (see `testdata/README.md`).
const RSA_TEST_KEY: &str = include_str!("../testdata/jwt-rsa-2048-TEST-ONLY.pem");
const RSA_TEST_PUBLIC_KEY: &str = include_str!("../testdata/jwt-rsa-2048-TEST-ONLY.pub.pem");
const NOW: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);
const ISSUER: &str = "https://issuer.test/";
const WAIT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn rsa(kid: &str) -> Self {
        let encoding = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap())
                .unwrap();
        jwk["kid"] = json!(kid);
        Self {
            alg: Algorithm::RS256,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        let encoding = EncodingKey::from_ec_der(pair.serialized_der());
        Self {
            alg: Algorithm::ES256,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
            "x": b64(pair.public_key_raw())});
        let encoding = EncodingKey::from_ed_der(pair.serialized_der());
        Self {
            alg: Algorithm::EdDSA,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": "gatehouse",
        "sub": "alice",
        "roles": ["viewer", "operator"],
        "iat": NOW.unix_timestamp(),
        "exp": NOW.unix_timestamp() + 3600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn settings() -> JwtSettings {
    JwtSettings {
        issuer: Some(ISSUER.to_owned()),
        audiences: vec!["gatehouse".to_owned()],
        algorithms: vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
        jwks_file: None,
        jwks_url: None,
        jwks_refresh: Duration::from_secs(600),
        hmac_secret_file: None,
        roles_claim: "roles".to_owned(),
        subject_claim: "sub".to_owned(),
        leeway: Duration::from_secs(60),
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A verifier over a JWKS file holding `keys`; the directory lives as long as the verifier
/// is used.
fn file_verifier(keys: &[&TestKey]) -> (JwtVerifier, tempfile::TempDir) {
    file_verifier_with(keys, settings())
}

fn file_verifier_with(
    keys: &[&TestKey],
    mut settings: JwtSettings,
) -> (JwtVerifier, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    settings.jwks_file = Some(path);
    (JwtVerifier::build(&settings, None).unwrap(), dir)
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_from_a_jwks_file() {
    let keys = [
        TestKey::rsa("rsa"),
        TestKey::es256("ec"),
        TestKey::ed25519("ed"),
    ];
    let (verifier, _dir) = file_verifier(&[&keys[0], &keys[1], &keys[2]]);
    for key in &keys {
        let identity = verifier.verify(&key.sign(&claims()), NOW).await.unwrap();
        assert_eq!(&*identity.subject, "alice");
        assert_eq!(
            &*identity.roles,
            ["viewer".to_owned(), "operator".to_owned()]
        );
        assert_eq!(identity.method, AuthMethod::Jwt);
        assert_eq!(identity.expires, Some(NOW + time::Duration::hours(1)));
    }
    assert_eq!(verifier.files().len(), 1);
}

#[tokio::test]
async fn a_token_without_kid_tries_the_keys_of_its_type() {
    let (rsa, ec) = (TestKey::rsa("rsa"), TestKey::es256("ec"));
    let other_ec = TestKey::es256("ec2");
    let (verifier, _dir) = file_verifier(&[&rsa, &other_ec, &ec]);
    assert!(
        verifier
            .verify(&ec.sign_without_kid(&claims()), NOW)
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&rsa.sign_without_kid(&claims()), NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_refused() {
    let key = TestKey::es256("ec");
    let (verifier, _dir) = file_verifier(&[&key]);
    let wrong = key.sign(&with(claims(), "iss", json!("https://evil.test/")));
    assert_eq!(verifier.verify(&wrong, NOW).await, Err(JwtError::Issuer));
    let missing = key.sign(&without(claims(), "iss"));
    assert_eq!(verifier.verify(&missing, NOW).await, Err(JwtError::Issuer));
}

#[tokio::test]
async fn audience_must_intersect() {
    let key = TestKey::es256("ec");
    let (verifier, _dir) = file_verifier(&[&key]);
    let wrong = key.sign(&with(claims(), "aud", json!("other")));
    assert_eq!(verifier.verify(&wrong, NOW).await, Err(JwtError::Audience));
    let missing = key.sign(&without(claims(), "aud"));
    assert_eq!(
        verifier.verify(&missing, NOW).await,
        Err(JwtError::Audience)
    );
    let list = key.sign(&with(claims(), "aud", json!(["other", "gatehouse"])));
    assert!(verifier.verify(&list, NOW).await.is_ok());
}

#[tokio::test]
async fn audience_is_not_checked_when_none_is_configured() {
    let key = TestKey::es256("ec");
    let mut settings = settings();
    settings.audiences.clear();
    let (verifier, _dir) = file_verifier_with(&[&key], settings);
    let other = key.sign(&with(claims(), "aud", json!("other")));
    assert!(verifier.verify(&other, NOW).await.is_ok());
}

#[tokio::test]
async fn expiry_honours_the_leeway_and_names_the_time() {
    let key = TestKey::ed25519("ed");
    let (verifier, _dir) = file_verifier(&[&key]);
    let exp = NOW - time::Duration::seconds(61);
    let beyond = key.sign(&with(claims(), "exp", json!(exp.unix_timestamp())));
    let error = verifier.verify(&beyond, NOW).await.unwrap_err();
    assert_eq!(error, JwtError::Expired(exp));
    assert_eq!(error.to_string(), "token expired at 2029-12-31T23:58:59Z");
    let within = key.sign(&with(
        claims(),
        "exp",
        json!((NOW - time::Duration::seconds(59)).unix_timestamp()),
    ));
    assert!(verifier.verify(&within, NOW).await.is_ok());
}

#[tokio::test]
async fn exp_is_required_and_numeric() {
    let key = TestKey::ed25519("ed");
    let (verifier, _dir) = file_verifier(&[&key]);
    let missing = key.sign(&without(claims(), "exp"));
    assert_eq!(
        verifier.verify(&missing, NOW).await,
        Err(JwtError::Malformed)
    );
    let text = key.sign(&with(claims(), "exp", json!("tomorrow")));
    assert_eq!(verifier.verify(&text, NOW).await, Err(JwtError::Malformed));
    let float = key.sign(&with(
        claims(),
        "exp",
        json!(NOW.unix_timestamp() as f64 + 10.5),
    ));
    assert!(verifier.verify(&float, NOW).await.is_ok());
}

#[tokio::test]
async fn nbf_in_the_future_is_refused_beyond_the_leeway() {
    let key = TestKey::es256("ec");
    let (verifier, _dir) = file_verifier(&[&key]);
    let future = key.sign(&with(claims(), "nbf", json!(NOW.unix_timestamp() + 120)));
    assert_eq!(
        verifier.verify(&future, NOW).await,
        Err(JwtError::NotYetValid)
    );
    let skewed = key.sign(&with(claims(), "nbf", json!(NOW.unix_timestamp() + 30)));
    assert!(verifier.verify(&skewed, NOW).await.is_ok());
}

fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn alg_none_is_refused() {
    let key = TestKey::rsa("rsa");
    let (verifier, _dir) = file_verifier(&[&key]);
    for signature in ["", "c2lnbmF0dXJl"] {
        for alg in ["none", "None", "NONE"] {
            let token = unsigned(&json!({"alg": alg, "kid": "rsa"}), &claims(), signature);
            assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Algorithm));
        }
    }
}

#[tokio::test]
async fn an_algorithm_off_the_allow_list_is_refused() {
    let key = TestKey::rsa("rsa");
    let (verifier, _dir) = file_verifier(&[&key]);
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa".to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &key.encoding).unwrap();
    assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Algorithm));
}

#[tokio::test]
async fn a_key_is_only_used_with_its_own_algorithms() {
    let ec = TestKey::es256("ec");
    let mut settings = settings();
    settings.algorithms.push("ES384".to_owned());
    let (verifier, _dir) = file_verifier_with(&[&ec], settings);
    let token = unsigned(&json!({"alg": "ES384", "kid": "ec"}), &claims(), "c2ln");
    assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Algorithm));
}

fn hs256_signed_with_rsa_public_key() -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".to_owned());
    let secret = EncodingKey::from_secret(RSA_TEST_PUBLIC_KEY.as_bytes());
    jsonwebtoken::encode(&header, &claims(), &secret).unwrap()
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let rsa = TestKey::rsa("rsa");
    let token = hs256_signed_with_rsa_public_key();
    let (verifier, _dir) = file_verifier(&[&rsa]);
    assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Algorithm));

    // Even with HS256 allowed, only the configured HMAC secret verifies HS256.
    let mut settings = settings();
    settings.algorithms.push("HS256".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("jwt.key");
    std::fs::write(&secret_path, "an-hmac-secret-of-at-least-32-bytes!!\n").unwrap();
    settings.hmac_secret_file = Some(secret_path.clone());
    let (verifier, _dir) = file_verifier_with(&[&rsa], settings);
    assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Signature));

    // …which does work for a token really signed with it (trimmed of its newline).
    let secret = EncodingKey::from_secret(b"an-hmac-secret-of-at-least-32-bytes!!");
    let good = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &secret).unwrap();
    assert!(verifier.verify(&good, NOW).await.is_ok());
    assert!(verifier.files().contains(&secret_path));
}

#[tokio::test]
async fn unknown_kid_and_bad_signature_are_refused() {
    let (known, stranger) = (TestKey::es256("ec"), TestKey::es256("stranger"));
    let (verifier, _dir) = file_verifier(&[&known]);
    assert_eq!(
        verifier.verify(&stranger.sign(&claims()), NOW).await,
        Err(JwtError::UnknownKey)
    );
    let impostor = TestKey::es256("ec");
    assert_eq!(
        verifier.verify(&impostor.sign(&claims()), NOW).await,
        Err(JwtError::Signature)
    );
    let mut tampered = known.sign(&claims());
    let payload = b64(with(claims(), "sub", json!("mallory"))
        .to_string()
        .as_bytes());
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(
        verifier.verify(&tampered, NOW).await,
        Err(JwtError::Signature)
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    let key = TestKey::es256("ec");
    let (verifier, _dir) = file_verifier(&[&key]);
    for token in [
        "",
        "abc",
        "a.b.c",
        "eyJhbGciOiJFUzI1NiJ9.%%%.sig",
        "e30.e30.e30",
    ] {
        assert_eq!(
            verifier.verify(token, NOW).await,
            Err(JwtError::Malformed),
            "{token}"
        );
    }
    let crit = unsigned(
        &json!({"alg": "ES256", "kid": "ec", "crit": ["exp"]}),
        &claims(),
        "c2ln",
    );
    assert_eq!(verifier.verify(&crit, NOW).await, Err(JwtError::Malformed));
}

#[tokio::test]
async fn roles_and_subject_claims() {
    let key = TestKey::es256("ec");
    let mut settings = settings();
    settings.roles_claim = "scope".to_owned();
    settings.subject_claim = "preferred_username".to_owned();
    let (verifier, _dir) = file_verifier_with(&[&key], settings);
    let token = key.sign(&with(
        with(claims(), "scope", json!("viewer  operator")),
        "preferred_username",
        json!("bob"),
    ));
    let identity = verifier.verify(&token, NOW).await.unwrap();
    assert_eq!(&*identity.subject, "bob");
    assert_eq!(
        &*identity.roles,
        ["viewer".to_owned(), "operator".to_owned()]
    );
    let no_subject = key.sign(&claims());
    assert_eq!(
        verifier.verify(&no_subject, NOW).await,
        Err(JwtError::Malformed)
    );
    let no_roles = key.sign(&with(claims(), "preferred_username", json!("bob")));
    assert!(
        verifier
            .verify(&no_roles, NOW)
            .await
            .unwrap()
            .roles
            .is_empty()
    );
}

#[tokio::test]
async fn nested_roles_and_bad_roles() {
    let key = TestKey::es256("ec");
    let mut settings = settings();
    settings.roles_claim = "realm_access.roles".to_owned();
    let (verifier, _dir) = file_verifier_with(&[&key], settings);
    let nested = key.sign(&with(claims(), "realm_access", json!({"roles": ["admin"]})));
    assert_eq!(
        &*verifier.verify(&nested, NOW).await.unwrap().roles,
        ["admin".to_owned()]
    );
    for bad in [
        json!({"roles": ["viewer,admin"]}),
        json!({"roles": [1]}),
        json!({"roles": 5}),
    ] {
        let token = key.sign(&with(claims(), "realm_access", bad));
        assert_eq!(verifier.verify(&token, NOW).await, Err(JwtError::Malformed));
    }
    let control = key.sign(&with(
        claims(),
        "sub",
        json!("alice\r\nx-auth-roles: admin"),
    ));
    assert_eq!(
        verifier.verify(&control, NOW).await,
        Err(JwtError::Malformed)
    );
}

#[tokio::test]
async fn a_cache_hit_returns_the_same_identity_without_verifying_again() {
    let key = TestKey::ed25519("ed");
    let (mut verifier, _dir) = file_verifier(&[&key]);
    let token = key.sign(&claims());
    let first = verifier.verify(&token, NOW).await.unwrap();
    // Without keys, only the cache can still accept the token.
    verifier.file_keys = KeySet::default();
    assert_eq!(verifier.verify(&token, NOW).await.unwrap(), first);
    assert_eq!(
        verifier.verify_uncached(&token, NOW).await,
        Err(JwtError::UnknownKey)
    );
    // The cache keeps the token's lifetime.
    let late = NOW + time::Duration::hours(2);
    assert_eq!(
        verifier.verify(&token, late).await,
        Err(JwtError::Expired(NOW + time::Duration::hours(1)))
    );
    // Failures are not cached.
    assert_eq!(verifier.cache.read().unwrap().len(), 1);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let key = TestKey::ed25519("ed");
    let (mut verifier, _dir) = file_verifier(&[&key]);
    verifier.cache_limit = 3;
    for i in 0..3 {
        let exp = NOW.unix_timestamp() + 10 + i;
        verifier
            .verify(&key.sign(&with(claims(), "exp", json!(exp))), NOW)
            .await
            .unwrap();
    }
    assert_eq!(verifier.cache.read().unwrap().len(), 3);
    // Full and nothing expired: cleared, then the new entry goes in.
    verifier
        .verify(&key.sign(&with(claims(), "jti", json!("x"))), NOW)
        .await
        .unwrap();
    assert_eq!(verifier.cache.read().unwrap().len(), 1);
    for i in 0..2 {
        verifier
            .verify(&key.sign(&with(claims(), "jti", json!(i))), NOW)
            .await
            .unwrap();
    }
    // Full with entries expired by then: only those are dropped.
    let later = NOW + time::Duration::minutes(30);
    let fresh = key.sign(&with(claims(), "exp", json!(NOW.unix_timestamp() + 7200)));
    verifier.verify(&fresh, later).await.unwrap();
    assert!(verifier.cache.read().unwrap().len() <= 3);
}

#[test]
fn looks_like_jwt_checks_the_shape_only() {
    let key = TestKey::es256("ec");
    assert!(looks_like_jwt(&key.sign(&claims())));
    let header = b64(br#"{"alg":"HS256"}"#);
    assert!(looks_like_jwt(&format!("{header}.e30.c2ln")));
    for s in [
        "gth_abc",
        "plain-random-keptn-token",
        "a.b",
        &format!("{header}.e30."),
        &format!("{header}..c2ln"),
        &format!("{header}.e30.c2ln.x"),
        &format!("{header}.e30.c2l+"),
        &format!("{}.e30.c2ln", b64(br#"{"typ":"JWT"}"#)),
        &format!("{}.e30.c2ln", b64(br#"["alg"]"#)),
        "bm90IGpzb24.e30.c2ln",
    ] {
        assert!(!looks_like_jwt(s), "{s}");
    }
}

/// JOSE base64url (RFC 7515 §2) is unpadded and URL-safe; the engine refuses padding, the
/// standard alphabet, impossible lengths and non-zero trailing bits.
#[test]
fn base64url_is_strict() {
    assert_eq!(URL_SAFE_NO_PAD.decode("aGVsbG8").unwrap(), b"hello");
    for bad in ["aGVsbG8=", "a", "a+b/", "aGVsbG9"] {
        assert!(URL_SAFE_NO_PAD.decode(bad).is_err(), "{bad}");
    }
    assert!(looks_like_jwt(&format!(
        "{}.e30.c2ln",
        b64(br#"{"alg":"HS256"}"#)
    )));
    assert!(!looks_like_jwt(&format!(
        "{}=.e30.c2ln",
        b64(br#"{"alg":"HS256"}"#)
    )));
}

#[test]
fn build_refuses_sources_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut hs = settings();
    hs.algorithms = vec!["HS256".to_owned()];
    assert!(
        JwtVerifier::build(&hs, None)
            .unwrap_err()
            .to_string()
            .contains("needs hmac_secret_file")
    );

    let short = dir.path().join("short.key");
    std::fs::write(&short, "too-short\n").unwrap();
    hs.hmac_secret_file = Some(short);
    let error = JwtVerifier::build(&hs, None).unwrap_err().to_string();
    assert!(error.contains("9 bytes"), "{error}");
    assert!(!error.contains("too-short"), "{error}");

    let mut only_hmac_file = settings();
    only_hmac_file.hmac_secret_file = Some(dir.path().join("whatever"));
    assert!(
        JwtVerifier::build(&only_hmac_file, None)
            .unwrap_err()
            .to_string()
            .contains("HS256")
    );

    let mut oct_only = settings();
    let path = dir.path().join("oct.json");
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#,
    )
    .unwrap();
    oct_only.jwks_file = Some(path);
    assert!(
        JwtVerifier::build(&oct_only, None)
            .unwrap_err()
            .to_string()
            .contains("no usable key")
    );

    let mut bad_url = settings();
    bad_url.jwks_url = Some("ftp://issuer.test/jwks".to_owned());
    assert!(
        JwtVerifier::build(&bad_url, None)
            .unwrap_err()
            .to_string()
            .contains("jwks_url")
    );
}

#[test]
fn unusable_jwks_entries_are_skipped() {
    let ec = TestKey::es256("ec");
    let mut short_x = ec.jwk.clone();
    short_x["x"] = json!("AAAA");
    short_x["kid"] = json!("short");
    let mut off_curve = ec.jwk.clone();
    off_curve["y"] = json!(b64(&[1u8; 32]));
    let mut enc = TestKey::rsa("enc").jwk;
    enc["use"] = json!("enc");
    let mut wrong_alg = ec.jwk.clone();
    wrong_alg["alg"] = json!("RS256");
    let json = json!({"keys": [short_x, off_curve, enc, wrong_alg,
        {"kty": "OKP", "crv": "X25519", "x": b64(&[9u8; 32])},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "weird"}, ec.jwk.clone()]});
    let set = KeySet::parse(json.to_string().as_bytes(), "test").unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.keys[0].kid.as_deref(), Some("ec"));
    assert!(KeySet::parse(b"[]", "test").is_err());
}

#[test]
fn debug_shows_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("jwt.key");
    std::fs::write(&secret_path, "SUPER-SECRET-hmac-value-0123456789abcdef").unwrap();
    let mut settings = settings();
    settings.algorithms.push("HS256".to_owned());
    settings.hmac_secret_file = Some(secret_path);
    let rsa = TestKey::rsa("rsa");
    let (verifier, _dir) = file_verifier_with(&[&rsa], settings);
    let debug = format!("{verifier:?}");
    assert!(!debug.contains("SUPER-SECRET"), "{debug}");
    assert!(!debug.contains(rsa.jwk["n"].as_str().unwrap()), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

/// A local JWKS endpoint whose answer can be switched; counts requests.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    hit_signal: tokio::sync::watch::Receiver<usize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200u16, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (signal, hit_signal) = tokio::sync::watch::channel(0usize);
        let signal = Arc::new(signal);
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (a, h, signal) = (a.clone(), h.clone(), signal.clone());
                let service = service_fn(move |_request| {
                    let count = h.fetch_add(1, Ordering::SeqCst) + 1;
                    signal.send_replace(count);
                    let (status, body) = a.lock().unwrap().clone();
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            url,
            answer,
            hits,
            hit_signal,
        }
    }

    fn serve(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn url_settings(url: &str) -> JwtSettings {
    let mut settings = settings();
    settings.jwks_url = Some(url.to_owned());
    settings
}

#[tokio::test]
async fn jwks_url_refetches_an_unknown_kid_once_per_interval() {
    let (a, b, c) = (
        TestKey::rsa("a"),
        TestKey::es256("b"),
        TestKey::ed25519("c"),
    );
    let server = JwksServer::start(jwks(&[&a])).await;
    let verifier = Arc::new(JwtVerifier::build(&url_settings(&server.url), None).unwrap());
    assert_eq!(timeout(WAIT, verifier.refresh_now()).await.unwrap(), Ok(1));
    assert_eq!(server.hits(), 1);
    assert!(verifier.verify(&a.sign(&claims()), NOW).await.is_ok());

    // Key B appears at the issuer; a burst of B tokens shares one refetch.
    server.serve(200, jwks(&[&a, &b]));
    let token_b = b.sign(&claims());
    let burst = (0..8).map(|_| {
        let (verifier, token) = (verifier.clone(), token_b.clone());
        tokio::spawn(async move { verifier.verify_uncached(&token, NOW).await })
    });
    for task in burst.collect::<Vec<_>>() {
        assert!(timeout(WAIT, task).await.unwrap().unwrap().is_ok());
    }
    assert_eq!(server.hits(), 2);

    // Another unknown kid within 30 s: refused without asking the issuer again.
    assert_eq!(
        timeout(WAIT, verifier.verify(&c.sign(&claims()), NOW))
            .await
            .unwrap(),
        Err(JwtError::UnknownKey)
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn last_good_keys_survive_an_issuer_outage_and_a_reload() {
    let a = TestKey::es256("a");
    let server = JwksServer::start(jwks(&[&a])).await;
    let settings = url_settings(&server.url);
    let verifier = JwtVerifier::build(&settings, None).unwrap();
    assert_eq!(timeout(WAIT, verifier.refresh_now()).await.unwrap(), Ok(1));

    server.serve(503, "down".to_owned());
    assert!(
        timeout(WAIT, verifier.refresh_now())
            .await
            .unwrap()
            .is_err()
    );
    server.serve(200, "{not json".to_owned());
    assert!(
        timeout(WAIT, verifier.refresh_now())
            .await
            .unwrap()
            .is_err()
    );
    server.serve(200, r#"{"keys":[]}"#.to_owned());
    assert!(
        timeout(WAIT, verifier.refresh_now())
            .await
            .unwrap()
            .is_err()
    );
    assert!(verifier.verify(&a.sign(&claims()), NOW).await.is_ok());

    // A reload while the issuer is down keeps the keys.
    let reloaded = JwtVerifier::build(&settings, Some(&verifier)).unwrap();
    drop(verifier);
    assert!(reloaded.verify(&a.sign(&claims()), NOW).await.is_ok());
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn the_refresh_task_fetches_and_ends_with_the_verifier() {
    let a = TestKey::es256("a");
    let mut server = JwksServer::start(jwks(&[&a])).await;
    let verifier = Arc::new(JwtVerifier::build(&url_settings(&server.url), None).unwrap());
    let task = verifier.start_refresh().unwrap();
    timeout(WAIT, server.hit_signal.wait_for(|&hits| hits >= 1))
        .await
        .unwrap()
        .unwrap();
    // Wait until the fetched keys are in place (the signal fires as the request arrives).
    let token = a.sign(&claims());
    let remote = verifier.remote.clone().unwrap();
    timeout(WAIT, async {
        while remote.keys().len() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(verifier.verify(&token, NOW).await.is_ok());
    drop(verifier);
    timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(server.hits(), 1);
}
