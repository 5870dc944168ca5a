//! Fixtures for authentication tests: a gateway folder laid out before start (token store,
//! token files, JWKS), JWT signing keys with their public JWKs, and a [`Scripted`] HTTP server
//! (an auth service or a JWKS endpoint) whose answer a test switches while it records every
//! request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gatehouse::token_cmd;
use http::Response;
use http::header::{HeaderName, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;

use super::gateway::compose_config;
use super::upstream::Recorded;
use super::{TestGateway, Upstream, certs, full};

/// The fixed RSA test key (see `src/auth/testdata/README.md`).
const RSA_TEST_KEY: &str = include_str!("../../../src/auth/testdata/jwt-rsa-2048-TEST-ONLY.pem");
/// Its public half as PEM: what an RS256→HS256 key-confusion attacker uses as the HMAC secret.
pub const RSA_TEST_PUBLIC_KEY: &str =
    include_str!("../../../src/auth/testdata/jwt-rsa-2048-TEST-ONLY.pub.pem");

/// The `WWW-Authenticate` of a 401 without a credential.
pub const CHALLENGE: &str = "Bearer realm=\"gatehouse\"";
/// The `WWW-Authenticate` of a 401 for a refused or expired credential.
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

/// A gateway folder being laid out: the test certificates plus whatever the test writes (token
/// store, token files, JWKS) before [`Layout::start`] writes `gateway.toml` and starts.
pub struct Layout {
    dir: TempDir,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout::new()
    }
}

impl Layout {
    /// A temp folder holding the test certificates under `certs/`.
    pub fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        certs().write_into(dir.path());
        Layout { dir }
    }

    /// A path under the folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file (creating its folders).
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }

    /// Mints a `gth_` token for `id` with `roles` into `tokens.toml` the way `gatehouse token
    /// create` does, and returns it.
    pub fn mint(&self, id: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let token = token_cmd::create(
            &self.path("tokens.toml"),
            id,
            &roles,
            None,
            OffsetDateTime::now_utc(),
        )
        .unwrap_or_else(|e| panic!("minting {id}: {e:#}"));
        token.expose().clone()
    }

    /// Appends a hand-written `[[tokens]]` entry for `token` (stored as its SHA-256) to
    /// `tokens.toml`; `extra` adds keys (`expires = "…"`, `disabled = true`).
    pub fn add_token(&self, id: &str, token: &str, roles: &[&str], extra: &str) {
        let roles = roles
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.append_tokens(&format!(
            "\n[[tokens]]\nid = \"{id}\"\nsha256 = \"{}\"\nroles = [{roles}]\n{extra}\n",
            token_cmd::hash(token)
        ));
    }

    /// Appends raw text to `tokens.toml`.
    pub fn append_tokens(&self, text: &str) {
        let path = self.path("tokens.toml");
        let mut store = std::fs::read_to_string(&path).unwrap_or_default();
        store.push_str(text);
        std::fs::write(&path, store).unwrap();
    }

    /// Writes `gateway.toml` (the body after the default `[server]`/`[tls]` unless it has its
    /// own) and starts the gateway.
    pub async fn start(self, body: &str) -> TestGateway {
        let config = self.path("gateway.toml");
        std::fs::write(&config, compose_config(body)).unwrap();
        TestGateway::start_in(self.dir, &config).await
    }
}

/// Unpadded base64url, as JOSE writes it.
/// `token` with its last character changed to one it is not: a near miss that must be refused.
/// (Always appending `x` made the real token one run in 64.)
pub fn mistyped(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let last = chars.pop().unwrap_or('x');
    chars.push(if last == 'x' { 'y' } else { 'x' });
    let near = chars.into_iter().collect::<String>();
    assert_ne!(near, token, "a mistyped token differs");
    near
}

pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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

/// A JWT signing key and its public JWK (with `kid`).
pub struct JwtKey {
    pub kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl JwtKey {
    /// The fixed RSA test key, for RS256.
    pub fn rsa(kid: &str) -> JwtKey {
        let encoding = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap())
                .unwrap();
        jwk["kid"] = json!(kid);
        JwtKey {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding,
            jwk,
        }
    }

    /// A fresh P-256 key, for ES256.
    pub fn es256(kid: &str) -> JwtKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        JwtKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pair.serialized_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": b64url(&point[1..33]), "y": b64url(&point[33..65])}),
        }
    }

    /// A fresh Ed25519 key, for EdDSA.
    pub fn ed25519(kid: &str) -> JwtKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        JwtKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pair.serialized_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                "x": b64url(pair.public_key_raw())}),
        }
    }

    /// Signs `claims` with a header naming this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWK Set holding the public halves of `keys`.
pub fn jwks(keys: &[&JwtKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A JWT with whatever header and signature the test wants (`alg: none`, forged ones).
pub fn forged_jwt(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// HS256 over `claims` with `secret` as the HMAC key, naming `kid`.
pub fn hs256(claims: &Value, secret: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// One answer of a [`Scripted`] server.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// `status` with an empty body and no headers.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Answer {
        Answer::status(200)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Answer {
        self.body = body.into();
        self
    }

    fn to_response(&self) -> Response<super::Body> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response.body(full(self.body.clone())).unwrap()
    }
}

/// A recording HTTP/1.1 server on `127.0.0.1:0` (an [`Upstream`]) answering every request with
/// the current [`Answer`], which the test may switch at any time: an auth service for
/// `[auth.external]`, or a JWKS endpoint for `jwks_url`.
pub struct Scripted {
    pub server: Upstream,
    answer: Arc<Mutex<Answer>>,
}

impl Scripted {
    /// Starts answering `answer`.
    pub async fn start(answer: Answer) -> Scripted {
        let current = Arc::new(Mutex::new(answer));
        let shared = current.clone();
        let server = Upstream::spawn(move |_| shared.lock().unwrap().to_response()).await;
        Scripted {
            server,
            answer: current,
        }
    }

    /// Answers `answer` from now on.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Requests received so far (recorded before each answer is sent).
    pub fn calls(&self) -> usize {
        self.server.count()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

/// Asserts the upstream got exactly one of each identity header, with these values.
pub fn assert_identity(got: &Recorded, subject: &str, roles: &str, method: &str) {
    for (name, want) in [
        ("x-auth-subject", subject),
        ("x-auth-roles", roles),
        ("x-auth-method", method),
    ] {
        assert_eq!(
            got.header_all(name),
            [want],
            "{name} the upstream got; all headers: {:?}",
            got.headers
        );
    }
}

/// Names of the headers the upstream got that fold (case-insensitive, `_` = `-`) to `x-auth-*`
/// or to one of `others`.
pub fn identity_like_headers(got: &Recorded, others: &[&str]) -> Vec<String> {
    let fold = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    got.headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| {
            let folded = fold(name);
            folded.starts_with("x-auth-") || others.iter().any(|o| fold(o) == folded)
        })
        .collect()
}
