//! gatehouse: an authenticating TLS edge gateway.
//!
//! # Architecture
//!
//! `cli` parses the command line and starts a [`server::Gateway`]. The gateway loads
//! [`config`] (two stages: serde mirror, then validation collecting every error), builds a
//! [`runtime::Runtime`] — the immutable snapshot of everything a request needs — and stores it in
//! an `ArcSwap` inside [`runtime::Shared`]. [`reload`] builds a new runtime off the request
//! path and swaps it in; a request loads the snapshot once and keeps it to the end.
//!
//! # A request's path
//!
//! 1. [`server`] accepts under the `max_connections` cap, wraps the socket with an idle deadline,
//!    completes TLS with the runtime's `ServerConfig`, serves HTTP/1.1 or h2 (hyper-util auto).
//! 2. [`pipeline::handle`] loads the runtime once and builds the request context (request id,
//!    client IP under the trusted-proxy rule).
//! 3. [`http::sanitize`] refuses smuggling shapes (400) and oversized headers (431);
//!    [`http::normalize`] normalises the path.
//! 4. [`auth::login`] answers the `[auth.session]` login/session/logout endpoints; then
//!    [`router`] picks the route (404/405); redirect and respond routes answer here.
//! 5. [`auth`]: client-sent identity headers and the session cookie stripped, the route's
//!    credential kinds tried (client certificate, token store, JWT, session cookie with its CSRF
//!    rule, external auth) → one `Identity`, then roles and the write gate; the WebSocket Origin
//!    rule; [`ratelimit`] by identity, IP or route (local or Redis).
//! 6. [`proxy::forward`] rewrites the path and sets forwarded headers. A request with no body
//!    goes over a pooled connection the request's own task drives (`proxy::exchange`, the wire
//!    format in `http::wire`); one with a body streams it, with its size limit (413), through
//!    hyper's client on the same pool; a WebSocket handshake is bridged. 502/504 on failure; the
//!    response streams back.
//! 7. Back in `handle`: [`error::GatewayError`] becomes JSON, `x-request-id` is set, the access
//!    line is begun ([`observe::access_log`]) and the response body wrapped
//!    ([`http::counted::OnEnd`]): when it ends, the byte counters are bumped and the line goes to
//!    the writer thread ([`observe::log_writer`]), off the request path.
//!
//! The [`admin`] listener serves `/healthz`, `/readyz`, `/metrics`, `/config` and `POST /reload`.

/// `println!` that never panics: a closed stdout (`gatehouse token list | head`) is not a crash.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod admin;
pub mod auth;
pub mod cli;
pub mod config;
mod demo;
mod error;
mod files;
pub mod http;
mod listen;
pub mod observe;
mod pipeline;
mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod router;
pub mod runtime;
mod secret;
pub mod server;
mod timestamp;
pub(crate) mod tls;
pub mod token_cmd;
