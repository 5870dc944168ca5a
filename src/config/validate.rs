//! Stage two of config loading: the serde mirror becomes a typed [`Config`], with every problem
//! collected (never stopping at the first) so `gatehouse check` can list them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use super::collect::Collector;
use super::file::{self, GatewayFile, SizeFile};
use super::redact::redact_url;
use super::units::{Rate, parse_duration, parse_rate, parse_size};
use super::{
    AuthKind, AuthSettings, Config, ConfigErrors, ExternalSettings, JwtSettings, Limits, OnError,
    PlainMode, ProxyAction, RateBackend, RateKey, RatePolicy, RouteAction, RouteConfig,
    ServerConfig, SessionSettings, SniCert, TlsSettings, TlsVersion, UpstreamConfig,
};

/// Converts with a [`Collector`] for the problems; `base` is the config's folder for relative
/// paths.
struct Checker {
    found: Collector,
    base: PathBuf,
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.found.error(key, reason);
    }

    /// A problem that does not stop loading but that an operator should see.
    fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.found.warn(key, reason);
    }

    /// The choice named by `value` among two; the first when unset or (with an error) unknown.
    fn one_of<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        unknown: &str,
        [(first, default), (second, other)]: [(&str, T); 2],
    ) -> T {
        match value {
            None => default,
            Some(name) if name == first => default,
            Some(name) if name == second => other,
            Some(name) => {
                self.error(
                    key,
                    format!("{unknown} {name:?}: expected {first:?} or {second:?}"),
                );
                default
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<&String>, default: Duration) -> Duration {
        match value.map(|text| parse_duration(text)) {
            None => default,
            Some(Ok(duration)) => duration,
            Some(Err(reason)) => {
                self.error(key, reason);
                default
            }
        }
    }

    fn size(&mut self, key: &str, value: Option<&SizeFile>, default: u64) -> u64 {
        match value {
            None => default,
            Some(SizeFile::Bytes(bytes)) => *bytes,
            Some(SizeFile::Text(text)) => parse_size(text).unwrap_or_else(|reason| {
                self.error(key, reason);
                default
            }),
        }
    }

    fn addr(&mut self, key: &str, value: Option<&String>, default: &str) -> Option<SocketAddr> {
        let text = value.map_or(default, String::as_str);
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    key,
                    format!("invalid address {text:?}: expected IP:PORT, like \"0.0.0.0:8443\""),
                );
                None
            }
        }
    }

    fn path(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }

    fn header_names(&mut self, key: &str, names: &[String]) -> Vec<HeaderName> {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()) {
                Ok(header) => out.push(header),
                Err(_) => self.error(
                    format!("{key}[{i}]"),
                    format!("invalid header name {name:?}"),
                ),
            }
        }
        out
    }

    fn method(&mut self, key: &str, name: &str) -> Option<Method> {
        match Method::from_bytes(name.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                self.error(key, format!("invalid method {name:?}"));
                None
            }
        }
    }
}

/// Converts the serde mirror into a [`Config`], or every problem found.
pub(super) fn build(
    path: &Path,
    raw: GatewayFile,
    unknown: Vec<String>,
) -> Result<Config, ConfigErrors> {
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut check = Checker {
        found: Collector::new(path),
        base,
    };
    for key in unknown {
        let reason = super::suggest::unknown_key(&key);
        check.error(key, reason);
    }
    let server = server(&mut check, &raw.server);
    let limits = limits(&mut check, &raw.limits);
    let tls = tls(&mut check, &raw.tls);
    let auth = auth(&mut check, &raw.auth, raw.tls.client_ca.is_some());
    let (rate_limits, rate_backend) = rate_limits(&mut check, &raw.rate_limits);
    let upstreams = upstreams(&mut check, &raw.upstreams);
    let routes = routes(&mut check, &raw.routes, &upstreams, &rate_limits, &auth);
    let audit = raw.audit.as_ref().map(|audit| check.path(&audit.path));
    let (errors, warnings) = check.found.into_parts();
    match (errors.is_empty(), server) {
        (true, Some(server)) => Ok(Config {
            path: path.to_owned(),
            server,
            limits,
            tls,
            auth,
            rate_limits,
            rate_backend,
            audit,
            upstreams,
            routes,
            warnings,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn server(check: &mut Checker, raw: &file::ServerFile) -> Option<ServerConfig> {
    let listen = check.addr("server.listen", raw.listen.as_ref(), "0.0.0.0:8443");
    let plain_listen = raw
        .plain_listen
        .as_ref()
        .and_then(|_| check.addr("server.plain_listen", raw.plain_listen.as_ref(), ""));
    let admin_listen = check.addr(
        "server.admin_listen",
        raw.admin_listen.as_ref(),
        "127.0.0.1:9901",
    );
    let plain_mode = check.one_of(
        "server.plain_mode",
        raw.plain_mode.as_deref(),
        "unknown mode",
        [
            ("redirect", PlainMode::Redirect),
            ("serve", PlainMode::Serve),
        ],
    );
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match parse_cidr(text) {
            Some(net) if net.prefix_len() == 0 => {
                check.warn(
                    format!("server.trusted_proxies[{i}]"),
                    format!("{text:?} trusts every address: any client can set X-Forwarded-For and choose its own client IP (rate limits, failure_limit, logs)"),
                );
                trusted_proxies.push(net);
            }
            Some(net) => trusted_proxies.push(net),
            None => check.error(
                format!("server.trusted_proxies[{i}]"),
                format!("invalid CIDR or IP {text:?}"),
            ),
        }
    }
    let hsts = hsts(check, raw.hsts.as_ref());
    Some(ServerConfig {
        listen: listen?,
        plain_listen,
        plain_mode,
        admin_listen: admin_listen?,
        trusted_proxies,
        server_header: raw.server_header.unwrap_or(false),
        watch_files: raw.watch_files.unwrap_or(true),
        hsts,
    })
}

/// Default HSTS max-age: one year, as the HSTS preload list asks.
const HSTS_DEFAULT: Duration = Duration::from_secs(365 * 86_400);

/// `Strict-Transport-Security: max-age=N` pre-rendered; `None` for `"0s"`.
fn hsts(check: &mut Checker, value: Option<&String>) -> Option<HeaderValue> {
    let max_age = check.duration("server.hsts", value, HSTS_DEFAULT).as_secs();
    if max_age == 0 {
        return None;
    }
    HeaderValue::from_str(&format!("max-age={max_age}")).ok()
}

/// Accepts `10.0.0.0/8` and a bare address (a /32 or /128).
fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn limits(check: &mut Checker, raw: &file::LimitsFile) -> Limits {
    let max_header_bytes = check.size(
        "limits.max_header_bytes",
        raw.max_header_bytes.as_ref(),
        64 * 1024,
    );
    if max_header_bytes < 1024 {
        check.error("limits.max_header_bytes", "must be at least 1KiB");
    }
    let max_connections = raw.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        check.error("limits.max_connections", "must be at least 1");
    }
    Limits {
        header_read_timeout: check.duration(
            "limits.header_read_timeout",
            raw.header_read_timeout.as_ref(),
            Duration::from_secs(10),
        ),
        idle_timeout: check.duration(
            "limits.idle_timeout",
            raw.idle_timeout.as_ref(),
            Duration::from_secs(60),
        ),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_body_bytes: check.size(
            "limits.max_body_bytes",
            raw.max_body_bytes.as_ref(),
            10 * 1024 * 1024,
        ),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        drain_delay: check.duration(
            "limits.drain_delay",
            raw.drain_delay.as_ref(),
            Duration::from_secs(2),
        ),
        shutdown_grace: check.duration(
            "limits.shutdown_grace",
            raw.shutdown_grace.as_ref(),
            Duration::from_secs(30),
        ),
    }
}

fn tls(check: &mut Checker, raw: &file::TlsFile) -> TlsSettings {
    let min_version = check.one_of(
        "tls.min_version",
        raw.min_version.as_deref(),
        "unsupported version",
        [("1.2", TlsVersion::Tls12), ("1.3", TlsVersion::Tls13)],
    );
    let mut sni = Vec::new();
    for (i, entry) in raw.sni.iter().enumerate() {
        if entry.hosts.is_empty() {
            check.error(
                format!("tls.sni[{i}].hosts"),
                "at least one host is required",
            );
        }
        for (field, value) in [("cert", &entry.cert), ("key", &entry.key)] {
            if value.is_empty() {
                check.error(format!("tls.sni[{i}].{field}"), "is required");
            }
        }
        sni.push(SniCert {
            hosts: entry
                .hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            cert: check.path(&entry.cert),
            key: check.path(&entry.key),
        });
    }
    TlsSettings {
        cert: check.path(raw.cert.as_deref().unwrap_or("certs/tls.crt")),
        key: check.path(raw.key.as_deref().unwrap_or("certs/tls.key")),
        self_signed_hosts: raw
            .self_signed_hosts
            .clone()
            .unwrap_or_else(|| vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
        min_version,
        client_ca: raw.client_ca.as_deref().map(|p| check.path(p)),
        sni,
    }
}

fn auth(check: &mut Checker, raw: &file::AuthFile, client_ca: bool) -> AuthSettings {
    let token_headers = match &raw.token_headers {
        Some(names) => check.header_names("auth.token_headers", names),
        None => vec![HeaderName::from_static("x-token")],
    };
    let failure_limit = failure_limit(check, raw.failure_limit.as_ref());
    if raw.session.is_some() && raw.tokens.is_none() && raw.jwt.is_none() {
        check.error(
            "auth.session",
            "needs [auth] tokens or [auth.jwt]: login exchanges one of them for a session",
        );
    }
    AuthSettings {
        tokens: raw.tokens.as_deref().map(|p| check.path(p)),
        token_headers,
        write_actions: raw.write_actions.unwrap_or(true),
        failure_limit,
        forward_credentials: raw.forward_credentials.unwrap_or(true),
        jwt: raw.jwt.as_ref().map(|jwt| jwt_settings(check, jwt)),
        external: raw
            .external
            .as_ref()
            .and_then(|ext| external_settings(check, ext)),
        session: raw
            .session
            .as_ref()
            .map(|session| session_settings(check, session)),
        mtls: mtls_settings(check, raw.mtls.as_ref(), client_ca),
    }
}

/// `[auth.mtls]`, checked by [`super::mtls::settings`].
fn mtls_settings(
    check: &mut Checker,
    raw: Option<&file::MtlsFile>,
    client_ca: bool,
) -> Option<super::mtls::MtlsSettings> {
    let (settings, problems) = super::mtls::settings(raw, client_ca);
    for (key, reason) in problems {
        check.error(key, reason);
    }
    settings
}

/// `failure_limit` when absent: 10 failed attempts a minute per IP, 20 at once.
fn default_failure_limit() -> RatePolicy {
    RatePolicy {
        key: RateKey::Ip,
        rate: Rate {
            count: std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN),
            per: Duration::from_secs(60),
        },
        burst: 20,
    }
}

/// `failure_limit`: absent means the default (guessing is never free unless asked for),
/// `"off"` turns it off, `{ rate, burst }` sets it (`burst` defaults to the rate's count).
fn failure_limit(check: &mut Checker, raw: Option<&toml::Value>) -> Option<RatePolicy> {
    const KEY: &str = "auth.failure_limit";
    let table = match raw {
        None => return Some(default_failure_limit()),
        Some(toml::Value::String(text)) if text == "off" => return None,
        Some(toml::Value::Table(table)) => table,
        Some(_) => {
            check.error(KEY, "expected { rate = \"10/min\", burst = 20 } or \"off\"");
            return None;
        }
    };
    report_unknown(check, KEY, table, &["rate", "burst"]);
    let Some(rate_text) = string_field(check, KEY, table, "rate") else {
        check.error(format!("{KEY}.rate"), "is required");
        return None;
    };
    let rate = parse_rate(rate_text)
        .map_err(|reason| check.error(format!("{KEY}.rate"), reason))
        .ok()?;
    let burst = positive_burst(check, KEY, table, rate.count.get())?;
    Some(RatePolicy {
        key: RateKey::Ip,
        rate,
        burst,
    })
}

/// `burst` of a rate table: a positive integer, `default` when absent.
fn positive_burst(
    check: &mut Checker,
    prefix: &str,
    table: &toml::Table,
    default: u32,
) -> Option<u32> {
    let Some(value) = table.get("burst") else {
        return Some(default);
    };
    let burst = value
        .as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0);
    if burst.is_none() {
        check.error(format!("{prefix}.burst"), "must be a positive integer");
    }
    burst
}

const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn jwt_settings(check: &mut Checker, raw: &file::JwtFile) -> JwtSettings {
    let algorithms = if raw.algorithms.is_empty() {
        vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
    } else {
        raw.algorithms.clone()
    };
    for (i, alg) in algorithms.iter().enumerate() {
        if !JWT_ALGORITHMS.contains(&alg.as_str()) {
            check.error(
                format!("auth.jwt.algorithms[{i}]"),
                format!("unsupported algorithm {alg:?} (\"none\" is never accepted)"),
            );
        }
    }
    if raw.jwks_file.is_none() && raw.jwks_url.is_none() && raw.hmac_secret_file.is_none() {
        check.error(
            "auth.jwt",
            "one of jwks_file, jwks_url or hmac_secret_file is required",
        );
    }
    JwtSettings {
        issuer: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        algorithms,
        jwks_file: raw.jwks_file.as_deref().map(|p| check.path(p)),
        jwks_url: raw.jwks_url.clone().filter(|url| jwks_url_ok(check, url)),
        jwks_refresh: check.duration(
            "auth.jwt.jwks_refresh",
            raw.jwks_refresh.as_ref(),
            Duration::from_secs(600),
        ),
        hmac_secret_file: raw.hmac_secret_file.as_deref().map(|p| check.path(p)),
        roles_claim: raw
            .roles_claim
            .clone()
            .unwrap_or_else(|| "roles".to_owned()),
        subject_claim: raw
            .subject_claim
            .clone()
            .unwrap_or_else(|| "sub".to_owned()),
        leeway: check.duration(
            "auth.jwt.leeway",
            raw.leeway.as_ref(),
            Duration::from_secs(60),
        ),
    }
}

/// `jwks_url` must be https, except to a loopback host (a local issuer or a sidecar): over
/// cleartext anyone on the path could hand the gateway their own signing keys.
fn jwks_url_ok(check: &mut Checker, url: &str) -> bool {
    const KEY: &str = "auth.jwt.jwks_url";
    let Ok(uri) = url.parse::<http::Uri>() else {
        check.error(
            KEY,
            format!(
                "invalid URL {}: expected https://host/path",
                redact_url(url)
            ),
        );
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) if is_loopback_host(host) => true,
        (Some("http"), Some(_)) => {
            check.error(
                KEY,
                format!(
                    "{} must use https (http only to a loopback host): keys fetched in cleartext can be replaced on the way",
                    redact_url(url)
                ),
            );
            false
        }
        _ => {
            check.error(
                KEY,
                format!(
                    "invalid URL {}: expected https://host/path",
                    redact_url(url)
                ),
            );
            false
        }
    }
}

/// `localhost`, 127.0.0.0/8 or ::1 (with or without the brackets a URL puts around it).
pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn external_settings(check: &mut Checker, raw: &file::ExternalFile) -> Option<ExternalSettings> {
    let url = match raw.url.parse::<http::Uri>() {
        Ok(url)
            if matches!(url.scheme_str(), Some("http" | "https")) && url.authority().is_some() =>
        {
            Some(url)
        }
        _ => {
            check.error(
                "auth.external.url",
                format!(
                    "invalid URL {}: expected http://host:port/path",
                    redact_url(&raw.url)
                ),
            );
            None
        }
    };
    let method = check.method(
        "auth.external.method",
        raw.method.as_deref().unwrap_or("GET"),
    );
    let forward_headers = if raw.forward_headers.is_empty() {
        vec![
            HeaderName::from_static("authorization"),
            HeaderName::from_static("cookie"),
            HeaderName::from_static("x-token"),
        ]
    } else {
        check.header_names("auth.external.forward_headers", &raw.forward_headers)
    };
    let settings = ExternalSettings {
        url: url?,
        method: method?,
        forward_headers,
        copy_headers: check.header_names("auth.external.copy_headers", &raw.copy_headers),
        timeout: check.duration(
            "auth.external.timeout",
            raw.timeout.as_ref(),
            Duration::from_secs(2),
        ),
        cache_ttl: check.duration(
            "auth.external.cache_ttl",
            raw.cache_ttl.as_ref(),
            Duration::from_secs(10),
        ),
        negative_cache_ttl: check.duration(
            "auth.external.negative_cache_ttl",
            raw.negative_cache_ttl.as_ref(),
            Duration::from_secs(2),
        ),
        cache_key: cache_key(check, raw.cache_key.as_deref()),
    };
    Some(settings)
}

/// `[auth.external] cache_key`: `"request"` (the default) or `"credential"`.
fn cache_key(check: &mut Checker, raw: Option<&str>) -> super::CacheKey {
    use super::CacheKey;
    match raw {
        None | Some("request") => CacheKey::Request,
        Some("credential") => CacheKey::Credential,
        Some(other) => {
            check.error(
                "auth.external.cache_key",
                format!("unknown value {other:?}: expected \"request\" or \"credential\""),
            );
            CacheKey::Request
        }
    }
}

fn session_settings(check: &mut Checker, raw: &file::SessionFile) -> SessionSettings {
    if raw.secret_file.is_empty() {
        check.error("auth.session.secret_file", "is required");
    }
    let ttl = check.duration(
        "auth.session.ttl",
        raw.ttl.as_ref(),
        Duration::from_secs(12 * 3600),
    );
    if ttl < Duration::from_secs(1) {
        check.error(
            "auth.session.ttl",
            "must be at least 1s (Max-Age counts whole seconds)",
        );
    }
    let cookie = raw.cookie.as_deref().unwrap_or("gatehouse_session");
    // RFC 6265 cookie-name = token: visible ASCII without separators.
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    {
        check.error(
            "auth.session.cookie",
            format!("invalid cookie name {cookie:?}"),
        );
    }
    let prefix = raw.path_prefix.as_deref().unwrap_or("/auth");
    let clean = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"?#%".contains(&b))
        && !prefix
            .split('/')
            .skip(1)
            .any(|seg| matches!(seg, "" | "." | ".."));
    if !clean {
        check.error(
            "auth.session.path_prefix",
            format!("invalid prefix {prefix:?}: expected a normalised path like \"/auth\""),
        );
    }
    SessionSettings {
        secret_file: check.path(&raw.secret_file),
        ttl,
        cookie: cookie.to_owned(),
        path_prefix: prefix.to_owned(),
    }
}

fn rate_limits(
    check: &mut Checker,
    raw: &BTreeMap<String, toml::Value>,
) -> (BTreeMap<String, RatePolicy>, Option<RateBackend>) {
    let mut policies = BTreeMap::new();
    let mut backend = None;
    for (name, value) in raw {
        let prefix = format!("rate_limits.{name}");
        let Some(table) = value.as_table() else {
            check.error(prefix, "must be a table");
            continue;
        };
        if name == "backend" {
            backend = rate_backend(check, &prefix, table);
        } else if let Some(policy) = rate_policy(check, &prefix, table) {
            policies.insert(name.clone(), policy);
        }
    }
    (policies, backend)
}

fn string_field<'a>(
    check: &mut Checker,
    prefix: &str,
    table: &'a toml::Table,
    key: &str,
) -> Option<&'a str> {
    let value = table.get(key)?;
    let text = value.as_str();
    if text.is_none() {
        check.error(format!("{prefix}.{key}"), "must be a string");
    }
    text
}

fn report_unknown(check: &mut Checker, prefix: &str, table: &toml::Table, known: &[&str]) {
    for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
        check.error(
            format!("{prefix}.{key}"),
            super::suggest::unknown_key_among(key, known),
        );
    }
}

fn rate_policy(check: &mut Checker, prefix: &str, table: &toml::Table) -> Option<RatePolicy> {
    report_unknown(check, prefix, table, &["key", "rate", "burst"]);
    let key = match string_field(check, prefix, table, "key").unwrap_or("identity") {
        "identity" => RateKey::Identity,
        "ip" => RateKey::Ip,
        "route" => RateKey::Route,
        other => {
            check.error(
                format!("{prefix}.key"),
                format!("unknown key kind {other:?}: expected identity, ip or route"),
            );
            RateKey::Identity
        }
    };
    let Some(rate_text) = string_field(check, prefix, table, "rate") else {
        check.error(format!("{prefix}.rate"), "is required");
        return None;
    };
    let rate = parse_rate(rate_text)
        .map_err(|reason| check.error(format!("{prefix}.rate"), reason))
        .ok()?;
    let burst = positive_burst(check, prefix, table, rate.count.get())?;
    Some(RatePolicy { key, rate, burst })
}

fn rate_backend(check: &mut Checker, prefix: &str, table: &toml::Table) -> Option<RateBackend> {
    report_unknown(check, prefix, table, &["redis", "timeout", "on_error"]);
    let redis = string_field(check, prefix, table, "redis").map(str::to_owned);
    match &redis {
        None => check.error(format!("{prefix}.redis"), "is required"),
        Some(url) => check_redis_url(check, &format!("{prefix}.redis"), url),
    }
    let timeout = string_field(check, prefix, table, "timeout").map(str::to_owned);
    let timeout = check.duration(
        &format!("{prefix}.timeout"),
        timeout.as_ref(),
        Duration::from_millis(50),
    );
    let on_error = match string_field(check, prefix, table, "on_error").unwrap_or("local") {
        "local" => OnError::Local,
        "allow" => OnError::Allow,
        "deny" => OnError::Deny,
        other => {
            check.error(
                format!("{prefix}.on_error"),
                format!("unknown mode {other:?}: expected local, allow or deny"),
            );
            OnError::Local
        }
    };
    Some(RateBackend {
        redis: redis?,
        timeout,
        on_error,
    })
}

/// The URL as the redis client parses it (no connection yet), so `check` catches a bad one; the
/// message names the URL only redacted (it may hold a password).
fn check_redis_url(check: &mut Checker, key: &str, url: &str) {
    if let Err(error) = ::redis::Client::open(url) {
        check.error(
            key,
            format!(
                "invalid Redis URL {}: {}; expected redis://[user:password@]host:port[/db]",
                redact_url(url),
                // The crate's URL errors are fixed texts ("Redis URL did not parse"), never the URL.
                error
            ),
        );
    }
}

fn upstreams(check: &mut Checker, raw: &[file::UpstreamFile]) -> Vec<UpstreamConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, upstream) in raw.iter().enumerate() {
        let prefix = format!("upstreams[{i}]");
        if upstream.name.is_empty() {
            check.error(format!("{prefix}.name"), "is required");
        } else if !seen.insert(upstream.name.clone()) {
            check.error(
                format!("{prefix}.name"),
                format!("duplicate upstream {:?}", upstream.name),
            );
        }
        if upstream.targets.is_empty() {
            check.error(
                format!("{prefix}.targets"),
                "at least one host:port target is required",
            );
        }
        for (t, target) in upstream.targets.iter().enumerate() {
            if !valid_target(target) {
                check.error(
                    format!("{prefix}.targets[{t}]"),
                    format!("invalid target {target:?}: expected host:port"),
                );
            }
        }
        let https = match upstream.scheme.as_deref() {
            None | Some("http") => false,
            Some("https") => true,
            Some(other) => {
                check.error(
                    format!("{prefix}.scheme"),
                    format!("unknown scheme {other:?}: expected \"http\" or \"https\""),
                );
                false
            }
        };
        out.push(UpstreamConfig {
            name: upstream.name.clone(),
            targets: upstream.targets.clone(),
            https,
            ca: upstream.ca.as_deref().map(|p| check.path(p)),
            connect_timeout: check.duration(
                &format!("{prefix}.connect_timeout"),
                upstream.connect_timeout.as_ref(),
                Duration::from_secs(2),
            ),
            response_timeout: check.duration(
                &format!("{prefix}.response_timeout"),
                upstream.response_timeout.as_ref(),
                Duration::from_secs(30),
            ),
            max_idle_per_target: upstream.max_idle_per_target.unwrap_or(64),
            pool_idle_timeout: check.duration(
                &format!("{prefix}.pool_idle_timeout"),
                upstream.pool_idle_timeout.as_ref(),
                Duration::from_secs(90),
            ),
            fail_cooldown: check.duration(
                &format!("{prefix}.fail_cooldown"),
                upstream.fail_cooldown.as_ref(),
                Duration::from_secs(10),
            ),
        });
    }
    out
}

/// `host:port` with a port that parses and an authority that `http::uri` accepts.
fn valid_target(target: &str) -> bool {
    let Some((host, port)) = target.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && port.parse::<u16>().is_ok_and(|p| p > 0)
        && target.parse::<http::uri::Authority>().is_ok()
}

fn routes(
    check: &mut Checker,
    raw: &[file::RouteFile],
    upstreams: &[UpstreamConfig],
    policies: &BTreeMap<String, RatePolicy>,
    auth: &AuthSettings,
) -> Vec<RouteConfig> {
    let by_name: HashMap<&str, usize> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, route) in raw.iter().enumerate() {
        if let Some(built) = route_config(
            check,
            &format!("routes[{i}]"),
            route,
            &by_name,
            policies,
            auth,
        ) {
            out.push(built);
        }
    }
    report_duplicate_routes(check, &out);
    out
}

fn route_config(
    check: &mut Checker,
    prefix: &str,
    route: &file::RouteFile,
    upstreams: &HashMap<&str, usize>,
    policies: &BTreeMap<String, RatePolicy>,
    auth: &AuthSettings,
) -> Option<RouteConfig> {
    if !route.path.starts_with('/') {
        check.error(
            format!("{prefix}.path"),
            format!("must start with '/' (got {:?})", route.path),
        );
    }
    let methods = route.methods.as_ref().map(|names| {
        names
            .iter()
            .enumerate()
            .filter_map(|(m, name)| check.method(&format!("{prefix}.methods[{m}]"), name))
            .collect::<Vec<_>>()
    });
    let action = route_action(check, prefix, route, upstreams)?;
    let auth_kinds = route_auth(check, prefix, route, &action, auth);
    if route.rate_limit.is_some() && !matches!(action, RouteAction::Proxy(_)) {
        check.error(
            format!("{prefix}.rate_limit"),
            "redirect and respond routes answer before rate limiting; put the limit on a proxied route",
        );
    }
    if let Some(policy) = &route.rate_limit
        && !policies.contains_key(policy)
    {
        check.error(
            format!("{prefix}.rate_limit"),
            format!("unknown rate limit policy {policy:?}"),
        );
    }
    Some(RouteConfig {
        path: route.path.clone(),
        exact: route.exact,
        host: route.host.as_ref().map(|h| h.trim().to_ascii_lowercase()),
        methods,
        action,
        auth: auth_kinds,
        roles: route.roles.clone(),
        write_roles: route
            .write_roles
            .clone()
            .unwrap_or_else(|| route.roles.clone()),
        rate_limit: route.rate_limit.clone(),
        websocket: route.websocket,
        allowed_origins: route
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect(),
    })
}

fn route_action(
    check: &mut Checker,
    prefix: &str,
    route: &file::RouteFile,
    upstreams: &HashMap<&str, usize>,
) -> Option<RouteAction> {
    let chosen = [
        route.upstream.is_some(),
        route.redirect.is_some(),
        route.respond.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        check.error(
            prefix.to_owned(),
            "exactly one of upstream, redirect or respond is required",
        );
        return None;
    }
    if let Some(location) = &route.redirect {
        let status = route.redirect_status.unwrap_or(308);
        if ![301, 302, 303, 307, 308].contains(&status) {
            check.error(
                format!("{prefix}.redirect_status"),
                format!("{status} is not a redirect status (301, 302, 303, 307, 308)"),
            );
        }
        if http::HeaderValue::from_str(location).is_err() {
            check.error(
                format!("{prefix}.redirect"),
                "is not a valid Location value",
            );
        }
        return Some(RouteAction::Redirect {
            location: location.clone(),
            status,
        });
    }
    if let Some(respond) = &route.respond {
        if !(100..=599).contains(&respond.status) {
            check.error(
                format!("{prefix}.respond.status"),
                format!("{} is not an HTTP status", respond.status),
            );
        }
        let content_type = respond
            .content_type
            .clone()
            .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned());
        return Some(RouteAction::Respond {
            status: respond.status,
            body: respond.body.clone(),
            content_type,
        });
    }
    let name = route.upstream.as_deref().unwrap_or_default();
    let Some(&upstream) = upstreams.get(name) else {
        check.error(
            format!("{prefix}.upstream"),
            format!("unknown upstream {name:?}"),
        );
        return None;
    };
    if route.strip_prefix && route.rewrite.is_some() {
        check.error(
            format!("{prefix}.rewrite"),
            "strip_prefix and rewrite exclude each other",
        );
    }
    if route.rewrite.as_ref().is_some_and(|r| !r.starts_with('/')) {
        check.error(format!("{prefix}.rewrite"), "must start with '/'");
    }
    let proxy_method = route
        .proxy_method
        .as_deref()
        .and_then(|m| check.method(&format!("{prefix}.proxy_method"), m));
    Some(RouteAction::Proxy(ProxyAction {
        upstream,
        strip_prefix: route.strip_prefix,
        rewrite: route.rewrite.clone(),
        proxy_method,
        pass_request_body: route.pass_request_body.unwrap_or(true),
    }))
}

/// Parses `auth = [...]`, failing closed (SPEC §8.4): a route is public only when it says
/// `["public"]`; an empty list is an error; an absent one on a proxy route means every kind
/// `[auth]` configures, and is an error when it configures none. Redirect and respond routes answer
/// before authentication, so they are public and may only say `["public"]` or nothing.
/// Empty result: public.
fn route_auth(
    check: &mut Checker,
    prefix: &str,
    route: &file::RouteFile,
    action: &RouteAction,
    auth: &AuthSettings,
) -> Vec<AuthKind> {
    let key = format!("{prefix}.auth");
    let answers_before_auth = !matches!(action, RouteAction::Proxy(_));
    let kinds = match &route.auth {
        None if answers_before_auth => Vec::new(),
        None => implied_kinds(check, &key, auth),
        Some(names) if names.is_empty() => {
            check.error(
                key,
                "is empty: list the credential kinds to accept, or say [\"public\"] for a public route",
            );
            return Vec::new();
        }
        Some(names) => named_kinds(check, &key, names, auth),
    };
    if answers_before_auth && !kinds.is_empty() {
        check.error(
            key,
            "redirect and respond routes answer before authentication; remove auth or proxy the route",
        );
        return kinds;
    }
    if kinds.is_empty() && (!route.roles.is_empty() || route.write_roles.is_some()) {
        let field = if route.roles.is_empty() {
            "write_roles"
        } else {
            "roles"
        };
        check.error(
            format!("{prefix}.{field}"),
            "a public route checks no roles; remove them or name the credential kinds in auth",
        );
    }
    if kinds == [AuthKind::External] && (!route.roles.is_empty() || route.write_roles.is_some()) {
        check.error(
            format!("{prefix}.roles"),
            "roles do not apply to external auth alone: the auth service decides (add a local kind such as \"token\" to use roles)",
        );
    }
    kinds
}

/// No `auth` on a proxy route: every kind `[auth]` configures (session with `[auth.session]`,
/// mTLS when `[tls] client_ca` is set).
fn implied_kinds(check: &mut Checker, key: &str, auth: &AuthSettings) -> Vec<AuthKind> {
    let mut kinds = Vec::new();
    if auth.tokens.is_some() {
        kinds.push(AuthKind::Token);
    }
    if auth.jwt.is_some() {
        kinds.push(AuthKind::Jwt);
    }
    if auth.external.is_some() {
        kinds.push(AuthKind::External);
    }
    if auth.session.is_some() {
        kinds.push(AuthKind::Session);
    }
    if auth.mtls.is_some() {
        kinds.push(AuthKind::Mtls);
    }
    if kinds.is_empty() {
        check.error(
            key,
            "is not set and [auth] configures no credential kind (tokens, [auth.jwt], [auth.session], [auth.external] or [tls] client_ca); set auth = [\"public\"] to make the route public",
        );
    }
    kinds
}

/// `auth = [...]` as written: known kinds whose section exists, and `"public"` alone.
fn named_kinds(
    check: &mut Checker,
    key: &str,
    names: &[String],
    auth: &AuthSettings,
) -> Vec<AuthKind> {
    let mut kinds = Vec::new();
    let mut public = false;
    for (i, name) in names.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let kind = match name.as_str() {
            "public" => {
                public = true;
                continue;
            }
            "token" => AuthKind::Token,
            "jwt" => AuthKind::Jwt,
            "external" => AuthKind::External,
            "session" => AuthKind::Session,
            "mtls" => AuthKind::Mtls,
            other => {
                check.error(
                    key,
                    format!(
                        "unknown credential kind {other:?}: expected public, token, jwt, session, external or mtls"
                    ),
                );
                continue;
            }
        };
        let missing = match kind {
            AuthKind::Token => auth.tokens.is_none().then_some("[auth] tokens"),
            AuthKind::Jwt => auth.jwt.is_none().then_some("an [auth.jwt] section"),
            AuthKind::External => auth
                .external
                .is_none()
                .then_some("an [auth.external] section"),
            AuthKind::Session => auth
                .session
                .is_none()
                .then_some("an [auth.session] section"),
            AuthKind::Mtls => auth.mtls.is_none().then_some("[tls] client_ca"),
        };
        if let Some(what) = missing {
            check.error(key, format!("{name:?} needs {what}"));
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if public && !kinds.is_empty() {
        check.error(
            key.to_owned(),
            "\"public\" cannot be combined with credential kinds",
        );
    }
    kinds
}

/// Two routes may share a path only when one is exact or their host or methods differ.
fn report_duplicate_routes(check: &mut Checker, routes: &[RouteConfig]) {
    /// path, exact, host, sorted method names
    type RouteKey = (String, bool, Option<String>, Option<Vec<String>>);
    let mut seen: HashMap<RouteKey, usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let methods = route.methods.as_ref().map(|m| {
            let mut names: Vec<String> = m.iter().map(ToString::to_string).collect();
            names.sort();
            names
        });
        let key = (route.path.clone(), route.exact, route.host.clone(), methods);
        if let Some(first) = seen.insert(key, i) {
            check.error(
                format!("routes[{i}].path"),
                format!("duplicate route {:?} (same as routes[{first}])", route.path),
            );
        }
    }
}
