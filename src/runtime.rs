//! [`Runtime`]: the immutable snapshot one request needs — validated config, TLS server config,
//! route table, upstream pools — and [`Shared`], which holds the current snapshot in an
//! `ArcSwap` so a request loads it once and uses it from start to end.
//!
//! `Runtime::build(config, previous)` reuses the parts of `previous` whose configuration did not
//! change (upstream pools today; limiter state and JWKS keys as those concerns land), so a reload
//! keeps warm connections and never hands clients a fresh burst.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use std::path::PathBuf;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::auth::Authenticator;
use crate::config::collect::Collector;
use crate::config::{Config, ConfigErrors, UpstreamConfig};
use crate::http::forwarded::TrustedProxies;
use crate::observe::audit::AuditLog;
use crate::observe::log_writer::AccessLog;
use crate::observe::metrics::Metrics;
use crate::proxy::Upstream;
use crate::ratelimit::RateLimits;
use crate::router::RouteTable;

/// Everything a request reads, built once per (re)load.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// TLS for new handshakes; open connections keep the session they negotiated.
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// Expiry of each certificate `tls` serves, for `/metrics`.
    pub(crate) certificates: Vec<crate::tls::expiry::CertExpiry>,
    /// The `route` label of each route and of a request that matched none
    /// ([`crate::observe::labels`]).
    pub(crate) route_labels: crate::observe::labels::RouteLabels,
    /// Route matching over `config.routes`.
    pub(crate) router: RouteTable,
    /// Authentication state: token store, JWT keys, external auth and its cache.
    pub(crate) auth: Authenticator,
    /// Rate-limit policies; unchanged policies keep their state across reloads.
    pub(crate) rate_limits: RateLimits,
    /// Upstreams, indexed like `config.upstreams`.
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    /// The `trusted_proxies` rule.
    pub(crate) trusted_proxies: TrustedProxies,
    /// 1 for the first load, +1 per applied reload.
    pub generation: u64,
    /// Every file this runtime was built from; reload watches their folders.
    pub files: Vec<PathBuf>,
    /// SHA-256 over the content of `files`; a reload with the same hash swaps nothing.
    pub(crate) content_hash: String,
    /// When this runtime was built.
    pub(crate) loaded_at: SystemTime,
    /// `[audit]`: the hash-chained audit log; its writer carries over from `previous`.
    pub(crate) audit: Option<crate::observe::audit::AuditLog>,
}

impl Runtime {
    /// Builds a runtime for `config`, reusing unchanged parts of `previous`. Does file IO (certs),
    /// so call it off the request path (`spawn_blocking`).
    ///
    /// # Errors
    /// Every file, URL or upstream that could not be used, each at its key (`tls.cert`,
    /// `auth.jwt.jwks_file`, `upstreams[2].targets[0]`, `audit.path`; a token store's problems
    /// in `tokens.toml` at their entry), never a secret.
    pub(crate) fn build(config: Config, previous: Option<&Runtime>) -> Result<Self, ConfigErrors> {
        let mut check = Collector::new(&config.path);
        let served = crate::tls::build(&config.tls, previous.is_none(), &mut check);
        let auth = Authenticator::build(&config.auth, previous.map(|p| &p.auth), &mut check);
        let rate_limits = check.keyed(RateLimits::build(
            &config.rate_limits,
            config.rate_backend.as_ref(),
            previous.map(|p| &p.rate_limits),
        ));
        let upstreams = upstreams(&config.upstreams, previous, &mut check);
        let generation = previous.map_or(1, |p| p.generation + 1);
        let audit = audit(&config, generation, previous, &mut check);
        let (Some(served), Some(auth), Some(rate_limits), Some(upstreams), Some(audit)) =
            (served, auth, rate_limits, upstreams, audit)
        else {
            return Err(check.into_errors());
        };
        if let Some(jwt) = &auth.jwt {
            jwt.spawn_refresh();
        }
        let mut files = trusted_files(&config);
        files.extend(auth.files());
        Ok(Self {
            router: RouteTable::new(&config.routes),
            route_labels: crate::observe::labels::RouteLabels::new(&config.routes),
            auth,
            rate_limits,
            trusted_proxies: TrustedProxies::new(config.server.trusted_proxies.clone()),
            tls: served.config,
            certificates: served.certificates,
            upstreams,
            generation,
            content_hash: hash_files(&files),
            files,
            loaded_at: SystemTime::now(),
            audit,
            config: Arc::new(config),
        })
    }
}

/// What [`Runtime::build`] reads, checked the same way and reported at the same keys, but
/// without generating a certificate, starting a thread or leaving a file behind
/// (`gatehouse check`).
///
/// # Errors
/// As [`Runtime::build`].
pub(crate) fn check_files(config: &Config) -> Result<(), ConfigErrors> {
    let mut check = Collector::new(&config.path);
    crate::tls::files::check(&config.tls, &mut check);
    Authenticator::build(&config.auth, None, &mut check);
    check.keyed(RateLimits::build(
        &config.rate_limits,
        config.rate_backend.as_ref(),
        None,
    ));
    upstreams(&config.upstreams, None, &mut check);
    if let Some(path) = &config.audit {
        check.keyed(AuditLog::check(path));
    }
    check.finish(())
}

/// `[audit]`, built last: a first start that fails elsewhere starts no writer thread (its path
/// is still checked, so its problem is reported with the others). A reload shares the running
/// writer, which only follows a runtime that was swapped in.
fn audit(
    config: &Config,
    generation: u64,
    previous: Option<&Runtime>,
    check: &mut Collector,
) -> Option<Option<AuditLog>> {
    let Some(path) = &config.audit else {
        return Some(None);
    };
    if check.has_errors() {
        // The build fails anyway: only say whether the path would have been usable too.
        check.keyed(AuditLog::check(path));
        return None;
    }
    let previous = previous.and_then(|p| p.audit.as_ref());
    check
        .keyed(AuditLog::build(path, generation, previous))
        .map(Some)
}

/// One pool per upstream: `previous`'s for an unchanged upstream (warm connections), else new.
/// `None` once any failed; all are tried, so every problem is recorded.
fn upstreams(
    configs: &[UpstreamConfig],
    previous: Option<&Runtime>,
    check: &mut Collector,
) -> Option<Vec<Arc<Upstream>>> {
    let built: Vec<_> = configs
        .iter()
        .enumerate()
        .map(|(i, upstream)| {
            match previous.and_then(|p| p.upstreams.iter().find(|u| u.config() == upstream)) {
                Some(reused) => Some(reused.clone()),
                None => check.keyed(
                    Upstream::new(upstream)
                        .map(Arc::new)
                        .map_err(|e| e.under(&format!("upstreams[{i}]"))),
                ),
            }
        })
        .collect();
    built.into_iter().collect()
}

/// Every file the runtime depends on, config first.
fn trusted_files(config: &Config) -> Vec<PathBuf> {
    let tls = &config.tls;
    let mut files = vec![config.path.clone(), tls.cert.clone(), tls.key.clone()];
    for sni in &tls.sni {
        files.extend([sni.cert.clone(), sni.key.clone()]);
    }
    files.extend(tls.client_ca.iter().cloned());
    files.extend(config.upstreams.iter().filter_map(|u| u.ca.clone()));
    files
}

/// SHA-256 over each file's path and content (a missing file hashes as missing).
pub(crate) fn hash_files(files: &[PathBuf]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.as_os_str().as_encoded_bytes());
        match std::fs::read(file) {
            Ok(bytes) => {
                hasher.update([1]);
                hasher.update(Sha256::digest(&bytes));
            }
            Err(_) => hasher.update([0]),
        }
    }
    hex::encode(hasher.finalize())
}

/// State shared by listeners, the admin endpoint and the reload task.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime; `load_full()` once per request.
    pub runtime: ArcSwap<Runtime>,
    draining: AtomicBool,
    /// Counters that outlive any one runtime.
    pub(crate) metrics: Metrics,
    /// The access log's queue and writer thread (SPEC §7); outlives any one runtime.
    pub(crate) access_log: AccessLog,
    bound: Bound,
}

/// What was fixed when the gateway started: listener addresses and the connection cap.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    /// `[server]` as it was when the listeners were bound.
    pub(crate) server: crate::config::ServerConfig,
    /// `limits.max_connections` at start.
    pub(crate) max_connections: usize,
}

impl Shared {
    /// Wraps the first runtime.
    pub(crate) fn new(runtime: Runtime) -> Self {
        let metrics = Metrics::default();
        metrics.reload(true);
        let bound = Bound {
            server: runtime.config.server.clone(),
            max_connections: runtime.config.limits.max_connections,
        };
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            draining: AtomicBool::new(false),
            metrics,
            access_log: AccessLog::stdout(),
            bound,
        }
    }
    /// The listener settings in force since start.
    pub(crate) fn bound(&self) -> &Bound {
        &self.bound
    }

    /// True once shutdown began: `/readyz` answers 503.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the gateway as draining.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
