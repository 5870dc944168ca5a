//! The serde mirror of `gateway.toml`: the file as written, before validation.
//!
//! Everything here is permissive on purpose: units stay strings and references stay names, so that
//! [`super::validate`] can report every problem at once with its full key path. Unknown keys are
//! collected by `serde_ignored` in [`super::load`], not rejected here (`deny_unknown_fields` would
//! stop at the first one).

use std::collections::BTreeMap;

use serde::Deserialize;

/// A size as written: an integer number of bytes or a string such as `"64KiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeFile {
    /// A plain byte count.
    Bytes(u64),
    /// A number with a unit, parsed by [`super::units::parse_size`].
    Text(String),
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GatewayFile {
    /// `[server]`
    pub server: ServerFile,
    /// `[limits]`
    pub limits: LimitsFile,
    /// `[tls]`
    pub tls: TlsFile,
    /// `[auth]`, with its optional `jwt`, `external` and `session` tables.
    pub auth: AuthFile,
    /// `[rate_limits.NAME]` policies and the optional `[rate_limits.backend]`.
    pub rate_limits: BTreeMap<String, toml::Value>,
    /// `[audit]`
    pub audit: Option<AuditFile>,
    /// `[[upstreams]]`
    pub upstreams: Vec<UpstreamFile>,
    /// `[[routes]]`
    pub routes: Vec<RouteFile>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServerFile {
    /// TLS listener address.
    pub listen: Option<String>,
    /// Optional cleartext listener address.
    pub plain_listen: Option<String>,
    /// `"redirect"` or `"serve"`.
    pub plain_mode: Option<String>,
    /// Admin listener address.
    pub admin_listen: Option<String>,
    /// CIDRs allowed to set `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// Send a `Server:` header.
    pub server_header: Option<bool>,
    /// Reload when a watched file changes (else only SIGHUP / POST /reload).
    pub watch_files: Option<bool>,
    /// `Strict-Transport-Security` max-age, a duration; `"0s"` turns it off.
    pub hsts: Option<String>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LimitsFile {
    /// Slowloris guard.
    pub header_read_timeout: Option<String>,
    /// Connection idle timeout.
    pub idle_timeout: Option<String>,
    /// Request header size limit.
    pub max_header_bytes: Option<SizeFile>,
    /// Request body size limit.
    pub max_body_bytes: Option<SizeFile>,
    /// Concurrent connection cap.
    pub max_connections: Option<u64>,
    /// Drain period after SIGTERM.
    pub drain_delay: Option<String>,
    /// Upper bound for in-flight requests to finish.
    pub shutdown_grace: Option<String>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsFile {
    /// PEM chain path.
    pub cert: Option<String>,
    /// PEM key path.
    pub key: Option<String>,
    /// Names for a generated self-signed certificate.
    pub self_signed_hosts: Option<Vec<String>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<String>,
    /// Optional client CA bundle for mTLS.
    pub client_ca: Option<String>,
    /// `[[tls.sni]]`
    pub sni: Vec<SniFile>,
}

/// `[[tls.sni]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SniFile {
    /// Server names served with this certificate.
    pub hosts: Vec<String>,
    /// PEM chain path.
    pub cert: String,
    /// PEM key path.
    pub key: String,
}

/// `[auth]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthFile {
    /// Token store path.
    pub tokens: Option<String>,
    /// Headers carrying a raw token.
    pub token_headers: Option<Vec<String>>,
    /// Global write gate.
    pub write_actions: Option<bool>,
    /// Failed credential attempts per client IP: `{ rate, burst }` or `"off"` (a string or a
    /// table, so it stays a raw value until validation).
    pub failure_limit: Option<toml::Value>,
    /// Pass credentials on to upstreams.
    pub forward_credentials: Option<bool>,
    /// `[auth.jwt]`
    pub jwt: Option<JwtFile>,
    /// `[auth.external]`
    pub external: Option<ExternalFile>,
    /// `[auth.session]`
    pub session: Option<SessionFile>,
    /// `[auth.mtls]`
    pub mtls: Option<MtlsFile>,
}

/// `[auth.mtls]`: roles for client-certificate subjects.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MtlsFile {
    /// `[[auth.mtls.roles]]`
    pub roles: Vec<MtlsRoleFile>,
}

/// `[[auth.mtls.roles]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MtlsRoleFile {
    /// Subject glob.
    pub subject: String,
    /// Roles granted to matching subjects.
    pub roles: Vec<String>,
}

/// `[auth.jwt]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JwtFile {
    /// Expected `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Algorithm allow-list.
    pub algorithms: Vec<String>,
    /// JWKS file path.
    pub jwks_file: Option<String>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// JWKS refresh period.
    pub jwks_refresh: Option<String>,
    /// HMAC secret path.
    pub hmac_secret_file: Option<String>,
    /// Claim holding roles.
    pub roles_claim: Option<String>,
    /// Claim holding the subject.
    pub subject_claim: Option<String>,
    /// Clock skew allowance.
    pub leeway: Option<String>,
}

/// `[auth.external]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExternalFile {
    /// Auth endpoint.
    pub url: String,
    /// Method of the auth request.
    pub method: Option<String>,
    /// Client headers passed to the auth service.
    pub forward_headers: Vec<String>,
    /// Auth response headers copied upstream.
    pub copy_headers: Vec<String>,
    /// Auth call timeout.
    pub timeout: Option<String>,
    /// Allow decision cache lifetime.
    pub cache_ttl: Option<String>,
    /// Deny decision cache lifetime.
    pub negative_cache_ttl: Option<String>,
    /// `"request"` (default) or `"credential"`.
    pub cache_key: Option<String>,
}

/// `[auth.session]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SessionFile {
    /// Session signing secret path.
    pub secret_file: String,
    /// Session lifetime.
    pub ttl: Option<String>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Login/logout path prefix.
    pub path_prefix: Option<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditFile {
    /// Audit log path.
    pub path: String,
}

/// `[[upstreams]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamFile {
    /// Name routes refer to.
    pub name: String,
    /// `host:port` targets.
    pub targets: Vec<String>,
    /// `"http"` or `"https"`.
    pub scheme: Option<String>,
    /// CA bundle for https upstreams.
    pub ca: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: Option<String>,
    /// Time to response headers.
    pub response_timeout: Option<String>,
    /// Idle pooled connections per target.
    pub max_idle_per_target: Option<usize>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Option<String>,
    /// How long a refusing target is skipped.
    pub fail_cooldown: Option<String>,
}

/// `respond = { status, body, content_type }`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RespondFile {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
    /// Content type.
    pub content_type: Option<String>,
}

/// `[[routes]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouteFile {
    /// Path prefix (or exact path).
    pub path: String,
    /// Match the path exactly.
    pub exact: bool,
    /// Host match.
    pub host: Option<String>,
    /// Allowed methods.
    pub methods: Option<Vec<String>>,
    /// Upstream name.
    pub upstream: Option<String>,
    /// Remove the matched prefix.
    pub strip_prefix: bool,
    /// Replace the matched prefix.
    pub rewrite: Option<String>,
    /// Redirect target.
    pub redirect: Option<String>,
    /// Redirect status.
    pub redirect_status: Option<u16>,
    /// Static answer.
    pub respond: Option<RespondFile>,
    /// Accepted credential kinds.
    pub auth: Option<Vec<String>>,
    /// Read roles.
    pub roles: Vec<String>,
    /// Write roles.
    pub write_roles: Option<Vec<String>>,
    /// Rate-limit policy name.
    pub rate_limit: Option<String>,
    /// Allow WebSocket upgrades.
    pub websocket: bool,
    /// WebSocket Origin allow-list.
    pub allowed_origins: Vec<String>,
    /// Method sent upstream instead of the client's.
    pub proxy_method: Option<String>,
    /// Send the client's body upstream.
    pub pass_request_body: Option<bool>,
}
