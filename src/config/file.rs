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
pub(crate) enum SizeFile {
    /// A plain byte count.
    Bytes(u64),
    /// A number with a unit, parsed by [`super::units::parse_size`].
    Text(String),
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GatewayFile {
    /// `[server]`
    pub(crate) server: ServerFile,
    /// `[limits]`
    pub(crate) limits: LimitsFile,
    /// `[tls]`
    pub(crate) tls: TlsFile,
    /// `[auth]`, with its optional `jwt`, `external` and `session` tables.
    pub(crate) auth: AuthFile,
    /// `[rate_limits.NAME]` policies and the optional `[rate_limits.backend]`.
    pub(crate) rate_limits: BTreeMap<String, toml::Value>,
    /// `[audit]`
    pub(crate) audit: Option<AuditFile>,
    /// `[[upstreams]]`
    pub(crate) upstreams: Vec<UpstreamFile>,
    /// `[[routes]]`
    pub(crate) routes: Vec<RouteFile>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServerFile {
    /// TLS listener address.
    pub(crate) listen: Option<String>,
    /// Optional cleartext listener address.
    pub(crate) plain_listen: Option<String>,
    /// `"redirect"` or `"serve"`.
    pub(crate) plain_mode: Option<String>,
    /// Admin listener address.
    pub(crate) admin_listen: Option<String>,
    /// CIDRs allowed to set `X-Forwarded-For`.
    pub(crate) trusted_proxies: Vec<String>,
    /// Send a `Server:` header.
    pub(crate) server_header: Option<bool>,
    /// Reload when a watched file changes (else only SIGHUP / POST /reload).
    pub(crate) watch_files: Option<bool>,
    /// `Strict-Transport-Security` max-age, a duration; `"0s"` turns it off.
    pub(crate) hsts: Option<String>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LimitsFile {
    /// Slowloris guard.
    pub(crate) header_read_timeout: Option<String>,
    /// Connection idle timeout.
    pub(crate) idle_timeout: Option<String>,
    /// Request header size limit.
    pub(crate) max_header_bytes: Option<SizeFile>,
    /// Request body size limit.
    pub(crate) max_body_bytes: Option<SizeFile>,
    /// Concurrent connection cap.
    pub(crate) max_connections: Option<u64>,
    /// Drain period after SIGTERM.
    pub(crate) drain_delay: Option<String>,
    /// Upper bound for in-flight requests to finish.
    pub(crate) shutdown_grace: Option<String>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TlsFile {
    /// PEM chain path.
    pub(crate) cert: Option<String>,
    /// PEM key path.
    pub(crate) key: Option<String>,
    /// Names for a generated self-signed certificate.
    pub(crate) self_signed_hosts: Option<Vec<String>>,
    /// `"1.2"` or `"1.3"`.
    pub(crate) min_version: Option<String>,
    /// Optional client CA bundle for mTLS.
    pub(crate) client_ca: Option<String>,
    /// `[[tls.sni]]`
    pub(crate) sni: Vec<SniFile>,
}

/// `[[tls.sni]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SniFile {
    /// Server names served with this certificate.
    pub(crate) hosts: Vec<String>,
    /// PEM chain path.
    pub(crate) cert: String,
    /// PEM key path.
    pub(crate) key: String,
}

/// `[auth]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuthFile {
    /// Token store path.
    pub(crate) tokens: Option<String>,
    /// Headers carrying a raw token.
    pub(crate) token_headers: Option<Vec<String>>,
    /// Global write gate.
    pub(crate) write_actions: Option<bool>,
    /// Failed credential attempts per client IP: `{ rate, burst }` or `"off"` (a string or a
    /// table, so it stays a raw value until validation).
    pub(crate) failure_limit: Option<toml::Value>,
    /// Pass credentials on to upstreams.
    pub(crate) forward_credentials: Option<bool>,
    /// `[auth.jwt]`
    pub(crate) jwt: Option<JwtFile>,
    /// `[auth.external]`
    pub(crate) external: Option<ExternalFile>,
    /// `[auth.session]`
    pub(crate) session: Option<SessionFile>,
    /// `[auth.mtls]`
    pub(crate) mtls: Option<MtlsFile>,
}

/// `[auth.mtls]`: roles for client-certificate subjects.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MtlsFile {
    /// `[[auth.mtls.roles]]`
    pub(crate) roles: Vec<MtlsRoleFile>,
}

/// `[[auth.mtls.roles]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MtlsRoleFile {
    /// Subject glob.
    pub(crate) subject: String,
    /// Roles granted to matching subjects.
    pub(crate) roles: Vec<String>,
}

/// `[auth.jwt]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JwtFile {
    /// Expected `iss`.
    pub(crate) issuer: Option<String>,
    /// Accepted `aud` values.
    pub(crate) audiences: Vec<String>,
    /// Algorithm allow-list.
    pub(crate) algorithms: Vec<String>,
    /// JWKS file path.
    pub(crate) jwks_file: Option<String>,
    /// JWKS URL.
    pub(crate) jwks_url: Option<String>,
    /// JWKS refresh period.
    pub(crate) jwks_refresh: Option<String>,
    /// HMAC secret path.
    pub(crate) hmac_secret_file: Option<String>,
    /// Claim holding roles.
    pub(crate) roles_claim: Option<String>,
    /// Claim holding the subject.
    pub(crate) subject_claim: Option<String>,
    /// Clock skew allowance.
    pub(crate) leeway: Option<String>,
}

/// `[auth.external]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ExternalFile {
    /// Auth endpoint.
    pub(crate) url: String,
    /// Method of the auth request.
    pub(crate) method: Option<String>,
    /// Client headers passed to the auth service.
    pub(crate) forward_headers: Vec<String>,
    /// Auth response headers copied upstream.
    pub(crate) copy_headers: Vec<String>,
    /// Auth call timeout.
    pub(crate) timeout: Option<String>,
    /// Allow decision cache lifetime.
    pub(crate) cache_ttl: Option<String>,
    /// Deny decision cache lifetime.
    pub(crate) negative_cache_ttl: Option<String>,
    /// `"request"` (default) or `"credential"`.
    pub(crate) cache_key: Option<String>,
}

/// `[auth.session]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SessionFile {
    /// Session signing secret path.
    pub(crate) secret_file: String,
    /// Session lifetime.
    pub(crate) ttl: Option<String>,
    /// Cookie name.
    pub(crate) cookie: Option<String>,
    /// Login/logout path prefix.
    pub(crate) path_prefix: Option<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditFile {
    /// Audit log path.
    pub(crate) path: String,
}

/// `[[upstreams]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UpstreamFile {
    /// Name routes refer to.
    pub(crate) name: String,
    /// `host:port` targets.
    pub(crate) targets: Vec<String>,
    /// `"http"` or `"https"`.
    pub(crate) scheme: Option<String>,
    /// CA bundle for https upstreams.
    pub(crate) ca: Option<String>,
    /// TCP connect timeout.
    pub(crate) connect_timeout: Option<String>,
    /// Time to response headers.
    pub(crate) response_timeout: Option<String>,
    /// Idle pooled connections per target.
    pub(crate) max_idle_per_target: Option<usize>,
    /// How long an idle pooled connection is kept.
    pub(crate) pool_idle_timeout: Option<String>,
    /// How long a refusing target is skipped.
    pub(crate) fail_cooldown: Option<String>,
}

/// `respond = { status, body, content_type }`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RespondFile {
    /// Status code.
    pub(crate) status: u16,
    /// Body text.
    pub(crate) body: String,
    /// Content type.
    pub(crate) content_type: Option<String>,
}

/// `[[routes]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RouteFile {
    /// Path prefix (or exact path).
    pub(crate) path: String,
    /// Match the path exactly.
    pub(crate) exact: bool,
    /// Host match.
    pub(crate) host: Option<String>,
    /// Allowed methods.
    pub(crate) methods: Option<Vec<String>>,
    /// Upstream name.
    pub(crate) upstream: Option<String>,
    /// Remove the matched prefix.
    pub(crate) strip_prefix: bool,
    /// Replace the matched prefix.
    pub(crate) rewrite: Option<String>,
    /// Redirect target.
    pub(crate) redirect: Option<String>,
    /// Redirect status.
    pub(crate) redirect_status: Option<u16>,
    /// Static answer.
    pub(crate) respond: Option<RespondFile>,
    /// Accepted credential kinds.
    pub(crate) auth: Option<Vec<String>>,
    /// Read roles.
    pub(crate) roles: Vec<String>,
    /// Write roles.
    pub(crate) write_roles: Option<Vec<String>>,
    /// Rate-limit policy name.
    pub(crate) rate_limit: Option<String>,
    /// Allow WebSocket upgrades.
    pub(crate) websocket: bool,
    /// WebSocket Origin allow-list.
    pub(crate) allowed_origins: Vec<String>,
    /// Method sent upstream instead of the client's.
    pub(crate) proxy_method: Option<String>,
    /// Send the client's body upstream.
    pub(crate) pass_request_body: Option<bool>,
}
