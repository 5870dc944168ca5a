//! Integration tests for gatehouse: the gateway runs in-process on `127.0.0.1:0` with a temp
//! config, in front of real recording upstreams, driven by a rustls client that trusts a test CA.
//! One binary, one module per area; the harness is in `support`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod support;

mod access_log;
mod admin;
mod audit;
mod auth;
mod build_errors;
mod cli;
mod cli_ops;
mod config_table;
mod keepalive;
mod keptn;
mod limits;
mod metrics_ops;
mod mtls;
mod plain;
mod proxy;
mod ratelimit;
mod reload;
mod reload_auth;
mod routing;
mod secrets;
mod session;
mod shutdown;
mod sound_auth;
mod sound_config;
mod sound_conn;
mod sound_proxy;
mod sound_reload;
mod sound_tls;
mod spine;
mod streaming;
mod structure;
mod tls;
mod upstream_wire;
mod websocket;
