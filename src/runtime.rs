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

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::http::forwarded::TrustedProxies;
use crate::proxy::Upstream;
use crate::router::RouteTable;

/// Everything a request reads, built once per (re)load.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// TLS for new handshakes; open connections keep the session they negotiated.
    pub tls: Arc<rustls::ServerConfig>,
    /// Route matching over `config.routes`.
    pub router: RouteTable,
    /// Upstreams, indexed like `config.upstreams`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The `trusted_proxies` rule.
    pub trusted_proxies: TrustedProxies,
    /// 1 for the first load, +1 per applied reload.
    pub generation: u64,
    /// When this runtime was built.
    pub loaded_at: SystemTime,
}

impl Runtime {
    /// Builds a runtime for `config`, reusing unchanged parts of `previous`. Does file IO (certs),
    /// so call it off the request path (`spawn_blocking`).
    ///
    /// # Errors
    /// A message naming the file or upstream that could not be used.
    pub fn build(config: Config, previous: Option<&Runtime>) -> Result<Self, String> {
        let tls = crate::tls::build(&config.tls)?;
        let upstreams = config
            .upstreams
            .iter()
            .map(|upstream| {
                match previous.and_then(|p| p.upstreams.iter().find(|u| u.config() == upstream)) {
                    Some(reused) => Ok(reused.clone()),
                    None => Upstream::new(upstream).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            router: RouteTable::new(&config.routes),
            trusted_proxies: TrustedProxies::new(config.server.trusted_proxies.clone()),
            tls,
            upstreams,
            generation: previous.map_or(1, |p| p.generation + 1),
            loaded_at: SystemTime::now(),
            config: Arc::new(config),
        })
    }
}

/// State shared by listeners, the admin endpoint and (later) the reload task.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime; `load_full()` once per request.
    pub runtime: ArcSwap<Runtime>,
    draining: AtomicBool,
}

impl Shared {
    /// Wraps the first runtime.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            draining: AtomicBool::new(false),
        }
    }

    /// True once shutdown began: `/readyz` answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the gateway as draining.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
