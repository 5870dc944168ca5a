//! A real `redis-server` on a free loopback port, killed on drop: the one helper behind every
//! Redis test, the backend's unit tests (`src/ratelimit/redis/tests.rs` includes this file by
//! path) and the integration tests alike.
//!
//! Without `redis-server` each Redis test calls [`skip_without_server`] first, which prints why
//! the test is skipped (straight to stderr, past libtest's capture) and lets it pass, so
//! `cargo test` works on a fresh machine. With `GATEHOUSE_TEST_REDIS=require` (set by `.ci/run`)
//! a missing server fails the test instead, so CI never skips them. `GATEHOUSE_REDIS_SERVER`
//! names the binary (default `redis-server` on `PATH`).

// Each of the two test crates that include this file uses a different subset of it, and in the
// library's tests these items live in a private module.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsString;
use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Polling step of the bounded readiness wait.
const POLL: Duration = Duration::from_millis(25);
/// The bound on one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary: `$GATEHOUSE_REDIS_SERVER`, else `redis-server` from `PATH`.
fn binary() -> OsString {
    std::env::var_os("GATEHOUSE_REDIS_SERVER").unwrap_or_else(|| "redis-server".into())
}

/// True (after saying why on stderr) when `redis-server` cannot be run and the Redis tests may
/// be skipped; panics instead under `GATEHOUSE_TEST_REDIS=require`. Call it first in every test
/// that needs a server: `if skip_without_server() { return; }`.
pub fn skip_without_server() -> bool {
    let binary = binary();
    let probe = Command::new(&binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let problem = match probe {
        Ok(status) if status.success() => return false,
        Ok(status) => format!(
            "{} --version exited with {status}",
            binary.to_string_lossy()
        ),
        Err(error) => format!("{} cannot be run: {error}", binary.to_string_lossy()),
    };
    let required = std::env::var("GATEHOUSE_TEST_REDIS").is_ok_and(|v| v == "require");
    assert!(
        !required,
        "GATEHOUSE_TEST_REDIS=require but {problem}; install it with `apt-get install redis-server`"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("a redis test")
        .to_owned();
    // Not `eprintln!`: libtest captures that and shows it only for failing tests.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: {problem} (apt-get install redis-server; GATEHOUSE_TEST_REDIS=require makes this a failure)"
    );
    true
}

/// A `redis-server` child process (no persistence), killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits (bounded) until it answers PING.
    pub async fn start() -> RedisServer {
        RedisServer::start_on(free_port()).await
    }

    /// Starts a server on `port` (e.g. the port of a killed one) and waits until it answers.
    pub async fn start_on(port: u16) -> RedisServer {
        let spawned = Command::new(binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it with `apt-get install redis-server`")
            }
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        server.wait_ready().await;
        server
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        url(self.port)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().unwrap());
            if let Some(status) = exited {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            if ping(&self.url()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not ready within {READY_TIMEOUT:?}",
                self.port
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL, as a crashed server; returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one command against the server (bounded) and returns its reply.
    pub async fn query<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd) -> T {
        let attempt = async {
            let mut connection = connection(&self.url()).await?;
            cmd.query_async::<T>(&mut connection).await
        };
        match tokio::time::timeout(QUERY_TIMEOUT, attempt).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => panic!("redis query failed: {error}"),
            Err(_) => panic!("redis query timed out"),
        }
    }

    /// The keys the server holds, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.query(::redis::cmd("KEYS").arg("*")).await;
        keys.sort();
        keys
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis://127.0.0.1:PORT/`
pub fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A multiplexed connection to `url`.
pub async fn connection(url: &str) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
    ::redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn ping(url: &str) -> bool {
    let attempt = async {
        let mut connection = connection(url).await?;
        ::redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(_))
    )
}
