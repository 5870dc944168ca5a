//! External auth: NGINX `auth_request` semantics against `[auth.external]`.
//!
//! For every request on an `external` route, [`ExternalAuth::check`] asks the auth service with a
//! body-less request (the configured method to the configured URL, `Content-Length: 0` for methods
//! that carry a body, never the client's framing, `Upgrade` or `Connection` headers) carrying only
//! the configured `forward_headers` the client sent, plus `X-Forwarded-Method`, `X-Forwarded-Uri`,
//! `X-Forwarded-Host`, `X-Forwarded-For` (the client IP) and `X-Request-Id`. The answer becomes a
//! [`ExternalDecision`]:
//!
//! | auth service answer | decision | the client sees |
//! |---|---|---|
//! | 2xx | [`ExternalDecision::Allow`] | the upstream's response; `copy_headers` go upstream |
//! | 401, 403, 429 | [`ExternalDecision::Deny`] | the auth service's status, body, `Content-Type`, `WWW-Authenticate`, `Retry-After` |
//! | timeout, refused, broken, 5xx | [`ExternalDecision::Unavailable`] | 503 `auth service unavailable` |
//! | anything else | [`ExternalDecision::Unexpected`] | 500 `unexpected auth service status` |
//!
//! # Who an allowed caller is (SPEC §8.3)
//! The value of the first `copy_headers` header present on the 2xx answer; without one,
//! `external:` + the first 12 hex characters of a SHA-256 over the forwarded header values, so
//! two callers with different credentials never share an identity (nor an identity-keyed rate
//! limit). A request that sent none of the forward headers has no credential: it is allowed as
//! `anonymous` and rate-limited by client IP ([`ExternalDecision::Allow`]'s `anonymous`).
//!
//! # The decision cache (SPEC §8.2)
//! A decision is reused only for what the auth service decided on. With `cache_key = "request"`
//! (the default) the key is a SHA-256 over the method, Host, normalised path and query, the
//! forwarded header names and values, and the client IP: everything the service saw. With
//! `"credential"` it is the forwarded headers alone, for services that decide on the credential
//! only (Keptn's api-service). Either way the cache holds hashes, never a raw credential.
//! Allows live `cache_ttl`, 401/403 denials `negative_cache_ttl`; 429, unavailable and unexpected
//! answers are never cached. Allows and denials are kept in separate bounded maps, each evicting
//! its oldest entry when full, so a flood of unknown credentials (all denials) never evicts a live
//! allow. [`ExternalAuth::clear`] empties both; every reload calls it, changed or not. Concurrent
//! checks with the same key share one auth call (single flight), so a burst of identical new
//! requests costs the auth service one call. The maps are in `external/cache.rs`, the calls in
//! flight in `external/single_flight.rs`; the TTL rules stay here.
//!
//! # Credentials in the URL
//! `url = "http://user:password@auth/check"` authenticates gatehouse itself to the auth service:
//! the userinfo is removed from the URL and sent as `Authorization: Basic` (percent-decoded,
//! as a browser does). When the configured `forward_headers` carry the client's own
//! `Authorization`, that one is what the service must judge, so it is sent instead and the Basic
//! credential is left out of that call. The password never appears in `Debug` output, logs or
//! errors.
//!
//! No header value (credential or not) ever reaches a log line, an error or `Debug` output.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{AuthMethod, Identity};
use crate::config::collect::KeyError;
use crate::config::{CacheKey, ExternalSettings};
use crate::error::PassThrough;
use crate::http::body::{self, Body};
use crate::http::client::{HttpsClient, Pool, Roots};
use crate::http::forwarded::RequestId;
use crate::http::forwarded::{X_FORWARDED_FOR, X_REQUEST_ID};
use crate::observe::auth_service::AuthServiceStats;

mod cache;
mod decision;
mod single_flight;

use self::cache::Key;
pub(crate) use self::decision::ExternalDecision;
use self::single_flight::{SingleFlight, Turn};

/// `x-forwarded-method`: the client's method, for the auth service.
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `x-forwarded-uri`: the client's normalised path and query, for the auth service.
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `x-forwarded-host`: the Host the client asked for, for the auth service.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Most bytes of a denial body passed through to the client.
const MAX_DENY_BODY: usize = 64 * 1024;
/// The subject of an allowed request that carried no credential.
const ANONYMOUS: &str = "anonymous";
/// Hex characters of the credential hash in an `external:` subject.
const SUBJECT_HASH_CHARS: usize = 12;
/// How many times a follower whose leader vanished (cancelled, panicked) tries to join or lead a
/// new call before calling on its own.
const MAX_ROUNDS: usize = 3;
/// Idle keep-alive connections kept to the auth service.
const MAX_IDLE_CONNECTIONS: usize = 64;
/// How long an idle keep-alive connection to the auth service is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Client headers that are never forwarded: framing, hop-by-hop, `Host`, and the headers this
/// module sets itself.
const NEVER_FORWARDED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-request-id",
];

/// One request to authenticate: what the auth service is told about it.
pub(crate) struct AuthRequest<'a> {
    /// The client's method, sent as `X-Forwarded-Method`.
    pub(crate) method: &'a Method,
    /// The client's normalised path and query, sent as `X-Forwarded-Uri`.
    pub(crate) uri: &'a str,
    /// The Host the client asked for (with its port, as sent), sent as `X-Forwarded-Host`.
    pub(crate) host: Option<&'a str>,
    /// The client's headers; only the configured `forward_headers` are passed on.
    pub(crate) headers: &'a HeaderMap,
    /// The client IP, sent as `X-Forwarded-For`.
    pub(crate) client_ip: IpAddr,
    /// The request id, sent as `X-Request-Id`.
    pub(crate) request_id: &'a RequestId,
}

impl fmt::Debug for AuthRequest<'_> {
    /// Header values and the query string are left out: either may carry a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.uri.split_once('?').map_or(self.uri, |(path, _)| path);
        f.debug_struct("AuthRequest")
            .field("method", self.method)
            .field("path", &path)
            .field("host", &self.host)
            .field("headers", &self.headers.len())
            .field("client_ip", &self.client_ip)
            .field("request_id", &self.request_id.as_str())
            .finish()
    }
}

/// The `[auth.external]` client: asks the auth service, caches and coalesces its decisions.
///
/// The decision cache lives inside this value. A reload builds a fresh `ExternalAuth` from new
/// settings, and a reload that changed nothing calls [`ExternalAuth::clear`], so every reload
/// empties the cache (SPEC §8.2): a revoked credential is never allowed from a stale cache entry
/// past a reload, and a changed auth URL never serves the old service's answers. Share it behind
/// an `Arc`; every method takes `&self`.
pub(crate) struct ExternalAuth {
    /// As configured, but the URL without its userinfo (that is `basic` now), the forward
    /// headers checked and the copy headers without repeats.
    settings: ExternalSettings,
    host: HeaderValue,
    /// `Authorization: Basic` from the URL's userinfo, marked sensitive.
    basic: Option<HeaderValue>,
    content_length: bool,
    client: HttpsClient<Body>,
    /// The decision cache and the calls in flight.
    flights: SingleFlight,
    calls: AtomicU64,
    /// `/metrics` counters, handed on to the next `ExternalAuth` by [`Self::keep_stats`].
    stats: Arc<AuthServiceStats>,
    anonymous_subject: Arc<str>,
    no_roles: Arc<[String]>,
}

impl fmt::Debug for ExternalAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ExternalSettings` hides the URL's query, which may carry a key (the userinfo is
        // already split off into `basic`).
        f.debug_struct("ExternalAuth")
            .field("settings", &self.settings)
            .field("basic_auth", &self.basic.is_some())
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl ExternalAuth {
    /// Builds the client (with an empty connection pool) and an empty cache. No connection is
    /// made; for an `https` URL the system CA roots are read, as for upstreams.
    ///
    /// # Errors
    /// A URL that is not absolute `http`/`https`, a forward header that must never be forwarded
    /// (framing, hop-by-hop, `Host`, or one this module sets), or an `https` URL on a system
    /// without CA roots. No error echoes the URL's userinfo.
    pub(crate) fn new(settings: &ExternalSettings) -> Result<Self, KeyError> {
        let (url, basic) = split_userinfo(&settings.url)?;
        let host = host_header(&url)?;
        Ok(Self {
            host,
            basic,
            content_length: method_has_body(&settings.method),
            client: client(&url, settings.timeout)?,
            settings: ExternalSettings {
                url,
                forward_headers: forward_headers(&settings.forward_headers)?,
                copy_headers: dedup(&settings.copy_headers),
                ..settings.clone()
            },
            flights: SingleFlight::default(),
            calls: AtomicU64::new(0),
            stats: Arc::default(),
            anonymous_subject: Arc::from(ANONYMOUS),
            no_roles: Arc::from(Vec::new()),
        })
    }

    /// Asks the auth service about one request (NGINX `auth_request` semantics), answering from
    /// the cache or from a call already in flight for the same key when possible.
    pub(crate) async fn check(&self, request: &AuthRequest<'_>) -> ExternalDecision {
        if !self.caches() {
            return self.ask(request).await;
        }
        let key = self.key(request);
        for _ in 0..MAX_ROUNDS {
            match self.flights.join(key) {
                Turn::Hit(decision) => {
                    self.stats.hit();
                    return decision;
                }
                Turn::Lead(leader) => {
                    self.stats.miss();
                    let decision = self.ask(request).await;
                    leader.finish(&decision, self.ttl(&decision));
                    return decision;
                }
                Turn::Follow(flight) => {
                    if let Some(decision) =
                        SingleFlight::follow(flight, self.settings.timeout).await
                    {
                        self.stats.miss();
                        return decision;
                    }
                    tracing::debug!("external auth call abandoned by its leader; retrying");
                }
            }
        }
        self.stats.miss();
        let epoch = self.flights.epoch();
        let decision = self.ask(request).await;
        self.remember(key, &decision, epoch);
        decision
    }

    /// Whether the request carries a credential for the auth service: any configured forward
    /// header. Only such requests count towards `failure_limit` when denied.
    pub(crate) fn presented(&self, headers: &HeaderMap) -> bool {
        self.settings
            .forward_headers
            .iter()
            .any(|name| headers.contains_key(name))
    }

    /// Empties the decision cache and forgets the calls in flight (their answers are still
    /// delivered to the checks waiting for them, but not cached). Every reload calls this.
    pub(crate) fn clear(&self) {
        self.flights.clear();
    }

    /// Calls made to the auth service so far (for tests/metrics).
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Checks answered by waiting on another check's call instead of calling (for tests).
    #[cfg(test)]
    pub(crate) fn coalesced(&self) -> u64 {
        self.flights.coalesced()
    }

    /// Takes over the metrics of the `ExternalAuth` this one replaces on a reload.
    #[must_use]
    pub(crate) fn keep_stats(mut self, previous: Option<&ExternalAuth>) -> Self {
        if let Some(previous) = previous {
            self.stats = previous.stats.clone();
        }
        self
    }

    /// Cache hits and misses and call durations, for `/metrics`.
    pub(crate) fn stats(&self) -> &AuthServiceStats {
        &self.stats
    }

    /// Whether any decision can be cached; without caching, checks are not coalesced either (each
    /// request's method and URI reach the auth service).
    fn caches(&self) -> bool {
        !self.settings.cache_ttl.is_zero() || !self.settings.negative_cache_ttl.is_zero()
    }

    /// The cache key for `cache_key`: the forwarded credentials, plus for `"request"` the
    /// method, Host, normalised path and query and client IP. Every part is length-framed, so no
    /// two different requests hash alike.
    fn key(&self, request: &AuthRequest<'_>) -> Key {
        let mut hasher = Sha256::new();
        match self.settings.cache_key {
            CacheKey::Credential => hasher.update(b"gatehouse external auth v1\0"),
            CacheKey::Request => {
                hasher.update(b"gatehouse external auth request v2\0");
                framed(&mut hasher, request.method.as_str().as_bytes());
                match request.host {
                    Some(host) => {
                        hasher.update([1]);
                        framed(&mut hasher, host.as_bytes());
                    }
                    None => hasher.update([0]),
                }
                framed(&mut hasher, request.uri.as_bytes());
                framed(
                    &mut hasher,
                    request.client_ip.to_canonical().to_string().as_bytes(),
                );
            }
        }
        self.hash_credentials(&mut hasher, request.headers);
        hasher.finalize().into()
    }

    /// Feeds each configured forward header the client sent, its name and all its values.
    fn hash_credentials(&self, hasher: &mut Sha256, headers: &HeaderMap) {
        for name in &self.settings.forward_headers {
            let mut values = headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                continue;
            }
            framed(hasher, name.as_str().as_bytes());
            for value in values {
                hasher.update([1]);
                framed(hasher, value.as_bytes());
            }
            hasher.update([0]);
        }
    }

    /// The subject of an allow the service named nobody in: `external:` + 12 hex characters of
    /// a SHA-256 over the forwarded header values, or `None` when none was sent (anonymous).
    fn credential_subject(&self, headers: &HeaderMap) -> Option<Arc<str>> {
        if !self.presented(headers) {
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(b"gatehouse external subject v1\0");
        for name in &self.settings.forward_headers {
            for value in headers.get_all(name) {
                framed(&mut hasher, value.as_bytes());
            }
            // Ends each header's values, so moving a value between headers changes the hash.
            hasher.update([0]);
        }
        let digest = hex::encode(hasher.finalize());
        Some(Arc::from(format!(
            "external:{}",
            &digest[..SUBJECT_HASH_CHARS]
        )))
    }

    /// Caches `decision` if its kind is cacheable and no [`clear`](Self::clear) happened since
    /// `epoch`.
    fn remember(&self, key: Key, decision: &ExternalDecision, epoch: u64) {
        self.flights
            .remember(key, decision, self.ttl(decision), epoch);
    }

    /// How long `decision` may be cached (zero: not at all).
    fn ttl(&self, decision: &ExternalDecision) -> Duration {
        match decision {
            ExternalDecision::Allow { .. } => self.settings.cache_ttl,
            ExternalDecision::Deny(deny) if deny.is_refusal() => self.settings.negative_cache_ttl,
            ExternalDecision::Deny(_)
            | ExternalDecision::Unavailable
            | ExternalDecision::Unexpected(_) => Duration::ZERO,
        }
    }

    /// One auth call, bounded by `timeout` from connect to the end of a denial's body.
    async fn ask(&self, request: &AuthRequest<'_>) -> ExternalDecision {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(outgoing) = self.build(request) else {
            tracing::warn!("external auth request could not be built");
            return ExternalDecision::Unavailable;
        };
        let subject = self.credential_subject(request.headers);
        let started = Instant::now();
        let decision =
            match tokio::time::timeout(self.settings.timeout, self.exchange(outgoing, subject))
                .await
            {
                Ok(decision) => decision,
                Err(_elapsed) => {
                    tracing::warn!(
                        timeout_ms =
                            u64::try_from(self.settings.timeout.as_millis()).unwrap_or(u64::MAX),
                        "external auth service timed out"
                    );
                    ExternalDecision::Unavailable
                }
            };
        self.stats.observe(started.elapsed());
        decision
    }

    /// The auth request: no body, only the forwarded headers plus the `X-Forwarded-*` set, and
    /// the URL's Basic credential unless a forwarded `Authorization` takes its place.
    fn build(&self, request: &AuthRequest<'_>) -> Option<Request<Body>> {
        let mut headers = HeaderMap::with_capacity(self.settings.forward_headers.len() + 8);
        for name in &self.settings.forward_headers {
            for value in request.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(basic) = &self.basic
            && !headers.contains_key(AUTHORIZATION)
        {
            headers.insert(AUTHORIZATION, basic.clone());
        }
        headers.insert(HOST, self.host.clone());
        headers.insert(
            X_FORWARDED_METHOD,
            HeaderValue::from_str(request.method.as_str()).ok()?,
        );
        headers.insert(X_FORWARDED_URI, HeaderValue::from_str(request.uri).ok()?);
        if let Some(host) = request.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(X_FORWARDED_HOST, host);
        }
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_str(&request.client_ip.to_canonical().to_string()).ok()?,
        );
        headers.insert(X_REQUEST_ID, request.request_id.header().clone());
        if self.content_length {
            // hyper omits Content-Length for an empty body; POST/PUT/PATCH must say 0.
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let mut outgoing = Request::new(body::empty());
        *outgoing.method_mut() = self.settings.method.clone();
        *outgoing.uri_mut() = self.settings.url.clone();
        *outgoing.version_mut() = Version::HTTP_11;
        *outgoing.headers_mut() = headers;
        Some(outgoing)
    }

    /// Sends the request and classifies the answer; `subject` names an allowed caller the
    /// service does not name (`None`: no credential was sent).
    async fn exchange(
        &self,
        outgoing: Request<Body>,
        subject: Option<Arc<str>>,
    ) -> ExternalDecision {
        let response = match self.client.request(outgoing).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(error = %error, "external auth service unreachable");
                return ExternalDecision::Unavailable;
            }
        };
        let (parts, incoming) = response.into_parts();
        match parts.status.as_u16() {
            200..=299 => {
                drain_in_background(incoming, self.settings.timeout);
                self.allow(&parts.headers, subject)
            }
            401 | 403 | 429 => deny(parts.status, &parts.headers, incoming).await,
            500..=599 => {
                tracing::warn!(
                    status = parts.status.as_u16(),
                    "external auth service failed"
                );
                ExternalDecision::Unavailable
            }
            other => {
                tracing::warn!(status = other, "unexpected external auth service status");
                ExternalDecision::Unexpected(other)
            }
        }
    }

    /// An allow: the copy headers present and the identity they name, else the credential's
    /// `external:` subject, else anonymous.
    fn allow(&self, headers: &HeaderMap, credential_subject: Option<Arc<str>>) -> ExternalDecision {
        let mut copy = Vec::new();
        let mut named = None;
        for name in &self.settings.copy_headers {
            for value in headers.get_all(name) {
                if named.is_none() {
                    named = value
                        .to_str()
                        .ok()
                        .filter(|text| !text.is_empty())
                        .map(Arc::from);
                }
                copy.push((name.clone(), value.clone()));
            }
        }
        let anonymous = named.is_none() && credential_subject.is_none();
        let subject = named
            .or(credential_subject)
            .unwrap_or_else(|| self.anonymous_subject.clone());
        ExternalDecision::Allow {
            identity: Identity::new(subject, self.no_roles.clone(), AuthMethod::External, None),
            copy: Arc::from(copy),
            anonymous,
        }
    }
}

/// Feeds `bytes` to the hash with its length in front.
fn framed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// A denial: the status plus the headers and (bounded) body the client gets.
async fn deny(status: StatusCode, headers: &HeaderMap, incoming: Incoming) -> ExternalDecision {
    let mut kept = Vec::new();
    let body = match read_bounded(incoming, MAX_DENY_BODY).await {
        Ok(Some(body)) => {
            if let Some(value) = headers.get(CONTENT_TYPE) {
                kept.push((CONTENT_TYPE, value.clone()));
            }
            body
        }
        Ok(None) => {
            tracing::warn!(
                status = status.as_u16(),
                "external auth denial body over 64 KiB; passed on without it"
            );
            Bytes::new()
        }
        Err(error) => {
            tracing::warn!(error = %error, "external auth denial body broke off");
            return ExternalDecision::Unavailable;
        }
    };
    for value in headers.get_all(WWW_AUTHENTICATE) {
        kept.push((WWW_AUTHENTICATE, value.clone()));
    }
    if let Some(value) = headers.get(RETRY_AFTER) {
        kept.push((RETRY_AFTER, value.clone()));
    }
    ExternalDecision::Deny(Arc::new(PassThrough {
        status,
        headers: kept,
        body,
    }))
}

/// The whole body if it is at most `limit` bytes, `None` if it is longer.
async fn read_bounded(mut incoming: Incoming, limit: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buffer.len() + data.len() > limit {
                return Ok(None);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Some(buffer.freeze()))
}

/// Reads an allow's body off the connection so it can go back to the pool, without making the
/// client wait for it.
fn drain_in_background(incoming: Incoming, timeout: Duration) {
    if incoming.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, read_bounded(incoming, MAX_DENY_BODY)).await;
    });
}

/// Methods whose semantics anticipate a body, so an empty one is announced as `Content-Length: 0`.
fn method_has_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// The URL without its `user:password@`, and that userinfo as an `Authorization: Basic` value
/// (marked sensitive). Errors never echo the userinfo.
fn split_userinfo(url: &Uri) -> Result<(Uri, Option<HeaderValue>), KeyError> {
    let Some((userinfo, host)) = url.authority().and_then(|a| a.as_str().rsplit_once('@')) else {
        return Ok((url.clone(), None));
    };
    let mut parts = url.clone().into_parts();
    parts.authority = Some(host.parse().map_err(|_| url_error("invalid host"))?);
    let stripped = Uri::from_parts(parts).map_err(|_| url_error("invalid URL"))?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials = percent_decode(user);
    credentials.push(b':');
    credentials.extend(percent_decode(password));
    let mut basic = HeaderValue::from_str(&format!("Basic {}", base64(&credentials)))
        .map_err(|_| url_error("invalid user:password"))?;
    basic.set_sensitive(true);
    Ok((stripped, Some(basic)))
}

/// `%XX` escapes decoded (RFC 3986 userinfo); a `%` not followed by two hex digits stays as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Standard padded base64 (RFC 4648 §4), as `Authorization: Basic` wants it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Host` for the auth request: the URL's host and, if written, its port.
fn host_header(url: &Uri) -> Result<HeaderValue, KeyError> {
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(url_error("expected an http:// or https:// URL"));
    }
    let authority = url.authority().ok_or_else(|| url_error("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(url_error("user:password@ is not supported"));
    }
    HeaderValue::from_str(authority.as_str())
        .map_err(|_| url_error("host is not a valid Host header"))
}

/// The configured forward headers, deduplicated, refusing the ones that must never be forwarded.
fn forward_headers(names: &[HeaderName]) -> Result<Vec<HeaderName>, KeyError> {
    if let Some(bad) = names
        .iter()
        .find(|name| NEVER_FORWARDED.contains(&name.as_str()))
    {
        return Err(KeyError::new(
            "auth.external.forward_headers",
            format!("{bad} is never forwarded to the auth service"),
        ));
    }
    Ok(dedup(names))
}

/// `names` without repeats, first occurrence kept.
fn dedup(names: &[HeaderName]) -> Vec<HeaderName> {
    let mut unique: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    unique
}

/// The pooled keep-alive client; https via rustls (system roots) when the URL asks for it.
fn client(url: &Uri, timeout: Duration) -> Result<HttpsClient<Body>, KeyError> {
    let pool = Pool {
        connect_timeout: timeout,
        idle_timeout: Some(POOL_IDLE_TIMEOUT),
        max_idle_per_host: MAX_IDLE_CONNECTIONS,
    };
    crate::http::client::build("https client", Roots::system_for(url), pool)
        .map_err(|reason| KeyError::new(URL_KEY, reason))
}

/// The key every URL problem is reported at.
const URL_KEY: &str = "auth.external.url";

/// A problem with `auth.external.url`; `reason` never holds the URL's userinfo.
fn url_error(reason: &str) -> KeyError {
    KeyError::new(URL_KEY, reason)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cache_ttl_tests;
