//! Criterion benches for authentication.
#![allow(missing_docs)] // criterion_group! generates undocumented functions
//!
//! `jwt_verify/*`: a full JWT verification (header, signature, claims, identity) with RS256,
//! ES256 and EdDSA keys from a JWKS file, bypassing the cache; and `jwt_verify/cache_hit`, the
//! path every further request with the same token takes.
//!
//! `token_lookup/*`: the token store's request-path lookup over 10 000 entries loaded from a
//! file: `hit` (a stored `gth_` token: checksum, SHA-256, index, identity), `miss` (a well-formed
//! `gth_` token nobody stored) and `bad_checksum` (a mistyped `gth_` token, refused before any
//! hashing).
//!
//! Run: `cargo bench --bench auth`.

use criterion::{criterion_group, criterion_main};

/// JWT verification: `jwt_verify/{RS256,ES256,EdDSA}` (no cache) and `jwt_verify/cache_hit`.
mod jwt {
    #![allow(clippy::expect_used)] // bench fixtures: a broken setup must abort the run loudly

    use std::hint::black_box;
    use std::path::Path;
    use std::time::Duration;

    use criterion::Criterion;
    use futures_util::FutureExt;
    use gatehouse::auth::jwt::JwtVerifier;
    use gatehouse::config::JwtSettings;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    /// A fixed RSA key for tests and benches only (see `src/auth/testdata/README.md`).
    const RSA_TEST_KEY: &str = include_str!("../src/auth/testdata/jwt-rsa-2048-TEST-ONLY.pem");

    /// A signing key: kid (also the bench name), algorithm, private key, public JWK.
    type BenchKey = (&'static str, Algorithm, EncodingKey, Value);

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    fn keys() -> Vec<BenchKey> {
        let rsa = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).expect("test RSA key parses");
        let rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("RSA JWK");
        let mut rsa_jwk = serde_json::to_value(rsa_jwk).expect("JWK serialises");
        rsa_jwk["kid"] = json!("RS256");

        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let point = ec.public_key_raw();
        let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});

        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        let ed_jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "EdDSA", "x": b64(ed.public_key_raw())});

        vec![
            ("RS256", Algorithm::RS256, rsa, rsa_jwk),
            (
                "ES256",
                Algorithm::ES256,
                EncodingKey::from_ec_der(ec.serialized_der()),
                ec_jwk,
            ),
            (
                "EdDSA",
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(ed.serialized_der()),
                ed_jwk,
            ),
        ]
    }

    fn settings(jwks_file: &Path) -> JwtSettings {
        JwtSettings {
            issuer: Some("https://issuer.test/".to_owned()),
            audiences: vec!["gatehouse".to_owned()],
            algorithms: vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
            jwks_file: Some(jwks_file.to_path_buf()),
            jwks_url: None,
            jwks_refresh: Duration::from_secs(600),
            hmac_secret_file: None,
            roles_claim: "roles".to_owned(),
            subject_claim: "sub".to_owned(),
            leeway: Duration::from_secs(60),
        }
    }

    /// Runs a verification that needs no I/O (JWKS file keys only) to completion.
    fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
        future
            .now_or_never()
            .expect("verification with file keys never waits")
    }

    fn sign(key: &BenchKey, claims: &Value) -> String {
        let mut header = Header::new(key.1);
        header.kid = Some(key.0.to_owned());
        jsonwebtoken::encode(&header, claims, &key.2).expect("token signs")
    }

    pub(super) fn verify(c: &mut Criterion) {
        let keys = keys();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jwks.json");
        let jwks = json!({"keys": keys.iter().map(|k| k.3.clone()).collect::<Vec<_>>()});
        std::fs::write(&path, jwks.to_string()).expect("write JWKS");
        let verifier = JwtVerifier::build(&settings(&path), None).expect("verifier builds");

        let now = OffsetDateTime::now_utc();
        let claims = json!({
            "iss": "https://issuer.test/", "aud": "gatehouse", "sub": "bench",
            "roles": ["viewer", "operator"], "exp": now.unix_timestamp() + 3600,
        });

        let mut group = c.benchmark_group("jwt_verify");
        for key in &keys {
            let token = sign(key, &claims);
            ready(verifier.verify_uncached(&token, now)).expect("token verifies");
            group.bench_function(key.0, |b| {
                b.iter(|| ready(verifier.verify_uncached(black_box(&token), now)))
            });
        }
        let token = sign(&keys[1], &claims);
        ready(verifier.verify(&token, now)).expect("token verifies");
        group.bench_function("cache_hit", |b| {
            b.iter(|| ready(verifier.verify(black_box(&token), now)))
        });
        group.finish();
    }
}

/// Token store lookup: `token_lookup/{hit,miss,bad_checksum}` over 10 000 stored tokens.
mod tokens {
    #![allow(clippy::expect_used)] // bench fixtures: a broken setup must abort the run loudly

    use std::fmt::Write as _;
    use std::hint::black_box;

    use criterion::Criterion;
    use gatehouse::auth::token_format::{self, Shape};
    use gatehouse::auth::token_store::{self, Lookup};
    use gatehouse::token_cmd;
    use time::OffsetDateTime;

    /// Entries in the benched store.
    const ENTRIES: usize = 10_000;

    pub(super) fn lookup(c: &mut Criterion) {
        let tokens: Vec<String> = (0..ENTRIES)
            .map(|_| token_format::generate().expose().clone())
            .collect();
        let mut text = String::with_capacity(ENTRIES * 160);
        for (i, token) in tokens.iter().enumerate() {
            writeln!(
                text,
                "[[tokens]]\nid = \"bench-{i}\"\nsha256 = \"{}\"\nroles = [\"viewer\"]\n",
                token_cmd::hash(token)
            )
            .expect("writing to a String cannot fail");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, &text).expect("write the store");
        let specs = token_store::parse(&text, &path).expect("the store parses");
        assert_eq!(specs.len(), ENTRIES);
        let store = token_store::load(&path).expect("the store loads");

        let now = OffsetDateTime::now_utc();
        let hit = &tokens[ENTRIES / 2];
        let miss = token_format::generate().expose().clone();
        let last = hit.chars().last().expect("tokens are not empty");
        let bad = format!(
            "{}{}",
            &hit[..hit.len() - 1],
            if last == 'a' { 'b' } else { 'a' }
        );
        assert!(matches!(store.lookup(hit, now), Lookup::Valid(_)));
        assert_eq!(store.lookup(&miss, now), Lookup::Unknown);
        assert_eq!(token_format::shape(&bad), Shape::BadChecksum);
        assert_eq!(store.lookup(&bad, now), Lookup::BadChecksum);

        let mut group = c.benchmark_group("token_lookup");
        group.bench_function("hit", |b| b.iter(|| store.lookup(black_box(hit), now)));
        group.bench_function("miss", |b| b.iter(|| store.lookup(black_box(&miss), now)));
        group.bench_function("bad_checksum", |b| {
            b.iter(|| store.lookup(black_box(&bad), now))
        });
        group.finish();
    }
}

criterion_group!(jwt_benches, jwt::verify);
criterion_group!(token_benches, tokens::lookup);
criterion_main!(jwt_benches, token_benches);
