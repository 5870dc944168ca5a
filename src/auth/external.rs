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
//! requests costs the auth service one call.
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use tokio::sync::watch;
// The cache's clock is tokio's: the same as `std::time::Instant` in the gateway, and one that
// tests can pause and advance to see a TTL end (`external/cache_ttl_tests.rs`).
use tokio::time::Instant;

use super::{AuthMethod, Identity};
use crate::config::{CacheKey, ExternalSettings};
use crate::error::PassThrough;
use crate::http::body::{self, Body};
use crate::http::client::{HttpsClient, Pool, Roots};
use crate::http::forwarded::{X_FORWARDED_FOR, X_REQUEST_ID};
use crate::observe::auth_service::AuthServiceStats;

/// `x-forwarded-method`: the client's method, for the auth service.
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `x-forwarded-uri`: the client's normalised path and query, for the auth service.
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `x-forwarded-host`: the Host the client asked for, for the auth service.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Most bytes of a denial body passed through to the client.
const MAX_DENY_BODY: usize = 64 * 1024;
/// Most cached allows; past it expired entries go, then the oldest.
const MAX_ALLOWS: usize = 10_000;
/// Most cached denials, kept apart from the allows so a flood of unknown credentials only ever
/// evicts other denials.
const MAX_DENIALS: usize = 10_000;
/// The subject of an allowed request that carried no credential.
const ANONYMOUS: &str = "anonymous";
/// Hex characters of the credential hash in an `external:` subject.
const SUBJECT_HASH_CHARS: usize = 12;
/// How many times a follower whose leader vanished (cancelled, panicked) tries to join or lead a
/// new call before calling on its own.
const MAX_ROUNDS: usize = 3;
/// Extra time a follower waits beyond `timeout` for a leader that is not being polled.
const FOLLOW_GRACE: Duration = Duration::from_millis(250);
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

/// The cache key: SHA-256 over what the decision may be reused for (see `cache_key`).
type Key = [u8; 32];
/// One in-flight auth call, as seen by the checks waiting for it.
type Flight = watch::Receiver<Option<ExternalDecision>>;

/// One request to authenticate: what the auth service is told about it.
pub struct AuthRequest<'a> {
    /// The client's method, sent as `X-Forwarded-Method`.
    pub method: &'a Method,
    /// The client's normalised path and query, sent as `X-Forwarded-Uri`.
    pub uri: &'a str,
    /// The Host the client asked for (with its port, as sent), sent as `X-Forwarded-Host`.
    pub host: Option<&'a str>,
    /// The client's headers; only the configured `forward_headers` are passed on.
    pub headers: &'a HeaderMap,
    /// The client IP, sent as `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The request id, sent as `X-Request-Id`.
    pub request_id: &'a HeaderValue,
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
            .field("request_id", self.request_id)
            .finish()
    }
}

/// What the auth service decided about one request.
#[derive(Clone)]
pub enum ExternalDecision {
    /// 2xx: allowed. `copy` holds the configured `copy_headers` present on the auth response (all
    /// values, in configuration order), to be set on the upstream request.
    Allow {
        /// The caller: `subject` from the first configured copy header present, else
        /// `external:` + a hash of the forwarded credential, else `anonymous`.
        identity: Identity,
        /// Auth response headers to set on the upstream request.
        copy: Arc<[(HeaderName, HeaderValue)]>,
        /// No credential was sent and the service named nobody: rate limits key on the IP.
        anonymous: bool,
    },
    /// 401, 403 or 429: returned to the client as the auth service sent it.
    Deny(Arc<PassThrough>),
    /// Timeout, refused or broken connection, or 5xx: the pipeline answers 503
    /// `auth service unavailable`.
    Unavailable,
    /// Any other status: the pipeline answers 500 `unexpected auth service status`.
    Unexpected(u16),
}

impl fmt::Debug for ExternalDecision {
    /// Copied header values are left out: an auth service may hand a credential to upstreams.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow {
                identity,
                copy,
                anonymous,
            } => f
                .debug_struct("Allow")
                .field("identity", identity)
                .field("copy", &HeaderNames(copy))
                .field("anonymous", anonymous)
                .finish(),
            Self::Deny(deny) => f.debug_tuple("Deny").field(deny).finish(),
            Self::Unavailable => f.write_str("Unavailable"),
            Self::Unexpected(status) => f.debug_tuple("Unexpected").field(status).finish(),
        }
    }
}

/// Debug-prints header names only.
struct HeaderNames<'a>(&'a [(HeaderName, HeaderValue)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
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
pub struct ExternalAuth {
    url: Uri,
    host: HeaderValue,
    /// `Authorization: Basic` from the URL's userinfo, marked sensitive.
    basic: Option<HeaderValue>,
    method: Method,
    content_length: bool,
    forward_headers: Vec<HeaderName>,
    copy_headers: Vec<HeaderName>,
    timeout: Duration,
    cache_ttl: Duration,
    negative_cache_ttl: Duration,
    cache_key: CacheKey,
    client: HttpsClient<Body>,
    state: Mutex<State>,
    calls: AtomicU64,
    coalesced: AtomicU64,
    /// `/metrics` counters, handed on to the next `ExternalAuth` by [`Self::keep_stats`].
    stats: Arc<AuthServiceStats>,
    anonymous_subject: Arc<str>,
    no_roles: Arc<[String]>,
}

impl fmt::Debug for ExternalAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query may carry a key, like the userinfo already split off.
        let url = crate::config::redact_url(&self.url.to_string());
        f.debug_struct("ExternalAuth")
            .field("url", &url)
            .field("basic_auth", &self.basic.is_some())
            .field("method", &self.method)
            .field("forward_headers", &self.forward_headers)
            .field("copy_headers", &self.copy_headers)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_cache_ttl", &self.negative_cache_ttl)
            .field("cache_key", &self.cache_key)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// The cache and the calls in flight, under one short-held lock so that "not cached" and "nobody
/// is asking" are decided together.
#[derive(Default)]
struct State {
    cache: Cache,
    in_flight: HashMap<Key, Flight>,
    /// Bumped by every [`ExternalAuth::clear`]: a call that started before it does not cache its
    /// answer after it.
    epoch: u64,
}

/// What [`ExternalAuth::join`] found.
enum Turn<'a> {
    /// A live cached decision.
    Hit(ExternalDecision),
    /// Nobody is asking: this check makes the call.
    Lead(Leader<'a>),
    /// Another check is asking: wait for its answer.
    Follow(Flight),
}

impl ExternalAuth {
    /// Builds the client (with an empty connection pool) and an empty cache. No connection is
    /// made; for an `https` URL the system CA roots are read, as for upstreams.
    ///
    /// # Errors
    /// A URL that is not absolute `http`/`https`, a forward header that must never be forwarded
    /// (framing, hop-by-hop, `Host`, or one this module sets), or an `https` URL on a system
    /// without CA roots. No error echoes the URL's userinfo.
    pub fn new(settings: &ExternalSettings) -> Result<Self, String> {
        let (url, basic) = split_userinfo(&settings.url)?;
        let host = host_header(&url)?;
        Ok(Self {
            host,
            basic,
            content_length: method_has_body(&settings.method),
            method: settings.method.clone(),
            forward_headers: forward_headers(&settings.forward_headers)?,
            copy_headers: dedup(&settings.copy_headers),
            timeout: settings.timeout,
            cache_ttl: settings.cache_ttl,
            negative_cache_ttl: settings.negative_cache_ttl,
            cache_key: settings.cache_key,
            client: client(&url, settings.timeout)?,
            url,
            state: Mutex::new(State::default()),
            calls: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            stats: Arc::default(),
            anonymous_subject: Arc::from(ANONYMOUS),
            no_roles: Arc::from(Vec::new()),
        })
    }

    /// Asks the auth service about one request (NGINX `auth_request` semantics), answering from
    /// the cache or from a call already in flight for the same key when possible.
    pub async fn check(&self, request: &AuthRequest<'_>) -> ExternalDecision {
        if !self.caches() {
            return self.ask(request).await;
        }
        let key = self.key(request);
        for _ in 0..MAX_ROUNDS {
            match self.join(key) {
                Turn::Hit(decision) => {
                    self.stats.hit();
                    return decision;
                }
                Turn::Lead(leader) => {
                    self.stats.miss();
                    let decision = self.ask(request).await;
                    leader.finish(&decision);
                    return decision;
                }
                Turn::Follow(flight) => {
                    if let Some(decision) = self.follow(flight).await {
                        self.stats.miss();
                        return decision;
                    }
                    tracing::debug!("external auth call abandoned by its leader; retrying");
                }
            }
        }
        self.stats.miss();
        let epoch = self.lock().epoch;
        let decision = self.ask(request).await;
        self.remember(key, &decision, epoch);
        decision
    }

    /// Whether the request carries a credential for the auth service: any configured forward
    /// header. Only such requests count towards `failure_limit` when denied.
    pub fn presented(&self, headers: &HeaderMap) -> bool {
        self.forward_headers
            .iter()
            .any(|name| headers.contains_key(name))
    }

    /// Empties the decision cache and forgets the calls in flight (their answers are still
    /// delivered to the checks waiting for them, but not cached). Every reload calls this.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.cache.clear();
        state.in_flight.clear();
        state.epoch = state.epoch.wrapping_add(1);
    }

    /// Calls made to the auth service so far (for tests/metrics).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Checks answered by waiting on another check's call instead of calling (for tests/metrics).
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Takes over the metrics of the `ExternalAuth` this one replaces on a reload.
    #[must_use]
    pub fn keep_stats(mut self, previous: Option<&ExternalAuth>) -> Self {
        if let Some(previous) = previous {
            self.stats = previous.stats.clone();
        }
        self
    }

    /// Cache hits and misses and call durations, for `/metrics`.
    pub fn stats(&self) -> &AuthServiceStats {
        &self.stats
    }

    /// Whether any decision can be cached; without caching, checks are not coalesced either (each
    /// request's method and URI reach the auth service).
    fn caches(&self) -> bool {
        !self.cache_ttl.is_zero() || !self.negative_cache_ttl.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache key for `cache_key`: the forwarded credentials, plus for `"request"` the
    /// method, Host, normalised path and query and client IP. Every part is length-framed, so no
    /// two different requests hash alike.
    fn key(&self, request: &AuthRequest<'_>) -> Key {
        let mut hasher = Sha256::new();
        match self.cache_key {
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
        for name in &self.forward_headers {
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
        for name in &self.forward_headers {
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

    /// Under one lock: a cached decision, or the call in flight to wait for, or leadership.
    fn join(&self, key: Key) -> Turn<'_> {
        let mut state = self.lock();
        if let Some(decision) = state.cache.get(&key, Instant::now()) {
            return Turn::Hit(decision);
        }
        if let Some(flight) = state.in_flight.get(&key) {
            // A closed channel means its leader is gone; lead a new call in its place.
            if flight.has_changed().is_ok() {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                return Turn::Follow(flight.clone());
            }
        }
        let (sender, flight) = watch::channel(None);
        state.in_flight.insert(key, flight);
        Turn::Lead(Leader {
            auth: self,
            key,
            epoch: state.epoch,
            sender,
            finished: false,
        })
    }

    /// Waits for the leader's decision; `None` if the leader went away without one.
    async fn follow(&self, mut flight: Flight) -> Option<ExternalDecision> {
        let wait = self.timeout.saturating_add(FOLLOW_GRACE);
        match tokio::time::timeout(wait, flight.wait_for(Option::is_some)).await {
            Ok(Ok(decision)) => decision.clone(),
            Ok(Err(_leader_gone)) => None,
            Err(_elapsed) => {
                tracing::warn!("external auth call in flight did not finish in time");
                Some(ExternalDecision::Unavailable)
            }
        }
    }

    /// Caches `decision` if its kind is cacheable and no [`clear`](Self::clear) happened since
    /// `epoch`.
    fn remember(&self, key: Key, decision: &ExternalDecision, epoch: u64) {
        let ttl = self.ttl(decision);
        if ttl.is_zero() {
            return;
        }
        let mut state = self.lock();
        if state.epoch == epoch {
            state
                .cache
                .insert(key, decision.clone(), ttl, Instant::now());
        }
    }

    /// How long `decision` may be cached (zero: not at all).
    fn ttl(&self, decision: &ExternalDecision) -> Duration {
        match decision {
            ExternalDecision::Allow { .. } => self.cache_ttl,
            ExternalDecision::Deny(deny) if deny.is_refusal() => self.negative_cache_ttl,
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
            match tokio::time::timeout(self.timeout, self.exchange(outgoing, subject)).await {
                Ok(decision) => decision,
                Err(_elapsed) => {
                    tracing::warn!(
                        timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
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
        let mut headers = HeaderMap::with_capacity(self.forward_headers.len() + 8);
        for name in &self.forward_headers {
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
        headers.insert(X_REQUEST_ID, request.request_id.clone());
        if self.content_length {
            // hyper omits Content-Length for an empty body; POST/PUT/PATCH must say 0.
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let mut outgoing = Request::new(body::empty());
        *outgoing.method_mut() = self.method.clone();
        *outgoing.uri_mut() = self.url.clone();
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
                drain_in_background(incoming, self.timeout);
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
        for name in &self.copy_headers {
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
            identity: Identity {
                subject,
                roles: self.no_roles.clone(),
                method: AuthMethod::External,
                expires: None,
            },
            copy: Arc::from(copy),
            anonymous,
        }
    }
}

/// The check that makes the auth call for a key. Dropping it without [`Leader::finish`] (the
/// check was cancelled or panicked) removes its in-flight entry and closes the channel, so its
/// followers stop waiting and try again.
struct Leader<'a> {
    auth: &'a ExternalAuth,
    key: Key,
    /// The cache epoch when the call started.
    epoch: u64,
    sender: watch::Sender<Option<ExternalDecision>>,
    finished: bool,
}

impl Leader<'_> {
    /// Caches the decision (unless the cache was cleared meanwhile), retires the in-flight entry
    /// (in one critical section, so a newcomer sees one or the other) and wakes the followers.
    fn finish(mut self, decision: &ExternalDecision) {
        let ttl = self.auth.ttl(decision);
        {
            let mut state = self.auth.lock();
            if !ttl.is_zero() && state.epoch == self.epoch {
                state
                    .cache
                    .insert(self.key, decision.clone(), ttl, Instant::now());
            }
            self.retire(&mut state);
        }
        self.finished = true;
        self.sender.send_replace(Some(decision.clone()));
    }

    /// Removes this leader's in-flight entry (and only this leader's).
    fn retire(&self, state: &mut State) {
        let ours = state
            .in_flight
            .get(&self.key)
            .is_some_and(|flight| flight.same_channel(&self.sender.subscribe()));
        if ours {
            state.in_flight.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.auth.lock();
            self.retire(&mut state);
        }
    }
}

/// A cached decision and when it stops counting.
struct Entry {
    decision: ExternalDecision,
    expires: Instant,
}

/// The decision cache: allows and denials apart, each bounded on its own, so a flood of unknown
/// credentials (denials) can only evict other denials, never a live allow.
struct Cache {
    allows: Bounded,
    denials: Bounded,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            allows: Bounded::new(MAX_ALLOWS),
            denials: Bounded::new(MAX_DENIALS),
        }
    }
}

impl Cache {
    /// The live decision for `key`.
    fn get(&mut self, key: &Key, now: Instant) -> Option<ExternalDecision> {
        self.allows
            .get(key, now)
            .or_else(|| self.denials.get(key, now))
    }

    /// Stores `decision` for `ttl` in the map of its kind.
    fn insert(&mut self, key: Key, decision: ExternalDecision, ttl: Duration, now: Instant) {
        match decision {
            ExternalDecision::Allow { .. } => {
                self.denials.remove(&key);
                self.allows.insert(key, decision, ttl, now);
            }
            _ => {
                self.allows.remove(&key);
                self.denials.insert(key, decision, ttl, now);
            }
        }
    }

    fn clear(&mut self) {
        self.allows.clear();
        self.denials.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.allows.entries.len() + self.denials.entries.len()
    }
}

/// A map of at most `capacity` entries that evicts the oldest first. Its entries share one TTL,
/// so insertion order is expiry order: the front of `order` is both the next to expire and the
/// oldest. `order` may hold stale pairs (a key removed or stored again); a pair counts only while
/// it matches the map's entry.
struct Bounded {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
}

impl Bounded {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The live decision for `key`; an expired one is dropped.
    fn get(&mut self, key: &Key, now: Instant) -> Option<ExternalDecision> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.decision.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Stores `decision` for `ttl`: expired entries go first, then, while full, the oldest.
    fn insert(&mut self, key: Key, decision: ExternalDecision, ttl: Duration, now: Instant) {
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        self.pop_while(|_, at| at <= now);
        if !self.entries.contains_key(&key) {
            let capacity = self.capacity;
            let mut evicted = 0usize;
            self.pop_while(|entries, _| {
                entries.len() >= capacity && {
                    evicted += 1;
                    true
                }
            });
            if evicted > 0 {
                tracing::debug!(evicted, "external auth decision cache full; oldest evicted");
            }
        }
        self.entries.insert(key, Entry { decision, expires });
        self.order.push_back((key, expires));
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact();
        }
    }

    fn remove(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Pops the front of `order` (dropping its entry if the pair is current) while `pop` says so.
    fn pop_while(&mut self, mut pop: impl FnMut(&HashMap<Key, Entry>, Instant) -> bool) {
        while let Some(&(key, at)) = self.order.front() {
            if !pop(&self.entries, at) {
                return;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.expires == at) {
                self.entries.remove(&key);
            }
        }
    }

    /// Rebuilds `order` from the live entries, dropping stale pairs.
    fn compact(&mut self) {
        let mut order: Vec<(Key, Instant)> = self
            .entries
            .iter()
            .map(|(key, entry)| (*key, entry.expires))
            .collect();
        order.sort_by_key(|(_, at)| *at);
        self.order = order.into();
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
fn split_userinfo(url: &Uri) -> Result<(Uri, Option<HeaderValue>), String> {
    let Some((userinfo, host)) = url.authority().and_then(|a| a.as_str().rsplit_once('@')) else {
        return Ok((url.clone(), None));
    };
    let mut parts = url.clone().into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|_| "auth.external.url: invalid host".to_owned())?,
    );
    let stripped =
        Uri::from_parts(parts).map_err(|_| "auth.external.url: invalid URL".to_owned())?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials = percent_decode(user);
    credentials.push(b':');
    credentials.extend(percent_decode(password));
    let mut basic = HeaderValue::from_str(&format!("Basic {}", base64(&credentials)))
        .map_err(|_| "auth.external.url: invalid user:password".to_owned())?;
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
fn host_header(url: &Uri) -> Result<HeaderValue, String> {
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err("auth.external.url: expected an http:// or https:// URL".to_owned());
    }
    let authority = url
        .authority()
        .ok_or_else(|| "auth.external.url: missing host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("auth.external.url: user:password@ is not supported".to_owned());
    }
    HeaderValue::from_str(authority.as_str())
        .map_err(|_| "auth.external.url: host is not a valid Host header".to_owned())
}

/// The configured forward headers, deduplicated, refusing the ones that must never be forwarded.
fn forward_headers(names: &[HeaderName]) -> Result<Vec<HeaderName>, String> {
    if let Some(bad) = names
        .iter()
        .find(|name| NEVER_FORWARDED.contains(&name.as_str()))
    {
        return Err(format!(
            "auth.external.forward_headers: {bad} is never forwarded to the auth service"
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
fn client(url: &Uri, timeout: Duration) -> Result<HttpsClient<Body>, String> {
    let pool = Pool {
        connect_timeout: timeout,
        idle_timeout: Some(POOL_IDLE_TIMEOUT),
        max_idle_per_host: MAX_IDLE_CONNECTIONS,
    };
    crate::http::client::build("auth.external.url", Roots::system_for(url), pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use http::Response;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// Bound on every wait in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    /// What the mock auth service received.
    #[derive(Debug, Clone)]
    struct Recorded {
        method: Method,
        uri: String,
        headers: HeaderMap,
        body: Bytes,
    }

    /// What the mock auth service answers.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        /// Hold the answer until [`Mock::release`].
        hold: bool,
    }

    impl Reply {
        fn status(status: u16) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: Bytes::new(),
                hold: false,
            }
        }

        fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_owned()));
            self
        }

        fn body(mut self, body: impl Into<Bytes>) -> Self {
            self.body = body.into();
            self
        }

        fn held(mut self) -> Self {
            self.hold = true;
            self
        }
    }

    struct MockState {
        reply: Box<dyn Fn(&Recorded) -> Reply + Send + Sync>,
        requests: Mutex<Vec<Recorded>>,
        count: AtomicUsize,
        arrived: mpsc::UnboundedSender<()>,
        release: watch::Receiver<bool>,
    }

    /// A real HTTP/1.1 auth service on 127.0.0.1 that records each request and answers as
    /// scripted.
    struct Mock {
        addr: SocketAddr,
        state: Arc<MockState>,
        arrivals: mpsc::UnboundedReceiver<()>,
        release: watch::Sender<bool>,
    }

    impl Mock {
        async fn start(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (arrived, arrivals) = mpsc::unbounded_channel();
            let (release, release_rx) = watch::channel(false);
            let state = Arc::new(MockState {
                reply: Box::new(reply),
                requests: Mutex::new(Vec::new()),
                count: AtomicUsize::new(0),
                arrived,
                release: release_rx,
            });
            let serving = state.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = serving.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| answer(state.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self {
                addr,
                state,
                arrivals,
                release,
            }
        }

        fn url(&self, path: &str) -> Uri {
            format!("http://{}{path}", self.addr).parse().unwrap()
        }

        fn count(&self) -> usize {
            self.state.count.load(Ordering::SeqCst)
        }

        fn requests(&self) -> Vec<Recorded> {
            self.state.requests.lock().unwrap().clone()
        }

        async fn arrival(&mut self) {
            tokio::time::timeout(WAIT, self.arrivals.recv())
                .await
                .expect("auth request arrives")
                .expect("mock running");
        }

        fn release(&self) {
            self.release.send_replace(true);
        }
    }

    async fn answer(
        state: Arc<MockState>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, incoming) = req.into_parts();
        let body = incoming
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let recorded = Recorded {
            method: parts.method,
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
        };
        let reply = (state.reply)(&recorded);
        state.requests.lock().unwrap().push(recorded);
        state.count.fetch_add(1, Ordering::SeqCst);
        let _ = state.arrived.send(());
        if reply.hold {
            let mut release = state.release.clone();
            let _ = release.wait_for(|released| *released).await;
        }
        let mut response = Response::new(Full::new(reply.body));
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        for (name, value) in reply.headers {
            response
                .headers_mut()
                .append(name, HeaderValue::from_str(&value).unwrap());
        }
        Ok(response)
    }

    fn settings(url: Uri) -> ExternalSettings {
        ExternalSettings {
            url,
            method: Method::GET,
            forward_headers: vec![
                HeaderName::from_static("x-token"),
                HeaderName::from_static("authorization"),
            ],
            copy_headers: vec![
                HeaderName::from_static("x-user"),
                HeaderName::from_static("x-tenant"),
            ],
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::ZERO,
            negative_cache_ttl: Duration::ZERO,
            cache_key: CacheKey::Request,
        }
    }

    fn cached(url: Uri) -> ExternalSettings {
        ExternalSettings {
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(60),
            ..settings(url)
        }
    }

    fn client_headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_str(token).unwrap());
        headers
    }

    async fn check_with(auth: &ExternalAuth, headers: &HeaderMap) -> ExternalDecision {
        check_on(auth, &Method::PUT, "/api/v1/thing?x=1", headers).await
    }

    async fn check_on(
        auth: &ExternalAuth,
        method: &Method,
        uri: &str,
        headers: &HeaderMap,
    ) -> ExternalDecision {
        let request_id = HeaderValue::from_static("req-1");
        let request = request(method, uri, headers, &request_id);
        tokio::time::timeout(WAIT, auth.check(&request))
            .await
            .expect("check finishes")
    }

    /// A request from 203.0.113.7 to `gateway.example`.
    fn request<'a>(
        method: &'a Method,
        uri: &'a str,
        headers: &'a HeaderMap,
        request_id: &'a HeaderValue,
    ) -> AuthRequest<'a> {
        AuthRequest {
            method,
            uri,
            host: Some("gateway.example"),
            headers,
            client_ip: "203.0.113.7".parse().unwrap(),
            request_id,
        }
    }

    async fn check(auth: &ExternalAuth, token: &str) -> ExternalDecision {
        check_with(auth, &client_headers(token)).await
    }

    fn denial(decision: &ExternalDecision) -> Arc<PassThrough> {
        match decision {
            ExternalDecision::Deny(deny) => deny.clone(),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Vec<&'a str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn allow_copies_configured_headers_and_names_the_subject() {
        let mock = Mock::start(|_| {
            Reply::status(200)
                .header("x-tenant", "t1")
                .header("x-user", "alice")
                .header("x-other", "not copied")
                .body("ok")
        })
        .await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let ExternalDecision::Allow {
            identity,
            copy,
            anonymous,
        } = check(&auth, "secret-token").await
        else {
            panic!("expected allow");
        };
        assert_eq!(&*identity.subject, "alice");
        assert!(identity.roles.is_empty());
        assert_eq!(identity.method, AuthMethod::External);
        assert_eq!(identity.expires, None);
        assert!(!anonymous);
        assert_eq!(header(&copy, "x-user"), ["alice"]);
        assert_eq!(header(&copy, "x-tenant"), ["t1"]);
        assert_eq!(copy.len(), 2, "only configured copy headers: {copy:?}");
    }

    /// The allowed identity and its anonymity.
    fn allowed(decision: &ExternalDecision) -> (String, bool) {
        match decision {
            ExternalDecision::Allow {
                identity,
                anonymous,
                ..
            } => (identity.subject.to_string(), *anonymous),
            other => panic!("expected allow, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn allow_without_copy_headers_is_subject_external_hash_of_the_credential() {
        let mock = Mock::start(|_| Reply::status(204)).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let decision = check(&auth, "t").await;
        let ExternalDecision::Allow { copy, .. } = &decision else {
            panic!("expected allow");
        };
        assert!(copy.is_empty());
        let (subject, anonymous) = allowed(&decision);
        assert!(!anonymous);
        let hash = subject.strip_prefix("external:").expect("external: prefix");
        assert_eq!(hash.len(), 12);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(
            !subject.contains('t') || !subject.ends_with(":t"),
            "never the credential"
        );

        // Same credential, same subject; another credential, another subject.
        assert_eq!(allowed(&check(&auth, "t").await).0, subject);
        let other = allowed(&check(&auth, "u").await).0;
        assert_ne!(other, subject);
        assert!(other.starts_with("external:"));
        // The value moved to another forward header is another credential.
        let mut as_authorization = HeaderMap::new();
        as_authorization.insert("authorization", HeaderValue::from_static("t"));
        assert_ne!(
            allowed(&check_with(&auth, &as_authorization).await).0,
            subject
        );
    }

    #[tokio::test]
    async fn allow_without_a_credential_is_anonymous_unless_the_service_names_someone() {
        let mock = Mock::start(|_| Reply::status(200)).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_static("not a forward header"));
        assert_eq!(
            allowed(&check_with(&auth, &headers).await),
            ("anonymous".to_owned(), true)
        );
        let mock = Mock::start(|_| Reply::status(200).header("x-user", "guest-7")).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        assert_eq!(
            allowed(&check_with(&auth, &HeaderMap::new()).await),
            ("guest-7".to_owned(), false)
        );
    }

    #[tokio::test]
    async fn unauthorized_passes_through_with_body_and_www_authenticate() {
        let body = r#"{"code":401,"message":"incorrect api key auth"}"#;
        let mock = Mock::start(move |_| {
            Reply::status(401)
                .header("content-type", "application/json")
                .header("www-authenticate", r#"Bearer realm="keptn""#)
                .header("x-internal", "dropped")
                .body(body)
        })
        .await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let deny = denial(&check(&auth, "wrong").await);
        assert_eq!(deny.status, StatusCode::UNAUTHORIZED);
        assert_eq!(deny.body, body);
        assert_eq!(
            header(&deny.headers, "www-authenticate"),
            [r#"Bearer realm="keptn""#]
        );
        assert_eq!(header(&deny.headers, "content-type"), ["application/json"]);
        assert!(header(&deny.headers, "x-internal").is_empty());

        let response = deny.to_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="keptn""#
        );
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let sent = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, body);
    }

    #[tokio::test]
    async fn forbidden_passes_through() {
        let mock = Mock::start(|_| Reply::status(403).body("no")).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let deny = denial(&check(&auth, "t").await);
        assert_eq!(deny.status, StatusCode::FORBIDDEN);
        assert_eq!(deny.body, "no");
    }

    #[tokio::test]
    async fn too_many_requests_keeps_retry_after_and_is_never_cached() {
        let mock = Mock::start(|_| Reply::status(429).header("retry-after", "7")).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        let deny = denial(&check(&auth, "t").await);
        assert_eq!(deny.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&deny.headers, "retry-after"), ["7"]);
        assert_eq!(deny.to_response().headers()[RETRY_AFTER], "7");
        denial(&check(&auth, "t").await);
        assert_eq!(mock.count(), 2);
    }

    #[tokio::test]
    async fn server_error_is_unavailable_and_never_cached() {
        let mock = Mock::start(|_| Reply::status(500)).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unavailable
        ));
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unavailable
        ));
        assert_eq!(mock.count(), 2);
    }

    #[tokio::test]
    async fn other_status_is_unexpected() {
        let mock = Mock::start(|_| Reply::status(418)).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unexpected(418)
        ));
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unexpected(418)
        ));
        assert_eq!(mock.count(), 2, "unexpected answers are not cached");
        let mock = Mock::start(|_| Reply::status(302).header("location", "/login")).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unexpected(302)
        ));
    }

    #[tokio::test]
    async fn slow_auth_service_is_unavailable_after_the_timeout() {
        let mut mock = Mock::start(|_| Reply::status(200).held()).await;
        let auth = ExternalAuth::new(&ExternalSettings {
            timeout: Duration::from_millis(200),
            ..settings(mock.url("/v1/auth"))
        })
        .unwrap();
        let started = Instant::now();
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unavailable
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        mock.arrival().await;
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/v1/auth").parse().unwrap();
        let auth = ExternalAuth::new(&settings(url)).unwrap();
        assert!(matches!(
            check(&auth, "t").await,
            ExternalDecision::Unavailable
        ));
        assert_eq!(auth.calls(), 1);
    }

    #[tokio::test]
    async fn auth_request_has_no_body_and_carries_forwarded_headers() {
        let mock = Mock::start(|_| Reply::status(200)).await;
        let auth = ExternalAuth::new(&ExternalSettings {
            method: Method::POST,
            ..settings(mock.url("/v1/auth?via=gatehouse"))
        })
        .unwrap();
        let mut headers = client_headers("first");
        headers.append("x-token", HeaderValue::from_static("second"));
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("cookie", HeaderValue::from_static("session=not-forwarded"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("connection", HeaderValue::from_static("upgrade"));
        headers.insert("content-length", HeaderValue::from_static("5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.insert("host", HeaderValue::from_static("gateway.example"));
        assert!(matches!(
            check_with(&auth, &headers).await,
            ExternalDecision::Allow { .. }
        ));

        let [seen] = &mock.requests()[..] else {
            panic!("one auth request expected");
        };
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.uri, "/v1/auth?via=gatehouse");
        assert!(seen.body.is_empty());
        let h = &seen.headers;
        assert_eq!(h["content-length"], "0");
        for absent in ["transfer-encoding", "upgrade", "connection", "cookie"] {
            assert!(!h.contains_key(absent), "{absent} must not be sent: {h:?}");
        }
        let tokens: Vec<_> = h.get_all("x-token").iter().collect();
        assert_eq!(tokens, ["first", "second"]);
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["x-forwarded-method"], "PUT");
        assert_eq!(h["x-forwarded-uri"], "/api/v1/thing?x=1");
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-request-id"], "req-1");
        assert_eq!(h["host"], mock.addr.to_string());
    }

    #[tokio::test]
    async fn get_auth_request_sends_no_content_length() {
        let mock = Mock::start(|_| Reply::status(200)).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        check(&auth, "t").await;
        let [seen] = &mock.requests()[..] else {
            panic!("one auth request expected");
        };
        assert_eq!(seen.method, Method::GET);
        assert!(!seen.headers.contains_key("content-length"));
        assert!(!seen.headers.contains_key("transfer-encoding"));
        assert!(seen.body.is_empty());
    }

    #[tokio::test]
    async fn allow_is_cached_per_credential() {
        let mock = Mock::start(|_| Reply::status(200).header("x-user", "bob")).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        let first = check(&auth, "token-a").await;
        let second = check(&auth, "token-a").await;
        assert_eq!(mock.count(), 1);
        assert_eq!(auth.calls(), 1);
        for decision in [first, second] {
            assert_eq!(allowed(&decision).0, "bob");
        }
        check(&auth, "token-b").await;
        assert_eq!(
            mock.count(),
            2,
            "different credentials are asked about separately"
        );
    }

    #[tokio::test]
    async fn unauthorized_is_negatively_cached() {
        let mock = Mock::start(|_| Reply::status(401).body("nope")).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        let first = denial(&check(&auth, "bad").await);
        let second = denial(&check(&auth, "bad").await);
        assert_eq!(mock.count(), 1);
        assert_eq!(second.body, "nope");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[tokio::test]
    async fn zero_ttls_cache_nothing() {
        let mock = Mock::start(|r| match r.headers.get("x-token") {
            Some(token) if token == "good" => Reply::status(200),
            _ => Reply::status(401),
        })
        .await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        for token in ["good", "good", "bad", "bad"] {
            check(&auth, token).await;
        }
        assert_eq!(mock.count(), 4);
    }

    #[tokio::test]
    async fn allow_only_ttl_does_not_cache_denials() {
        let mock = Mock::start(|_| Reply::status(403)).await;
        let auth = ExternalAuth::new(&ExternalSettings {
            negative_cache_ttl: Duration::ZERO,
            ..cached(mock.url("/v1/auth"))
        })
        .unwrap();
        denial(&check(&auth, "t").await);
        denial(&check(&auth, "t").await);
        assert_eq!(mock.count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_identical_new_credentials_makes_one_call() {
        let mut mock = Mock::start(|_| Reply::status(200).header("x-user", "carol").held()).await;
        let auth = Arc::new(ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap());
        let checks: Vec<_> = (0..20)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { check(&auth, "fresh-token").await })
            })
            .collect();
        mock.arrival().await;
        wait_until(|| auth.coalesced() == 19).await;
        mock.release();
        for task in checks {
            let decision = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
            assert_eq!(allowed(&decision).0, "carol");
        }
        assert_eq!(mock.count(), 1);
        assert_eq!(auth.calls(), 1);
        assert!(auth.lock().in_flight.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_leader_does_not_wedge_its_followers() {
        let mut mock = Mock::start(|_| Reply::status(200).held()).await;
        let auth = Arc::new(ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap());
        let leader = tokio::spawn({
            let auth = auth.clone();
            async move { check(&auth, "t").await }
        });
        mock.arrival().await;
        let follower = tokio::spawn({
            let auth = auth.clone();
            async move { check(&auth, "t").await }
        });
        wait_until(|| auth.coalesced() == 1).await;
        leader.abort();
        // The follower takes over and asks itself.
        mock.arrival().await;
        mock.release();
        let decision = tokio::time::timeout(WAIT, follower).await.unwrap().unwrap();
        assert!(matches!(decision, ExternalDecision::Allow { .. }));
        assert_eq!(auth.calls(), 2);
        assert!(auth.lock().in_flight.is_empty());
    }

    /// Yields until `ready` holds, bounded by [`WAIT`].
    async fn wait_until(ready: impl Fn() -> bool) {
        tokio::time::timeout(WAIT, async {
            while !ready() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("condition reached in time");
    }

    #[tokio::test]
    async fn oversized_denial_body_is_dropped_but_the_status_kept() {
        let mock = Mock::start(|_| {
            Reply::status(403)
                .header("content-type", "text/plain")
                .body(vec![b'x'; MAX_DENY_BODY + 1])
        })
        .await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        let deny = denial(&check(&auth, "t").await);
        assert_eq!(deny.status, StatusCode::FORBIDDEN);
        assert!(deny.body.is_empty());
        assert!(header(&deny.headers, "content-type").is_empty());
        let mock = Mock::start(|_| Reply::status(403).body(vec![b'x'; MAX_DENY_BODY])).await;
        let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
        assert_eq!(denial(&check(&auth, "t").await).body.len(), MAX_DENY_BODY);
    }

    /// The key of a GET /x from 203.0.113.7 to gateway.example with `headers`.
    fn key_of(auth: &ExternalAuth, headers: &HeaderMap) -> Key {
        let request_id = HeaderValue::from_static("rid");
        auth.key(&request(&Method::GET, "/x", headers, &request_id))
    }

    #[test]
    fn keys_depend_on_names_and_values_not_on_other_headers() {
        for cache_key in [CacheKey::Request, CacheKey::Credential] {
            let auth = ExternalAuth::new(&ExternalSettings {
                cache_key,
                ..settings("http://127.0.0.1:1/".parse().unwrap())
            })
            .unwrap();
            let key = |headers: &HeaderMap| key_of(&auth, headers);
            let a = client_headers("abc");
            let mut b = client_headers("abc");
            b.insert("cookie", HeaderValue::from_static("unrelated"));
            assert_eq!(key(&a), key(&b));
            assert_ne!(key(&a), key(&client_headers("abd")));
            let mut as_bearer = HeaderMap::new();
            as_bearer.insert("authorization", HeaderValue::from_static("abc"));
            assert_ne!(key(&a), key(&as_bearer));
            let mut split = client_headers("ab");
            split.append("x-token", HeaderValue::from_static("c"));
            assert_ne!(key(&a), key(&split));
            assert_ne!(key(&a), key(&HeaderMap::new()));
        }
    }

    #[test]
    fn request_keys_cover_everything_the_service_saw_and_credential_keys_only_the_credential() {
        let url: Uri = "http://127.0.0.1:1/".parse().unwrap();
        let by_request = ExternalAuth::new(&settings(url.clone())).unwrap();
        let by_credential = ExternalAuth::new(&ExternalSettings {
            cache_key: CacheKey::Credential,
            ..settings(url)
        })
        .unwrap();
        let headers = client_headers("abc");
        let rid = HeaderValue::from_static("rid");
        let base = request(&Method::GET, "/reports", &headers, &rid);
        let variants = [
            AuthRequest {
                method: &Method::DELETE,
                ..request(&Method::GET, "/reports", &headers, &rid)
            },
            request(&Method::GET, "/admin", &headers, &rid),
            request(&Method::GET, "/reports?all=1", &headers, &rid),
            AuthRequest {
                host: Some("other.example"),
                ..request(&Method::GET, "/reports", &headers, &rid)
            },
            AuthRequest {
                host: None,
                ..request(&Method::GET, "/reports", &headers, &rid)
            },
            AuthRequest {
                client_ip: "198.51.100.1".parse().unwrap(),
                ..request(&Method::GET, "/reports", &headers, &rid)
            },
        ];
        for variant in &variants {
            assert_ne!(
                by_request.key(&base),
                by_request.key(variant),
                "{variant:?}"
            );
            assert_eq!(
                by_credential.key(&base),
                by_credential.key(variant),
                "{variant:?}"
            );
        }
        let other_id = HeaderValue::from_static("another request id");
        let same = request(&Method::GET, "/reports", &headers, &other_id);
        assert_eq!(
            by_request.key(&base),
            by_request.key(&same),
            "request ids differ always"
        );
    }

    #[tokio::test]
    async fn request_mode_asks_again_for_another_method_or_path() {
        let mock = Mock::start(|r| match r.headers.get("x-forwarded-method") {
            Some(method) if method == "GET" => Reply::status(200),
            _ => Reply::status(403),
        })
        .await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        let headers = client_headers("t");
        let get = check_on(&auth, &Method::GET, "/reports", &headers).await;
        assert!(matches!(get, ExternalDecision::Allow { .. }));
        let delete = check_on(&auth, &Method::DELETE, "/admin", &headers).await;
        assert_eq!(denial(&delete).status, StatusCode::FORBIDDEN);
        check_on(&auth, &Method::GET, "/reports", &headers).await;
        check_on(&auth, &Method::DELETE, "/admin", &headers).await;
        assert_eq!(mock.count(), 2, "each decision cached for its own request");
    }

    #[tokio::test]
    async fn clear_empties_the_cache_and_a_call_in_flight_does_not_refill_it() {
        let mock = Mock::start(|_| Reply::status(200)).await;
        let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
        check(&auth, "t").await;
        check(&auth, "t").await;
        assert_eq!(mock.count(), 1);
        auth.clear();
        check(&auth, "t").await;
        assert_eq!(mock.count(), 2, "cleared");

        // A call that started before a clear delivers its answer but does not cache it.
        let mut held = Mock::start(|_| Reply::status(200).held()).await;
        let auth = Arc::new(ExternalAuth::new(&cached(held.url("/v1/auth"))).unwrap());
        let first = tokio::spawn({
            let auth = auth.clone();
            async move { check(&auth, "t").await }
        });
        held.arrival().await;
        auth.clear();
        held.release();
        let decision = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
        assert!(matches!(decision, ExternalDecision::Allow { .. }));
        assert_eq!(auth.lock().cache.len(), 0);
        check(&auth, "t").await;
        assert_eq!(held.count(), 2);
    }

    fn key(i: usize) -> Key {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        key
    }

    pub(super) fn allow_decision() -> ExternalDecision {
        ExternalDecision::Allow {
            identity: Identity {
                subject: Arc::from("alice"),
                roles: Arc::from(Vec::new()),
                method: AuthMethod::External,
                expires: None,
            },
            copy: Arc::from(Vec::new()),
            anonymous: false,
        }
    }

    fn deny_decision() -> ExternalDecision {
        ExternalDecision::Deny(Arc::new(PassThrough {
            status: StatusCode::UNAUTHORIZED,
            headers: Vec::new(),
            body: Bytes::new(),
        }))
    }

    #[test]
    fn bounded_map_drops_expired_entries_then_the_oldest() {
        let now = Instant::now();
        let mut map = Bounded::new(4);
        let ttl = Duration::from_secs(60);
        for i in 0..4 {
            map.insert(
                key(i),
                deny_decision(),
                ttl,
                now + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(map.entries.len(), 4);
        // Full of live entries: the oldest goes.
        map.insert(key(4), deny_decision(), ttl, now + Duration::from_secs(4));
        assert_eq!(map.entries.len(), 4);
        let at = now + Duration::from_secs(5);
        assert!(map.get(&key(0), at).is_none());
        for i in 1..=4 {
            assert!(map.get(&key(i), at).is_some(), "{i}");
        }
        // Later, expired entries go before any live one.
        let later = now + Duration::from_secs(62);
        map.insert(key(5), deny_decision(), ttl, later);
        assert_eq!(map.entries.len(), 3, "keys 1 and 2 expired");
        assert!(map.get(&key(3), later).is_some());
        assert!(map.get(&key(5), later).is_some());
        // Storing a key again many times keeps the order queue bounded.
        for _ in 0..100 {
            map.insert(key(5), deny_decision(), ttl, later);
        }
        assert!(map.order.len() <= 8, "{}", map.order.len());
        assert!(map.get(&key(5), later).is_some());
        assert!(map.get(&key(4), later).is_some());
        // Expired entries are not served.
        assert!(map.get(&key(5), later + ttl).is_none());
    }

    #[test]
    fn a_flood_of_denials_never_evicts_an_allow() {
        let now = Instant::now();
        let mut cache = Cache::default();
        let ttl = Duration::from_secs(60);
        cache.insert(key(usize::MAX), allow_decision(), ttl, now);
        for i in 0..MAX_DENIALS * 2 + 1 {
            cache.insert(key(i), deny_decision(), ttl, now);
        }
        assert!(matches!(
            cache.get(&key(usize::MAX), now),
            Some(ExternalDecision::Allow { .. })
        ));
        assert_eq!(cache.len(), MAX_DENIALS + 1);
        assert!(cache.get(&key(0), now).is_none(), "the oldest denials went");
        assert!(cache.get(&key(MAX_DENIALS * 2), now).is_some());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn new_refuses_unforwardable_headers() {
        for bad in [
            "content-length",
            "host",
            "connection",
            "upgrade",
            "x-forwarded-for",
            "x-forwarded-host",
        ] {
            let mut s = settings("http://127.0.0.1:1/".parse().unwrap());
            s.forward_headers.push(HeaderName::from_static(bad));
            let error = ExternalAuth::new(&s).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn base64_and_percent_decoding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(percent_decode("p%40ss%3Aw%2fd"), b"p@ss:w/d");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    }

    #[tokio::test]
    async fn url_userinfo_is_sent_as_basic_auth_unless_the_client_sends_authorization() {
        let mock = Mock::start(|_| Reply::status(200)).await;
        let url = format!("http://gate%40house:s3cr%3At@{}/v1/auth?x=1", mock.addr);
        let auth = ExternalAuth::new(&settings(url.parse().unwrap())).unwrap();
        check(&auth, "t").await;
        let mut with_authorization = client_headers("t");
        with_authorization.insert("authorization", HeaderValue::from_static("Bearer client"));
        check_with(&auth, &with_authorization).await;

        let seen = mock.requests();
        assert_eq!(seen.len(), 2);
        // base64("gate@house:s3cr:t")
        assert_eq!(
            seen[0].headers["authorization"],
            format!("Basic {}", base64(b"gate@house:s3cr:t"))
        );
        assert_eq!(seen[0].uri, "/v1/auth?x=1");
        assert_eq!(seen[0].headers["host"], mock.addr.to_string());
        let authorizations: Vec<_> = seen[1].headers.get_all("authorization").iter().collect();
        assert_eq!(
            authorizations,
            ["Bearer client"],
            "the client's credential is judged"
        );

        let text = format!("{auth:?}");
        assert!(
            !text.contains("s3cr") && !text.contains("gate") && !text.contains("x=1"),
            "{text}"
        );
    }

    #[test]
    fn settings_debug_hides_the_url_userinfo_and_query() {
        let s = settings(
            "http://user:pw-secret@auth:9000/v1/auth?key=k3y"
                .parse()
                .unwrap(),
        );
        let text = format!("{s:?}");
        // The one redaction used everywhere (`config::redact_url`): user kept, password and
        // query hidden.
        assert!(
            text.contains("http://user:***@auth:9000/v1/auth?***"),
            "{text}"
        );
        assert!(
            !text.contains("pw-secret") && !text.contains("k3y"),
            "{text}"
        );
    }

    #[test]
    fn debug_output_never_shows_header_values() {
        let headers = client_headers("super-secret");
        let request_id = HeaderValue::from_static("rid");
        let request = AuthRequest {
            method: &Method::GET,
            uri: "/x?token=query-secret",
            host: Some("gateway.example"),
            headers: &headers,
            client_ip: "127.0.0.1".parse().unwrap(),
            request_id: &request_id,
        };
        let text = format!("{request:?}");
        assert!(
            !text.contains("super-secret") && !text.contains("query-secret"),
            "{text}"
        );
        let allow = ExternalDecision::Allow {
            identity: Identity {
                subject: Arc::from("alice"),
                roles: Arc::from(Vec::new()),
                method: AuthMethod::External,
                expires: None,
            },
            copy: Arc::from(vec![(
                HeaderName::from_static("x-upstream-key"),
                HeaderValue::from_static("copied-secret"),
            )]),
            anonymous: false,
        };
        let text = format!("{allow:?}");
        assert!(
            text.contains("x-upstream-key") && !text.contains("copied-secret"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod cache_ttl_tests;
