//! JWT verification keys: a JWK Set parsed into keys that each know which algorithms they may
//! verify, and the `jwks_url` source that fetches such a set, refreshes it, refetches it on an
//! unknown `kid` (single flight, at most once per [`MIN_REFETCH_INTERVAL`]) and keeps the last
//! good set while the issuer is down.
//!
//! A key is only ever used with algorithms of its own type (RSA → RS*/PS*, P-256 → ES256,
//! P-384 → ES384, Ed25519 → EdDSA), and with the JWK's own `alg` when it names one. Symmetric
//! (`oct`) JWKs are refused: HMAC secrets come from `hmac_secret_file` only, so a published key
//! set can never turn into an HMAC secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::collect::KeyError;
use crate::http::client::{HttpsClient, Pool, Roots};

/// Unknown-`kid` refetches happen at most this often.
pub(crate) const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Whole-fetch timeout (connect, response, body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS body accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Smallest RSA modulus accepted (RFC 7518 §3.3).
const MIN_RSA_BYTES: usize = 2048 / 8;

/// The type of a verification key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA public key: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256 public key: ES256.
    P256,
    /// EC P-384 public key: ES384.
    P384,
    /// Ed25519 public key: EdDSA.
    Ed25519,
    /// HMAC secret: HS256/384/512.
    Hmac,
}

impl KeyKind {
    /// Whether a key of this type may verify `alg`.
    pub(crate) fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Self::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            Self::P256 => alg == A::ES256,
            Self::P384 => alg == A::ES384,
            Self::Ed25519 => alg == A::EdDSA,
            Self::Hmac => matches!(alg, A::HS256 | A::HS384 | A::HS512),
        }
    }

    /// An algorithm of this type, used to check a key when it is loaded.
    fn probe_algorithm(self) -> Algorithm {
        match self {
            Self::Rsa => Algorithm::RS256,
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
            Self::Ed25519 => Algorithm::EdDSA,
            Self::Hmac => Algorithm::HS256,
        }
    }
}

/// One public verification key from a JWK Set.
pub(crate) struct VerifyKey {
    /// The JWK's `kid`.
    pub(crate) kid: Option<String>,
    /// Its type.
    pub(crate) kind: KeyKind,
    /// The JWK's `alg`, when it names one: then only that algorithm is accepted.
    alg: Option<Algorithm>,
    /// The key itself.
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|own| own == alg)
    }

    /// Builds a key from a JWK, or says why the JWK is not usable.
    fn from_jwk(jwk: &Jwk) -> Result<Self, &'static str> {
        check_use(jwk)?;
        let alg = declared_algorithm(jwk)?;
        let (kind, key) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => (KeyKind::Rsa, rsa_key(&rsa.n, &rsa.e)?),
            AlgorithmParameters::EllipticCurve(ec) => ec_key(&ec.curve, &ec.x, &ec.y)?,
            AlgorithmParameters::OctetKeyPair(okp) => {
                (KeyKind::Ed25519, ed_key(&okp.curve, &okp.x)?)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric keys are read from hmac_secret_file only");
            }
        };
        if alg.is_some_and(|alg| !kind.accepts(alg)) {
            return Err("its alg does not match its key type");
        }
        probe(kind, &key)?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            kind,
            alg,
            key,
        })
    }
}

/// Refuses keys meant for encryption.
fn check_use(jwk: &Jwk) -> Result<(), &'static str> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("its use is not \"sig\""),
    }
    match &jwk.common.key_operations {
        Some(ops) if !ops.contains(&KeyOperations::Verify) => Err("its key_ops lack \"verify\""),
        _ => Ok(()),
    }
}

/// The JWK's `alg`, which must be a signature algorithm when present.
fn declared_algorithm(jwk: &Jwk) -> Result<Option<Algorithm>, &'static str> {
    jwk.common
        .key_algorithm
        .map(|alg| {
            alg.to_string()
                .parse::<Algorithm>()
                .map_err(|_| "its alg is not a supported signature algorithm")
        })
        .transpose()
}

fn decode_param(value: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| "a key parameter is not base64url")
}

fn rsa_key(n: &str, e: &str) -> Result<DecodingKey, &'static str> {
    let n = decode_param(n)?;
    let e = decode_param(e)?;
    let significant = n.iter().skip_while(|&&b| b == 0).count();
    if significant < MIN_RSA_BYTES {
        return Err("RSA key shorter than 2048 bits");
    }
    if e.iter().all(|&b| b == 0) {
        return Err("RSA exponent is zero");
    }
    Ok(DecodingKey::from_rsa_raw_components(&n, &e))
}

fn ec_key(curve: &EllipticCurve, x: &str, y: &str) -> Result<(KeyKind, DecodingKey), &'static str> {
    let (kind, len) = match curve {
        EllipticCurve::P256 => (KeyKind::P256, 32),
        EllipticCurve::P384 => (KeyKind::P384, 48),
        _ => return Err("unsupported EC curve (P-256 and P-384 are)"),
    };
    if decode_param(x)?.len() != len || decode_param(y)?.len() != len {
        return Err("EC coordinates have the wrong length for the curve");
    }
    let key = DecodingKey::from_ec_components(x, y).map_err(|_| "EC key is not base64url")?;
    Ok((kind, key))
}

fn ed_key(curve: &EllipticCurve, x: &str) -> Result<DecodingKey, &'static str> {
    if *curve != EllipticCurve::Ed25519 {
        return Err("unsupported OKP curve (Ed25519 is)");
    }
    if decode_param(x)?.len() != 32 {
        return Err("Ed25519 key is not 32 bytes");
    }
    DecodingKey::from_ed_components(x).map_err(|_| "Ed25519 key is not base64url")
}

/// Lets the crypto provider parse the key once, so a key it cannot use (an EC point off its
/// curve, a bad Ed25519 point) is refused at load time instead of failing every request.
fn probe(kind: KeyKind, key: &DecodingKey) -> Result<(), &'static str> {
    jsonwebtoken::crypto::verify("", b"probe", key, kind.probe_algorithm())
        .map(|_| ())
        .map_err(|_| "the key is not a valid public key")
}

/// A parsed JWK Set: the usable keys, in file order.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    /// The keys.
    pub(crate) keys: Vec<VerifyKey>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWK Set. Keys that cannot be used are skipped with a warning naming their `kid`
    /// and the reason; `source` names the file or URL in those warnings.
    ///
    /// # Errors
    /// The text is not a JWK Set (JSON object with a `keys` array).
    pub(crate) fn parse(json: &[u8], source: &str) -> Result<Self, String> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWK Set: {e}"))?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (index, value) in raw.keys.into_iter().enumerate() {
            let kid = value
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|_| "unsupported key type or missing parameters")
                .and_then(|jwk| VerifyKey::from_jwk(&jwk));
            match parsed {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    tracing::warn!(
                        source,
                        index,
                        kid = kid.as_deref().unwrap_or(""),
                        reason,
                        "JWKS key skipped"
                    );
                }
            }
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The HTTP client used for `jwks_url`.
type JwksClient = HttpsClient<Empty<Bytes>>;

/// When fetches happened; guarded by the single-flight lock.
#[derive(Debug, Default)]
struct FetchTimes {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_on_demand: Option<Instant>,
}

impl FetchTimes {
    /// How long until the background refresh is due.
    fn refresh_due_in(&self, period: Duration) -> Duration {
        let retry = period.min(MIN_REFETCH_INTERVAL);
        let due = |at: Option<Instant>, after: Duration| {
            at.map_or(Duration::ZERO, |at| after.saturating_sub(at.elapsed()))
        };
        match self.last_success {
            None => due(self.last_attempt, retry),
            Some(_) => due(self.last_success, period).max(due(self.last_attempt, retry)),
        }
    }
}

/// The `jwks_url` source: the current key set plus what is needed to refresh it.
pub(crate) struct RemoteJwks {
    url: Uri,
    client: JwksClient,
    keys: ArcSwap<KeySet>,
    flight: tokio::sync::Mutex<FetchTimes>,
    /// Completed fetch attempts; a waiter that sees it change knows a fetch happened meanwhile.
    attempts: AtomicU64,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("host", &self.url.host())
            .field("path", &self.url.path())
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Prepares the source (no network access yet; the key set starts empty).
    ///
    /// # Errors
    /// The URL is not an absolute http(s) URL, or https is asked for and the system has no CA
    /// roots.
    pub(crate) fn new(url: &str) -> Result<Self, KeyError> {
        const KEY: &str = "auth.jwt.jwks_url";
        let uri = url
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .ok_or_else(|| KeyError::new(KEY, "expected an absolute http or https URL"))?;
        let pool = Pool {
            connect_timeout: FETCH_TIMEOUT,
            idle_timeout: None,
            max_idle_per_host: 1,
        };
        let client = crate::http::client::build("https client", Roots::system_for(&uri), pool)
            .map_err(|reason| KeyError::new(KEY, reason))?;
        Ok(Self {
            url: uri,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            flight: tokio::sync::Mutex::new(FetchTimes::default()),
            attempts: AtomicU64::new(0),
        })
    }

    /// The current key set.
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Completed fetch attempts so far; pass it to [`Self::refetch_unknown`].
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// A token named a key we do not have. Refetches unless another fetch completed since
    /// `seen` (then the caller just looks again) or the last unknown-key refetch was less than
    /// [`MIN_REFETCH_INTERVAL`] ago. Concurrent callers share one fetch. Returns whether the key
    /// set may have changed.
    pub(crate) async fn refetch_unknown(&self, seen: u64) -> bool {
        let mut times = self.flight.lock().await;
        if self.attempts() != seen {
            return true;
        }
        if times
            .last_on_demand
            .is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL)
        {
            return false;
        }
        times.last_on_demand = Some(Instant::now());
        self.fetch_locked(&mut times).await.is_ok()
    }

    /// Fetches now, whatever the schedule (tests; the service refreshes on its schedule).
    ///
    /// # Errors
    /// The fetch failed; the last good key set stays.
    #[cfg(test)]
    pub(crate) async fn refresh_now(&self) -> Result<usize, String> {
        let mut times = self.flight.lock().await;
        self.fetch_locked(&mut times).await
    }

    /// How long until the background refresh is due (immediately if never fetched; after a
    /// failure, retried after at most [`MIN_REFETCH_INTERVAL`]).
    pub(crate) async fn refresh_due_in(&self, period: Duration) -> Duration {
        self.flight.lock().await.refresh_due_in(period)
    }

    /// Background refresh: fetches if still due once the single-flight lock is ours (another
    /// runtime's task sharing this source may just have done it).
    pub(crate) async fn refresh_if_due(&self, period: Duration) {
        let mut times = self.flight.lock().await;
        if times.refresh_due_in(period).is_zero() {
            let _ = self.fetch_locked(&mut times).await;
        }
    }

    async fn fetch_locked(&self, times: &mut FetchTimes) -> Result<usize, String> {
        times.last_attempt = Some(Instant::now());
        let result = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(format!("no answer within {}s", FETCH_TIMEOUT.as_secs())),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let host = self.url.host().unwrap_or("");
        let path = self.url.path();
        match result {
            Ok(set) => {
                let count = set.len();
                self.keys.store(Arc::new(set));
                times.last_success = Some(Instant::now());
                tracing::info!(host, path, keys = count, "JWKS fetched");
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(host, path, error = %error, "JWKS fetch failed; keeping the last good keys");
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let request = Request::get(self.url.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(
                header::USER_AGENT,
                concat!("gatehouse/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
            .to_bytes();
        let set = KeySet::parse(
            &body,
            &format!("jwks_url {}", self.url.host().unwrap_or("")),
        )?;
        if set.len() == 0 {
            return Err("the JWK Set has no usable key".to_owned());
        }
        Ok(set)
    }
}

/// An error and its sources on one line (hyper's own message omits the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
