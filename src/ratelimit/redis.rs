//! Shared limits (`[rate_limits.backend]`): the GCRA decision made atomically in Redis, one
//! `EVALSHA` per request (the `redis` crate's [`Script`] falls back to loading the script after a
//! `NOSCRIPT`, e.g. after Redis restarted).
//!
//! The script reads and writes one key, `gatehouse:rl:{policy}:{key}` (`{policy}` with `%` and
//! `:` percent-encoded so policy names cannot collide; `{key}` is `id:SUBJECT`, `ip:ADDRESS` or
//! `route:PATH`), holding the bucket's TAT in microseconds of Redis server time (`TIME`, so
//! replicas with skewed clocks agree), with a TTL equal to the time until the bucket is full
//! again — past it the key is indistinguishable from an absent one, so expiry is exact.
//!
//! # Failures
//!
//! Every call is bounded by `timeout`. A call that fails or times out — including before the
//! first connection is up — counts in [`RedisBackend::errors`], logs a warning (at most one per
//! [`super::throttle::LOG_INTERVAL`]) and leaves the decision to `on_error`. After a failure Redis is not
//! asked for [`RETRY_AFTER_FAILURE`]: those checks go straight to `on_error` (and count as
//! errors), so an outage costs requests no latency; then one request probes Redis, and its
//! success ends the outage (logged). Reconnection is the connection manager's: it is created on
//! the first check (no I/O, nothing spawned at build), reconnects after a dropped connection,
//! and is replaced after [`TIMEOUTS_BEFORE_RECONNECT`] consecutive timeouts (a connection that
//! hangs without being dropped).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script};
use arc_swap::ArcSwapOption;

use super::gcra::Gcra;
use super::local::{GcraDecision, Key};
use super::throttle::{LogThrottle, millis_now};
use crate::config::collect::KeyError;
use crate::config::{OnError, RateBackend, redact_url};

/// After a failed call, checks skip Redis (and `on_error` decides) for this long; then one
/// request probes it.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// Bound on establishing one connection to Redis.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Connection attempts in one reconnect round of the connection manager; a failed round ends
/// with an error and the next call starts another, so a returning Redis is found within about
/// [`RETRY_AFTER_FAILURE`] plus one round.
const CONNECT_RETRIES: usize = 2;

/// Backoff between the attempts of one round: from this…
const CONNECT_RETRY_MIN_DELAY: Duration = Duration::from_millis(50);

/// …to at most this.
const CONNECT_RETRY_MAX_DELAY: Duration = Duration::from_millis(500);

/// Consecutive timed-out calls after which the connection is presumed hung and replaced.
pub(crate) const TIMEOUTS_BEFORE_RECONNECT: u32 = 5;

/// GCRA in Redis. KEYS[1]: the bucket; ARGV[1]: emission interval, ARGV[2]: tolerance (both µs).
/// Returns `{1, 0, tat - now}` when admitted, `{0, wait, 0}` when not (µs).
const GCRA_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tau
if now < allow_at then
  return {0, allow_at - now, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0, new_tat - now}
";

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// `gatehouse:rl:{escaped policy}:`
pub(crate) fn key_prefix(policy: &str) -> String {
    let mut prefix = String::with_capacity(policy.len() + 14);
    prefix.push_str("gatehouse:rl:");
    for c in policy.chars() {
        match c {
            '%' => prefix.push_str("%25"),
            ':' => prefix.push_str("%3A"),
            _ => prefix.push(c),
        }
    }
    prefix.push(':');
    prefix
}

/// The Redis key of `key`'s bucket under `prefix`.
pub(crate) fn bucket_key(prefix: &str, key: &Key) -> String {
    let mut out = String::with_capacity(prefix.len() + 48);
    out.push_str(prefix);
    // Writing to a String cannot fail.
    let _ = match key {
        Key::Id(subject) => write!(out, "id:{subject}"),
        Key::Ip(ip) => write!(out, "ip:{ip}"),
        Key::Route(route) => write!(out, "route:{route}"),
    };
    out
}

/// The backend as one runtime configures it; the connection is shared with the runtimes before
/// and after it while the URL is unchanged.
pub(crate) struct RedisBackend {
    connection: Arc<RedisConnection>,
    timeout: Duration,
    on_error: OnError,
}

/// Why a check got no decision from Redis.
enum Failure<'a> {
    /// Skipped: the backend is marked down.
    Skipped,
    /// The connection manager could not be created.
    NoManager(&'a RedisError),
    /// Redis answered with an error, or the connection failed.
    Error(&'a RedisError),
    /// No answer within `timeout`.
    Timeout(Duration),
}

impl RedisBackend {
    /// The backend for `config`, reusing `previous`'s connection when the URL is unchanged.
    pub(crate) fn new(config: &RateBackend, previous: Option<&Self>) -> Result<Self, KeyError> {
        let connection = match previous {
            Some(previous) if previous.connection.url == config.redis => {
                Arc::clone(&previous.connection)
            }
            _ => Arc::new(RedisConnection::new(&config.redis)?),
        };
        Ok(Self {
            connection,
            timeout: config.timeout,
            on_error: config.on_error,
        })
    }

    /// What decides when Redis cannot.
    pub(crate) fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Checks Redis could not decide.
    pub(crate) fn errors(&self) -> u64 {
        self.connection.errors.load(Ordering::Relaxed)
    }

    /// Takes one cell from the bucket at `key`; `None` when Redis cannot decide now.
    pub(crate) async fn decide(&self, key: &str, gcra: Gcra) -> Option<GcraDecision> {
        let redis = &*self.connection;
        if !redis.may_call() {
            redis.failed(&Failure::Skipped);
            return None;
        }
        let mut manager = match redis.manager() {
            Ok(manager) => manager,
            Err(error) => {
                redis.failed(&Failure::NoManager(&error));
                return None;
            }
        };
        let (interval, tau) = gcra.micros();
        let mut invocation = GCRA_SCRIPT.prepare_invoke();
        invocation.key(key).arg(interval).arg(tau);
        let call = invocation.invoke_async::<(i64, i64, i64)>(&mut manager);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) => {
                redis.succeeded();
                Some(decision(reply, gcra))
            }
            Ok(Err(error)) => {
                redis.failed(&Failure::Error(&error));
                None
            }
            Err(_) => {
                redis.failed(&Failure::Timeout(self.timeout));
                None
            }
        }
    }
}

fn decision((admitted, wait, ahead): (i64, i64, i64), gcra: Gcra) -> GcraDecision {
    let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
    if admitted == 1 {
        GcraDecision::Allowed {
            remaining: gcra.remaining(micros(ahead)),
        }
    } else {
        GcraDecision::Denied { wait: micros(wait) }
    }
}

impl Gcra {
    /// `(interval, tau)` in whole microseconds, the interval at least 1.
    fn micros(self) -> (u64, u64) {
        let interval = u64::try_from(self.interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let tau = interval.saturating_mul(u64::from(self.burst.saturating_sub(1)));
        (interval, tau)
    }
}

/// Connection state shared across reloads.
struct RedisConnection {
    url: String,
    client: Client,
    manager: ArcSwapOption<ConnectionManager>,
    /// Serialises creating the manager.
    create: Mutex<()>,
    errors: AtomicU64,
    /// [`millis_now`] before which Redis is skipped; 0 while healthy.
    retry_at: AtomicU64,
    consecutive_timeouts: AtomicU32,
    log: LogThrottle,
}

impl RedisConnection {
    fn new(url: &str) -> Result<Self, KeyError> {
        // The URL may hold a password: errors and logs name it only redacted (SPEC §8.12).
        let client = Client::open(url).map_err(|error| {
            KeyError::new(
                "rate_limits.backend.redis",
                format!("invalid Redis URL {}: {error}", redact_url(url)),
            )
        })?;
        Ok(Self {
            url: url.to_owned(),
            client,
            manager: ArcSwapOption::empty(),
            create: Mutex::new(()),
            errors: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            consecutive_timeouts: AtomicU32::new(0),
            log: LogThrottle::new(),
        })
    }

    /// `false` while the backend is marked down, except for the one caller that claims the probe
    /// once [`RETRY_AFTER_FAILURE`] has passed.
    fn may_call(&self) -> bool {
        let retry_at = self.retry_at.load(Ordering::Relaxed);
        if retry_at == 0 {
            return true;
        }
        let now = millis_now();
        now >= retry_at
            && self
                .retry_at
                .compare_exchange(
                    retry_at,
                    now.saturating_add(retry_millis()).max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The connection manager, created (lazily connecting, in the background) on first use.
    fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(manager) = self.manager.load().as_deref() {
            return Ok(manager.clone());
        }
        let _creating = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(manager) = self.manager.load().as_deref() {
            return Ok(manager.clone());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisError::from((
                ErrorKind::Client,
                "checked outside a Tokio runtime",
            )));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None)
            .set_number_of_retries(CONNECT_RETRIES)
            .set_min_delay(CONNECT_RETRY_MIN_DELAY)
            .set_max_delay(CONNECT_RETRY_MAX_DELAY);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        self.manager.store(Some(Arc::new(manager.clone())));
        Ok(manager)
    }

    fn succeeded(&self) {
        if self.consecutive_timeouts.load(Ordering::Relaxed) != 0 {
            self.consecutive_timeouts.store(0, Ordering::Relaxed);
        }
        if self.retry_at.load(Ordering::Relaxed) != 0
            && self.retry_at.swap(0, Ordering::Relaxed) != 0
        {
            tracing::info!("Redis rate-limit backend reachable again; shared limits resume");
        }
    }

    fn failed(&self, failure: &Failure<'_>) {
        let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if matches!(failure, Failure::Skipped) {
            return;
        }
        self.retry_at.store(
            millis_now().saturating_add(retry_millis()).max(1),
            Ordering::Relaxed,
        );
        if matches!(failure, Failure::Timeout(_)) {
            let timeouts = self.consecutive_timeouts.fetch_add(1, Ordering::Relaxed) + 1;
            if timeouts >= TIMEOUTS_BEFORE_RECONNECT {
                self.consecutive_timeouts.store(0, Ordering::Relaxed);
                self.manager.store(None);
            }
        }
        if self.log.ready() {
            let reason = match failure {
                Failure::Skipped => String::new(),
                Failure::NoManager(error) => format!("cannot create connection: {error}"),
                Failure::Error(error) => error.to_string(),
                Failure::Timeout(timeout) => format!("no answer within {timeout:?}"),
            };
            tracing::warn!(
                redis = %redact_url(&self.url),
                errors,
                reason,
                "Redis rate-limit backend unavailable; on_error decides until it answers"
            );
        }
    }
}

fn retry_millis() -> u64 {
    u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
