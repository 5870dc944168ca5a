//! `[auth.jwt]`: verifies JSON Web Tokens and turns their claims into an [`Identity`].
//!
//! Keys come from `jwks_file`, `jwks_url` (fetched and refreshed by the private `jwks` module) and `hmac_secret_file`. The
//! header's `alg` must be on the configured allow-list (`none` never is), and a key only ever
//! verifies algorithms of its own type — an HMAC secret HS*, an RSA key RS*/PS*, and so on — so a
//! token that uses an RSA public key as an HMAC secret (RS256→HS256 key confusion) finds no key.
//!
//! A token with a `kid` is verified with that key; an unknown `kid` makes the `jwks_url` source
//! refetch (single flight, rate limited) before the token is refused. Without a `kid`, every key
//! of the algorithm's type is tried.
//!
//! Claims: `iss` must equal `issuer` when set, `aud` must name one of `audiences` when any are
//! set, `exp` is required, and `exp`/`nbf` are checked with `leeway` against the `now` the
//! caller passes. `subject_claim` and `roles_claim` may be dotted paths into nested objects
//! (`realm_access.roles`) when no top-level claim has that exact name.
//!
//! Successful verifications are cached per SHA-256 of the token until the token expires, so a
//! client that sends the same token on every request pays for one signature check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::jwks::{KeyKind, KeySet, RemoteJwks};
use super::{AuthMethod, Identity};
use crate::config::JwtSettings;
use crate::config::collect::KeyError;
use crate::error::GatewayError;
use crate::timestamp::rfc3339;

/// Most cached verification results kept at once.
const CACHE_LIMIT: usize = 10_000;
/// Smallest HMAC secret accepted (RFC 7518 §3.2: at least the hash size of HS256).
const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Shortest accepted `jwks_refresh`.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Why a JWT was refused. Carries no token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The signature does not verify.
    #[error("invalid token (signature)")]
    Signature,
    /// The `alg` is missing, unsupported, or not one the key may verify.
    #[error("invalid token (alg)")]
    Algorithm,
    /// No key matches the `kid` (after the allowed refetch).
    #[error("invalid token (kid)")]
    UnknownKey,
    /// `iss` is missing or not the configured issuer.
    #[error("invalid token (iss)")]
    Issuer,
    /// `aud` is missing or names none of the configured audiences.
    #[error("invalid token (aud)")]
    Audience,
    /// `nbf` lies further in the future than `leeway`.
    #[error("invalid token (nbf)")]
    NotYetValid,
    /// Not a well-formed JWS, or a claim of the wrong type.
    #[error("invalid token (malformed)")]
    Malformed,
    /// The token's `exp` (this time) lies further in the past than `leeway`.
    #[error("token expired at {}", rfc3339(*.0))]
    Expired(OffsetDateTime),
}

impl From<JwtError> for GatewayError {
    /// 401 either way; an expired token says when it expired (SPEC §4).
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::Expired(at) => Self::TokenExpired(rfc3339(at)),
            JwtError::Signature
            | JwtError::Algorithm
            | JwtError::UnknownKey
            | JwtError::Issuer
            | JwtError::Audience
            | JwtError::NotYetValid
            | JwtError::Malformed => Self::InvalidToken,
        }
    }
}

/// The HMAC secret; its Debug never shows it.
struct HmacSecret(DecodingKey);

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A cached successful verification.
struct Cached {
    identity: Identity,
    exp: OffsetDateTime,
}

/// Verifies JWTs for `[auth.jwt]`. Built per runtime; cheap to share behind an `Arc`.
pub struct JwtVerifier {
    issuer: Option<String>,
    audiences: Vec<String>,
    /// The allow-list, each with its prepared validation (one algorithm each).
    validations: Vec<(Algorithm, Validation)>,
    subject_claim: String,
    roles_claim: String,
    leeway: time::Duration,
    refresh: Duration,
    jwks_file: Option<PathBuf>,
    hmac_secret_file: Option<PathBuf>,
    jwks_url: Option<String>,
    file_keys: KeySet,
    hmac: Option<HmacSecret>,
    remote: Option<Arc<RemoteJwks>>,
    cache: RwLock<HashMap<[u8; 32], Cached>>,
    cache_limit: usize,
    /// Dropped with the verifier, which ends its refresh task.
    stop: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.validations.iter().map(|(alg, _)| *alg).collect();
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &algorithms)
            .field("jwks_file", &self.jwks_file)
            .field("file_keys", &self.file_keys.len())
            .field("remote", &self.remote)
            .field("hmac_secret", &self.hmac.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier. Blocking: reads `jwks_file` and `hmac_secret_file`; no network
    /// access (the `jwks_url` keys arrive with [`Self::spawn_refresh`] or the first token that
    /// needs them).
    ///
    /// `previous` is the verifier of the runtime being replaced: when it fetched the same
    /// `jwks_url`, its source and keys are kept, so an issuer that is down during a reload does
    /// not cost us the keys. Files are always read again.
    ///
    /// # Errors
    /// An unreadable or unusable file, an invalid `jwks_url`, or key sources that do not fit the
    /// algorithm allow-list; the message names the setting.
    pub fn build(settings: &JwtSettings, previous: Option<&JwtVerifier>) -> Result<Self, KeyError> {
        let validations = validations(&settings.algorithms)?;
        check_sources(settings, &validations)?;
        let file_keys = match &settings.jwks_file {
            Some(path) => load_jwks_file(path)?,
            None => KeySet::default(),
        };
        let hmac = settings
            .hmac_secret_file
            .as_deref()
            .map(load_hmac_secret)
            .transpose()?;
        if settings.jwks_url.is_some() && settings.jwks_refresh < MIN_REFRESH {
            return Err(KeyError::new(
                "auth.jwt.jwks_refresh",
                "must be at least 1s",
            ));
        }
        let leeway = time::Duration::try_from(settings.leeway)
            .map_err(|_| KeyError::new("auth.jwt.leeway", "too large"))?;
        let remote = settings
            .jwks_url
            .as_deref()
            .map(|url| remote_source(url, previous))
            .transpose()?;
        Ok(Self {
            issuer: settings.issuer.clone(),
            audiences: settings.audiences.clone(),
            validations,
            subject_claim: settings.subject_claim.clone(),
            roles_claim: settings.roles_claim.clone(),
            leeway,
            refresh: settings.jwks_refresh,
            jwks_file: settings.jwks_file.clone(),
            hmac_secret_file: settings.hmac_secret_file.clone(),
            jwks_url: settings.jwks_url.clone(),
            file_keys,
            hmac,
            remote,
            cache: RwLock::new(HashMap::new()),
            cache_limit: CACHE_LIMIT,
            stop: tokio::sync::watch::channel(()).0,
        })
    }

    /// Files to watch for reload (`jwks_file`, `hmac_secret_file`).
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.jwks_file
            .iter()
            .chain(self.hmac_secret_file.iter())
            .cloned()
            .collect()
    }

    /// Starts the `jwks_url` background refresh on the current tokio runtime: a fetch right away
    /// (unless keys inherited from the previous runtime are still fresh), then every
    /// `jwks_refresh`; after a failed fetch, a retry within 30 s. The task ends as soon as the
    /// verifier is dropped. Does nothing without `jwks_url` or outside a tokio runtime.
    pub(crate) fn spawn_refresh(self: &Arc<Self>) {
        let _task = self.start_refresh();
    }

    fn start_refresh(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.remote.as_ref()?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("JWKS refresh not started: no tokio runtime");
            return None;
        };
        let weak = Arc::downgrade(self);
        let mut stop = self.stop.subscribe();
        let period = self.refresh;
        Some(runtime.spawn(async move {
            loop {
                let Some(remote) = weak.upgrade().and_then(|v| v.remote.clone()) else {
                    break;
                };
                let delay = remote.refresh_due_in(period).await;
                drop(remote);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
                let Some(remote) = weak.upgrade().and_then(|v| v.remote.clone()) else {
                    break;
                };
                remote.refresh_if_due(period).await;
            }
        }))
    }

    /// Fetches `jwks_url` now; returns how many usable keys it served, or 0 without `jwks_url`.
    /// Only tests call it: the service leaves the fetch to [`Self::spawn_refresh`] and the first
    /// token that needs the keys.
    ///
    /// # Errors
    /// The fetch failed (the last good keys stay).
    #[cfg(test)]
    pub(crate) async fn refresh_now(&self) -> Result<usize, String> {
        match &self.remote {
            Some(remote) => remote.refresh_now().await,
            None => Ok(0),
        }
    }

    /// Verifies a token at time `now`, answering from the cache when this exact token was
    /// verified before (no second signature check).
    ///
    /// # Errors
    /// [`JwtError`]; failures are never cached.
    pub async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Identity, JwtError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.cached(&digest, now)? {
            return Ok(identity);
        }
        let (identity, exp) = self.check(token, now).await?;
        self.remember(digest, &identity, exp, now);
        Ok(identity)
    }

    /// Verifies a token without the cache: every call checks the signature (benches, tests).
    ///
    /// # Errors
    /// [`JwtError`].
    pub async fn verify_uncached(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, JwtError> {
        self.check(token, now).await.map(|(identity, _)| identity)
    }

    fn cached(&self, digest: &[u8; 32], now: OffsetDateTime) -> Result<Option<Identity>, JwtError> {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(digest) {
            None => Ok(None),
            Some(hit) if self.expired(hit.exp, now) => Err(JwtError::Expired(hit.exp)),
            Some(hit) => Ok(Some(hit.identity.clone())),
        }
    }

    fn remember(
        &self,
        digest: [u8; 32],
        identity: &Identity,
        exp: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= self.cache_limit {
            cache.retain(|_, entry| !self.expired(entry.exp, now));
            if cache.len() >= self.cache_limit {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Cached {
                identity: identity.clone(),
                exp,
            },
        );
    }

    /// Whether `exp` lies more than `leeway` before `now`.
    fn expired(&self, exp: OffsetDateTime, now: OffsetDateTime) -> bool {
        exp.checked_add(self.leeway)
            .is_some_and(|limit| now > limit)
    }

    /// The full check: header, signature, claims.
    async fn check(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Identity, OffsetDateTime), JwtError> {
        let header = parse_header(token)?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, validation)| validation)
            .ok_or(JwtError::Algorithm)?;
        if !jws_shape(token) {
            return Err(JwtError::Malformed);
        }
        let claims = self.check_signature(token, &header, validation).await?;
        self.identity(&claims, now)
    }

    async fn check_signature(
        &self,
        token: &str,
        header: &TokenHeader,
        validation: &Validation,
    ) -> Result<Map<String, Value>, JwtError> {
        if KeyKind::Hmac.accepts(header.alg) {
            let secret = self.hmac.as_ref().ok_or(JwtError::Algorithm)?;
            return decode_claims(token, &secret.0, validation);
        }
        let seen = self.remote.as_ref().map(|remote| remote.attempts());
        if let Some(result) = self.try_keys(token, header, validation) {
            return result;
        }
        if let (Some(remote), Some(seen)) = (&self.remote, seen)
            // Boxed: a rare refetch, kept out of every verification's future.
            && Box::pin(remote.refetch_unknown(seen)).await
            && let Some(result) = self.try_keys(token, header, validation)
        {
            return result;
        }
        Err(JwtError::UnknownKey)
    }

    /// Tries the keys the token may be signed with; `None` when there is no such key.
    fn try_keys(
        &self,
        token: &str,
        header: &TokenHeader,
        validation: &Validation,
    ) -> Option<Result<Map<String, Value>, JwtError>> {
        let remote = self.remote.as_ref().map(|remote| remote.keys());
        let remote_keys = remote.iter().flat_map(|set| set.keys.iter());
        let mut named = false;
        let mut failure = None;
        for key in self.file_keys.keys.iter().chain(remote_keys) {
            if let Some(kid) = header.kid.as_deref() {
                if key.kid.as_deref() != Some(kid) {
                    continue;
                }
                named = true;
            }
            if !key.accepts(header.alg) {
                continue;
            }
            match decode_claims(token, &key.key, validation) {
                Ok(claims) => return Some(Ok(claims)),
                Err(error) => failure = Some(error),
            }
        }
        failure
            .map(Err)
            .or_else(|| named.then_some(Err(JwtError::Algorithm)))
    }

    /// Checks `iss`, `aud`, `exp` and `nbf` and builds the identity.
    fn identity(
        &self,
        claims: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(Identity, OffsetDateTime), JwtError> {
        self.check_issuer(claims)?;
        self.check_audience(claims)?;
        let exp = claims
            .get("exp")
            .ok_or(JwtError::Malformed)
            .and_then(timestamp)?;
        if self.expired(exp, now) {
            return Err(JwtError::Expired(exp));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = timestamp(nbf)?;
            if now.checked_add(self.leeway).is_some_and(|late| late < nbf) {
                return Err(JwtError::NotYetValid);
            }
        }
        let subject = subject(claim(claims, &self.subject_claim))?;
        let roles = roles(claim(claims, &self.roles_claim))?;
        let identity = Identity::new(
            Arc::from(subject),
            Arc::from(roles),
            AuthMethod::Jwt,
            Some(exp),
        );
        Ok((identity, exp))
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        match &self.issuer {
            Some(issuer) if claims.get("iss").and_then(Value::as_str) != Some(issuer) => {
                Err(JwtError::Issuer)
            }
            _ => Ok(()),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        if self.audiences.is_empty() {
            return Ok(());
        }
        let accepted = |aud: &str| self.audiences.iter().any(|a| a == aud);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
            _ => false,
        };
        if ok { Ok(()) } else { Err(JwtError::Audience) }
    }
}

/// The allow-list with one prepared [`Validation`] per algorithm. Time, issuer and audience
/// checks are ours, so jsonwebtoken's are switched off: it checks the signature and `alg` only.
fn validations(names: &[String]) -> Result<Vec<(Algorithm, Validation)>, KeyError> {
    names
        .iter()
        .map(|name| {
            let alg = name.parse::<Algorithm>().map_err(|_| {
                KeyError::new(
                    "auth.jwt.algorithms",
                    format!("unsupported algorithm {name:?}"),
                )
            })?;
            let mut validation = Validation::new(alg);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            Ok((alg, validation))
        })
        .collect()
}

/// Key sources and the allow-list must fit each other, or tokens would be refused silently.
fn check_sources(
    settings: &JwtSettings,
    validations: &[(Algorithm, Validation)],
) -> Result<(), KeyError> {
    let hmac_alg = validations
        .iter()
        .map(|(alg, _)| *alg)
        .find(|alg| KeyKind::Hmac.accepts(*alg));
    let public_alg = validations
        .iter()
        .any(|(alg, _)| !KeyKind::Hmac.accepts(*alg));
    match (hmac_alg, settings.hmac_secret_file.is_some()) {
        (Some(alg), false) => {
            return Err(KeyError::new(
                "auth.jwt.algorithms",
                format!("{alg:?} needs hmac_secret_file"),
            ));
        }
        (None, true) => {
            return Err(KeyError::new(
                "auth.jwt.hmac_secret_file",
                "algorithms allow none of HS256, HS384, HS512",
            ));
        }
        _ => {}
    }
    if (settings.jwks_file.is_some() || settings.jwks_url.is_some()) && !public_alg {
        return Err(KeyError::new(
            "auth.jwt.algorithms",
            "jwks_file/jwks_url keys need an RS*, PS*, ES* or EdDSA algorithm in algorithms",
        ));
    }
    Ok(())
}

fn load_jwks_file(path: &Path) -> Result<KeySet, KeyError> {
    const KEY: &str = "auth.jwt.jwks_file";
    let source = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| KeyError::new(KEY, format!("{source}: {e}")))?;
    let set =
        KeySet::parse(&text, &source).map_err(|e| KeyError::new(KEY, format!("{source}: {e}")))?;
    if set.len() == 0 {
        return Err(KeyError::new(KEY, format!("{source}: no usable key")));
    }
    Ok(set)
}

fn load_hmac_secret(path: &Path) -> Result<HmacSecret, KeyError> {
    const KEY: &str = "auth.jwt.hmac_secret_file";
    let bytes =
        std::fs::read(path).map_err(|e| KeyError::new(KEY, format!("{}: {e}", path.display())))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(KeyError::new(
            KEY,
            format!(
                "{}: secret is {} bytes, at least {MIN_HMAC_SECRET_BYTES} required",
                path.display(),
                secret.len()
            ),
        ));
    }
    Ok(HmacSecret(DecodingKey::from_secret(secret)))
}

/// The `jwks_url` source: the previous runtime's when it fetched the same URL, else a new one.
fn remote_source(url: &str, previous: Option<&JwtVerifier>) -> Result<Arc<RemoteJwks>, KeyError> {
    let reused = previous
        .filter(|p| p.jwks_url.as_deref() == Some(url))
        .and_then(|p| p.remote.clone());
    match reused {
        Some(remote) => Ok(remote),
        None => RemoteJwks::new(url).map(Arc::new),
    }
}

/// The parts of the JOSE header we read ourselves (jsonwebtoken cannot represent `none`).
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    let encoded = token.split('.').next().ok_or(JwtError::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwtError::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| JwtError::Malformed)?;
    if raw.crit.is_some() {
        // RFC 7515 §4.1.11: we understand no extension, so a critical one must be refused.
        return Err(JwtError::Malformed);
    }
    let alg = raw
        .alg
        .parse::<Algorithm>()
        .map_err(|_| JwtError::Algorithm)?;
    Ok(TokenHeader { alg, kid: raw.kid })
}

/// Checks the signature with one key and returns the claims.
fn decode_claims(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, JwtError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|error| classify(error.kind()))
}

fn classify(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtError::Algorithm,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => {
            tracing::warn!("a JWT verification key could not be used");
            JwtError::Signature
        }
        _ => JwtError::Malformed,
    }
}

/// A NumericDate claim.
fn timestamp(value: &Value) -> Result<OffsetDateTime, JwtError> {
    let seconds = value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
        .ok_or(JwtError::Malformed)?;
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| JwtError::Malformed)
}

/// A claim by name, or by dotted path into nested objects when no claim has that exact name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn subject(value: Option<&Value>) -> Result<&str, JwtError> {
    match value.and_then(Value::as_str) {
        Some(subject) if !subject.is_empty() && !subject.chars().any(char::is_control) => {
            Ok(subject)
        }
        _ => Err(JwtError::Malformed),
    }
}

/// Roles from a JSON array of strings or a space-separated string (`scope`); none when absent.
/// A role holding a comma or a control character would corrupt `x-auth-roles`: malformed.
fn roles(value: Option<&Value>) -> Result<Vec<String>, JwtError> {
    let roles: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(JwtError::Malformed))
            .filter(|role| role.as_ref().map_or(true, |r| !r.is_empty()))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::Malformed),
    };
    if roles
        .iter()
        .any(|role| role.contains(',') || role.chars().any(char::is_control))
    {
        return Err(JwtError::Malformed);
    }
    Ok(roles)
}

/// Whether `s` has the shape of a JWS compact JWT: three non-empty base64url segments separated
/// by `.`, the first decoding to a JSON object with an `alg` member. Cheap; verifies nothing.
pub(crate) fn looks_like_jwt(s: &str) -> bool {
    jws_shape(s)
        && s.split('.')
            .next()
            .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
            .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
            .is_some_and(|object| object.contains_key("alg"))
}

/// Exactly three non-empty segments of base64url characters separated by `.`.
fn jws_shape(s: &str) -> bool {
    let segment_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            segment_ok(header) && segment_ok(payload) && segment_ok(signature)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
