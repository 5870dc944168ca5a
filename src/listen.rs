//! What the gateway's listeners (`server`) and the admin listener (`admin`) share: the accept
//! step, where a failed `accept` is logged and retried after a pause instead of ending the loop,
//! and hyper's HTTP/1 buffer size for the configured header limit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::config::Limits;

/// How long an accept loop pauses after a failed `accept` (usually out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener` (`name` labels the warning). Cancel-safe: dropping the
/// future between attempts loses no connection.
pub(crate) async fn accept(listener: &TcpListener, name: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(error) => {
                // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                tracing::warn!(%error, listener = name, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// hyper's HTTP/1 read buffer: a head of `max_header_bytes` fits, a longer one gets 431.
pub(crate) fn http1_buffer(limits: &Limits) -> usize {
    limits.max_header_bytes.saturating_add(4096).max(8192)
}
