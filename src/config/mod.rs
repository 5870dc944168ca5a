//! Configuration: [`load`] turns `gateway.toml` into a validated [`Config`].
//!
//! Two stages, as rust-rpxy does: [`file`] is the TOML as written (serde, permissive), and
//! [`validate`] converts it into the typed values the program uses (`Duration`, byte counts,
//! `SocketAddr`, resolved paths, route→upstream links). Every problem is collected — unknown keys
//! with their full key path, bad units, dangling references — and reported together, one
//! `file: key: reason` line each, like `nginx -t` but complete.

pub mod collect;
mod diagnose;
pub(crate) mod file;
mod load;
pub(crate) mod mtls;
mod redact;
#[cfg(test)]
pub(crate) mod route_fixture;
mod suggest;
pub(crate) mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

pub(crate) use diagnose::locate;
pub use load::{load, load_quiet, parse};
pub(crate) use redact::redact_url;
pub(crate) use suggest::did_you_mean;
pub use units::Rate;

/// The validated configuration. Paths are absolute (resolved against the config's folder).
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub(crate) path: PathBuf,
    /// `[server]`
    pub server: ServerConfig,
    /// `[limits]`
    pub limits: Limits,
    /// `[tls]`
    pub tls: TlsSettings,
    /// `[auth]`
    pub auth: AuthSettings,
    /// `[rate_limits.NAME]` policies by name.
    pub(crate) rate_limits: BTreeMap<String, RatePolicy>,
    /// `[rate_limits.backend]`
    pub(crate) rate_backend: Option<RateBackend>,
    /// `[audit] path`
    pub audit: Option<PathBuf>,
    /// `[[upstreams]]`, in file order.
    pub(crate) upstreams: Vec<UpstreamConfig>,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteConfig>,
    /// Problems that do not stop loading: sections for features not built yet. `check` prints
    /// them and [`load`] logs them, so nothing in the file is ignored silently.
    pub warnings: Vec<ConfigError>,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TLS listener.
    pub(crate) listen: SocketAddr,
    /// Optional cleartext listener.
    pub(crate) plain_listen: Option<SocketAddr>,
    /// What the cleartext listener does.
    pub(crate) plain_mode: PlainMode,
    /// Admin listener (health, readiness, metrics, config, reload).
    pub(crate) admin_listen: SocketAddr,
    /// Peers allowed to set `X-Forwarded-For`.
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// Send `Server: gatehouse`.
    pub(crate) server_header: bool,
    /// Reload on file changes; `false` leaves only SIGHUP and `POST /reload` (as NGINX does).
    pub(crate) watch_files: bool,
    /// `Strict-Transport-Security` value for responses on the TLS listener (`max-age=N`);
    /// `None` when `hsts = "0s"`.
    pub hsts: Option<HeaderValue>,
}

/// What the cleartext listener does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainMode {
    /// 308 to the same path on https.
    Redirect,
    /// Serve the same routes over cleartext.
    Serve,
}

/// `[limits]`
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for a request's headers to arrive (slowloris guard).
    pub(crate) header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Request header bytes (names + values) above this get 431.
    pub(crate) max_header_bytes: usize,
    /// Request bodies above this get 413, enforced while streaming.
    pub max_body_bytes: u64,
    /// Concurrent connections; further accepts wait for a free slot.
    pub(crate) max_connections: usize,
    /// After SIGTERM, keep accepting this long while `/readyz` says 503.
    pub(crate) drain_delay: Duration,
    /// Upper bound for in-flight requests to finish after the drain.
    pub(crate) shutdown_grace: Duration,
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Default certificate chain (PEM).
    pub cert: PathBuf,
    /// Default private key (PEM).
    pub(crate) key: PathBuf,
    /// Names for a self-signed certificate generated when `cert` and `key` are both missing.
    pub(crate) self_signed_hosts: Vec<String>,
    /// Lowest TLS version offered.
    pub(crate) min_version: TlsVersion,
    /// Client CA bundle for mTLS.
    pub(crate) client_ca: Option<PathBuf>,
    /// Extra certificates chosen by SNI.
    pub(crate) sni: Vec<SniCert>,
}

/// Lowest accepted TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// `[[tls.sni]]`
#[derive(Debug, Clone)]
pub(crate) struct SniCert {
    /// Lower-case server names (`*.example.com` allowed).
    pub(crate) hosts: Vec<String>,
    /// PEM chain.
    pub(crate) cert: PathBuf,
    /// PEM key.
    pub(crate) key: PathBuf,
}

/// `[auth]` and its sub-tables.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Token store path.
    pub(crate) tokens: Option<PathBuf>,
    /// Headers that carry a raw token (`Authorization: Bearer` is always read).
    pub(crate) token_headers: Vec<HeaderName>,
    /// `false` closes the global write gate.
    pub(crate) write_actions: bool,
    /// Failed credential attempts per client IP; `None` only for `failure_limit = "off"`.
    pub(crate) failure_limit: Option<RatePolicy>,
    /// Pass Authorization / token headers on to upstreams.
    pub(crate) forward_credentials: bool,
    /// `[auth.jwt]`
    pub(crate) jwt: Option<JwtSettings>,
    /// `[auth.external]`
    pub(crate) external: Option<ExternalSettings>,
    /// `[auth.session]`
    pub(crate) session: Option<SessionSettings>,
    /// `[auth.mtls]` role mapping; `Some` exactly when `[tls] client_ca` is set.
    pub mtls: Option<mtls::MtlsSettings>,
}

/// `[auth.jwt]`
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (empty: `aud` not checked).
    pub audiences: Vec<String>,
    /// Algorithm allow-list, upper-case names as in the JOSE registry.
    pub algorithms: Vec<String>,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// Background refresh period for `jwks_url`.
    pub jwks_refresh: Duration,
    /// HMAC secret for HS256/384/512.
    pub hmac_secret_file: Option<PathBuf>,
    /// Claim holding roles.
    pub roles_claim: String,
    /// Claim holding the subject.
    pub subject_claim: String,
    /// Clock skew allowance for `exp`/`nbf`.
    pub leeway: Duration,
}

/// `[auth.external]`
#[derive(Clone)]
pub struct ExternalSettings {
    /// Auth endpoint (http or https). May carry `user:password@` (sent as `Authorization: Basic`),
    /// so it is never printed whole: `Debug` shows it without the userinfo.
    pub(crate) url: http::Uri,
    /// Method of the auth request.
    pub(crate) method: Method,
    /// Client headers passed to the auth service.
    pub(crate) forward_headers: Vec<HeaderName>,
    /// Auth response headers copied onto the upstream request.
    pub(crate) copy_headers: Vec<HeaderName>,
    /// Auth call timeout.
    pub(crate) timeout: Duration,
    /// Allow-decision cache lifetime (zero: no cache).
    pub(crate) cache_ttl: Duration,
    /// Deny-decision cache lifetime.
    pub(crate) negative_cache_ttl: Duration,
    /// What a cached decision is reused for.
    pub(crate) cache_key: CacheKey,
}

/// The URL's userinfo (a password) never reaches a log through `{:?}`.
impl fmt::Debug for ExternalSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = redact_url(&self.url.to_string());
        f.debug_struct("ExternalSettings")
            .field("url", &shown)
            .field("method", &self.method)
            .field("forward_headers", &self.forward_headers)
            .field("copy_headers", &self.copy_headers)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_cache_ttl", &self.negative_cache_ttl)
            .field("cache_key", &self.cache_key)
            .finish()
    }
}

/// `[auth.external] cache_key`: what an external auth decision is reused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CacheKey {
    /// Same method, Host, normalised path + query, forwarded headers and client IP: everything
    /// the auth service saw.
    #[default]
    Request,
    /// Same forwarded headers, whatever the request: for services that decide on the credential
    /// alone.
    Credential,
}

/// `[auth.session]`
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Signing secret file.
    pub(crate) secret_file: PathBuf,
    /// Session lifetime.
    pub(crate) ttl: Duration,
    /// Cookie name.
    pub(crate) cookie: String,
    /// Login/session/logout path prefix.
    pub(crate) path_prefix: String,
}

/// A rate-limit policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RatePolicy {
    /// What the budget is counted per.
    pub key: RateKey,
    /// Sustained rate.
    pub rate: Rate,
    /// Bucket size: most requests admitted at once.
    pub burst: u32,
}

/// What a rate-limit budget is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The caller's identity, or the client IP when anonymous.
    Identity,
    /// The client IP.
    Ip,
    /// The route as a whole.
    Route,
}

/// `[rate_limits.backend]`
#[derive(Clone)]
pub struct RateBackend {
    /// Redis URL; may hold a password, so print it only through [`redact_url`].
    pub redis: String,
    /// Per-call timeout.
    pub timeout: Duration,
    /// What to do when Redis is down or slow.
    pub on_error: OnError,
}

/// The URL's password never reaches a log through `{:?}`.
impl fmt::Debug for RateBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBackend")
            .field("redis", &redact_url(&self.redis))
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .finish()
    }
}

/// Behaviour when the shared rate-limit backend fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Use this replica's local limiter.
    Local,
    /// Admit the request.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// `[[upstreams]]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamConfig {
    /// Name routes refer to and errors name.
    pub(crate) name: String,
    /// `host:port` targets, round robin.
    pub(crate) targets: Vec<String>,
    /// `true` for https upstreams.
    pub(crate) https: bool,
    /// CA bundle trusted for https upstreams (system roots when absent).
    pub(crate) ca: Option<PathBuf>,
    /// TCP connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Time to response headers.
    pub(crate) response_timeout: Duration,
    /// Idle pooled connections kept per target.
    pub(crate) max_idle_per_target: usize,
    /// How long an idle pooled connection is kept.
    pub(crate) pool_idle_timeout: Duration,
    /// How long a target that refused a connection is skipped.
    pub(crate) fail_cooldown: Duration,
}

/// `[[routes]]`
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Path prefix, or the exact path when `exact`.
    pub(crate) path: String,
    /// Match `path` exactly.
    pub(crate) exact: bool,
    /// Lower-case host (no port) this route is limited to.
    pub(crate) host: Option<String>,
    /// Methods allowed (others get 405).
    pub(crate) methods: Option<Vec<Method>>,
    /// What the route does.
    pub(crate) action: RouteAction,
    /// Accepted credential kinds; empty means public (`auth = ["public"]`, or a redirect or
    /// respond route). A route without `auth` gets every kind `[auth]` configures.
    pub(crate) auth: Vec<AuthKind>,
    /// Roles that may read.
    pub(crate) roles: Vec<String>,
    /// Roles that may write (defaults to `roles`).
    pub(crate) write_roles: Vec<String>,
    /// Rate-limit policy name.
    pub(crate) rate_limit: Option<String>,
    /// Allow WebSocket upgrades.
    pub(crate) websocket: bool,
    /// WebSocket Origin allow-list (empty: same origin only).
    pub(crate) allowed_origins: Vec<String>,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub(crate) enum RouteAction {
    /// Forward to an upstream.
    Proxy(ProxyAction),
    /// Answer with a redirect.
    Redirect {
        /// `Location`, as written.
        location: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
    /// Answer with a static body.
    Respond {
        /// Status code.
        status: u16,
        /// Body.
        body: String,
        /// Content type.
        content_type: String,
    },
}

/// How a route forwards.
#[derive(Debug, Clone)]
pub(crate) struct ProxyAction {
    /// Index into [`Config::upstreams`].
    pub(crate) upstream: usize,
    /// Remove the matched prefix.
    pub(crate) strip_prefix: bool,
    /// Replace the matched prefix with this.
    pub(crate) rewrite: Option<String>,
    /// Method sent upstream instead of the client's.
    pub(crate) proxy_method: Option<Method>,
    /// Send the client's body upstream.
    pub(crate) pass_request_body: bool,
}

/// A credential kind a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AuthKind {
    /// API token from the token store.
    Token,
    /// JWT verified by `[auth.jwt]`.
    Jwt,
    /// Session cookie.
    Session,
    /// Ask `[auth.external]`.
    External,
    /// Verified client certificate.
    Mtls,
}

impl AuthKind {
    /// The name as written in `auth = [...]`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Jwt => "jwt",
            Self::Session => "session",
            Self::External => "external",
            Self::Mtls => "mtls",
        }
    }
}

/// One configuration problem: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub(crate) file: PathBuf,
    /// Full key path, like `routes[2].upstream` (empty for whole-file problems).
    pub key: String,
    /// What is wrong, never containing a secret value.
    pub(crate) reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// Every problem found in one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in the order found.
    pub(crate) fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
