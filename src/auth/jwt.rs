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

impl JwtError {
    /// A short label for logs: `"signature"`, `"alg"`, `"kid"`, `"iss"`, `"aud"`, `"nbf"`,
    /// `"malformed"` or `"expired"`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Algorithm => "alg",
            Self::UnknownKey => "kid",
            Self::Issuer => "iss",
            Self::Audience => "aud",
            Self::NotYetValid => "nbf",
            Self::Malformed => "malformed",
            Self::Expired(_) => "expired",
        }
    }
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
    /// access (the `jwks_url` keys arrive with [`Self::spawn_refresh`], [`Self::refresh_now`] or
    /// the first token that needs them).
    ///
    /// `previous` is the verifier of the runtime being replaced: when it fetched the same
    /// `jwks_url`, its source and keys are kept, so an issuer that is down during a reload does
    /// not cost us the keys. Files are always read again.
    ///
    /// # Errors
    /// An unreadable or unusable file, an invalid `jwks_url`, or key sources that do not fit the
    /// algorithm allow-list; the message names the setting.
    pub fn build(settings: &JwtSettings, previous: Option<&JwtVerifier>) -> Result<Self, String> {
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
            return Err("auth.jwt.jwks_refresh: must be at least 1s".to_owned());
        }
        let leeway = time::Duration::try_from(settings.leeway)
            .map_err(|_| "auth.jwt.leeway: too large".to_owned())?;
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
    pub fn files(&self) -> Vec<PathBuf> {
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
    pub fn spawn_refresh(self: &Arc<Self>) {
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

    /// Fetches `jwks_url` now (for `gatehouse check` and start-up); returns how many usable keys
    /// it served, or 0 without `jwks_url`.
    ///
    /// # Errors
    /// The fetch failed (the last good keys stay).
    pub async fn refresh_now(&self) -> Result<usize, String> {
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
            && remote.refetch_unknown(seen).await
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
        let identity = Identity {
            subject: Arc::from(subject),
            roles: Arc::from(roles),
            method: AuthMethod::Jwt,
            expires: Some(exp),
        };
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
fn validations(names: &[String]) -> Result<Vec<(Algorithm, Validation)>, String> {
    names
        .iter()
        .map(|name| {
            let alg = name
                .parse::<Algorithm>()
                .map_err(|_| format!("auth.jwt.algorithms: unsupported algorithm {name:?}"))?;
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
) -> Result<(), String> {
    let hmac_alg = validations
        .iter()
        .map(|(alg, _)| *alg)
        .find(|alg| KeyKind::Hmac.accepts(*alg));
    let public_alg = validations
        .iter()
        .any(|(alg, _)| !KeyKind::Hmac.accepts(*alg));
    match (hmac_alg, settings.hmac_secret_file.is_some()) {
        (Some(alg), false) => {
            return Err(format!(
                "auth.jwt.algorithms: {alg:?} needs hmac_secret_file"
            ));
        }
        (None, true) => {
            return Err(
                "auth.jwt.hmac_secret_file: algorithms allow none of HS256, HS384, HS512"
                    .to_owned(),
            );
        }
        _ => {}
    }
    if (settings.jwks_file.is_some() || settings.jwks_url.is_some()) && !public_alg {
        return Err(
            "auth.jwt: jwks_file/jwks_url keys need an RS*, PS*, ES* or EdDSA algorithm in algorithms"
                .to_owned(),
        );
    }
    Ok(())
}

fn load_jwks_file(path: &Path) -> Result<KeySet, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("auth.jwt.jwks_file: {}: {e}", path.display()))?;
    let source = path.display().to_string();
    let set =
        KeySet::parse(&text, &source).map_err(|e| format!("auth.jwt.jwks_file: {source}: {e}"))?;
    if set.len() == 0 {
        return Err(format!("auth.jwt.jwks_file: {source}: no usable key"));
    }
    Ok(set)
}

fn load_hmac_secret(path: &Path) -> Result<HmacSecret, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("auth.jwt.hmac_secret_file: {}: {e}", path.display()))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "auth.jwt.hmac_secret_file: {}: secret is {} bytes, at least {MIN_HMAC_SECRET_BYTES} required",
            path.display(),
            secret.len()
        ));
    }
    Ok(HmacSecret(DecodingKey::from_secret(secret)))
}

/// The `jwks_url` source: the previous runtime's when it fetched the same URL, else a new one.
fn remote_source(url: &str, previous: Option<&JwtVerifier>) -> Result<Arc<RemoteJwks>, String> {
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
pub fn looks_like_jwt(s: &str) -> bool {
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
mod tests {
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
    const RSA_TEST_KEY: &str = include_str!("testdata/jwt-rsa-2048-TEST-ONLY.pem");
    const RSA_TEST_PUBLIC_KEY: &str = include_str!("testdata/jwt-rsa-2048-TEST-ONLY.pub.pem");
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
        assert_eq!(error.reason(), "expired");
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
        let good =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &secret).unwrap();
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
                .contains("needs hmac_secret_file")
        );

        let short = dir.path().join("short.key");
        std::fs::write(&short, "too-short\n").unwrap();
        hs.hmac_secret_file = Some(short);
        let error = JwtVerifier::build(&hs, None).unwrap_err();
        assert!(error.contains("9 bytes"), "{error}");
        assert!(!error.contains("too-short"), "{error}");

        let mut only_hmac_file = settings();
        only_hmac_file.hmac_secret_file = Some(dir.path().join("whatever"));
        assert!(
            JwtVerifier::build(&only_hmac_file, None)
                .unwrap_err()
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
                .contains("no usable key")
        );

        let mut bad_url = settings();
        bad_url.jwks_url = Some("ftp://issuer.test/jwks".to_owned());
        assert!(
            JwtVerifier::build(&bad_url, None)
                .unwrap_err()
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
}
