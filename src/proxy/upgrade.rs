//! WebSocket upgrades: recognising a handshake, the Origin rule, and the byte tunnel between the
//! client and upstream once both sides switched protocols.
//!
//! Only `Upgrade: websocket` is ever tunnelled, and only on `websocket = true` routes; any other
//! `Upgrade` (such as `h2c`) is dropped as a hop-by-hop header, so no tunnel can carry requests
//! past the gateway's checks. The tunnel owns only the two sockets, so it lives on after a reload
//! with whatever runtime it started under. It keeps its connection's `max_connections` permit
//! (held by the client socket's IO) and ends when `shutdown_grace` is over (SPEC §8.7).

use http::{HeaderMap, HeaderValue, Method, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// True for an HTTP/1.1 WebSocket handshake (`GET`, `Connection: upgrade`, `Upgrade: websocket`).
pub(crate) fn is_websocket_handshake(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && connection_has_upgrade(headers)
        && header_is(headers, &header::UPGRADE, "websocket")
}

fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn header_is(headers: &HeaderMap, name: &header::HeaderName, want: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// The Origin rule: no `Origin` (a non-browser client) is allowed; otherwise the origin must be in
/// `allowed` (lower-case, no trailing slash), or — when `allowed` is empty — name the same host
/// (and port) the request was sent to.
pub(crate) fn origin_allowed(
    origin: Option<&HeaderValue>,
    host: Option<&str>,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin else { return true };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a == "*" || *a == origin);
    }
    let Some(host) = host else { return false };
    let origin_host = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest);
    origin_host.eq_ignore_ascii_case(host)
        || strip_default_port(origin_host).eq_ignore_ascii_case(strip_default_port(host))
}

fn strip_default_port(host: &str) -> &str {
    host.strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .unwrap_or(host)
}

/// Restores the two headers a WebSocket handshake needs after hop-by-hop removal.
pub(crate) fn restore_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

tokio::task_local! {
    /// The connection a WebSocket handshake arrived on; see [`TunnelScope`].
    static TUNNEL_SCOPE: TunnelScope;
}

/// What a tunnel needs from the connection it came from: the signal that ends it when
/// `shutdown_grace` is over. The `max_connections` permit needs no passing: it lives in the
/// connection's IO, which the tunnel owns after the upgrade.
///
/// The server runs each connection's future inside [`TunnelScope::run`]. hyper polls an HTTP/1
/// service inside the connection's own task, so [`spawn_tunnel`], which the service calls
/// synchronously, finds the scope there. (HTTP/2 services run on tasks of their own, but a
/// WebSocket handshake is only HTTP/1.1: h2 forbids `Connection: upgrade`.)
#[derive(Clone, Debug)]
pub(crate) struct TunnelScope {
    closing: watch::Receiver<bool>,
}

impl TunnelScope {
    /// A scope whose tunnels end once `closing` turns true (or its sender is gone).
    pub(crate) fn new(closing: watch::Receiver<bool>) -> Self {
        Self { closing }
    }

    /// Runs `connection` (a connection's whole future) with this scope.
    pub(crate) async fn run<F: Future>(self, connection: F) -> F::Output {
        TUNNEL_SCOPE.scope(self, connection).await
    }
}

/// Waits for both sides to finish switching protocols, then copies bytes both ways until either
/// side closes, or until the connection's [`TunnelScope`] says the grace period is over.
pub(crate) fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, name: std::sync::Arc<str>) {
    let closing = TUNNEL_SCOPE.try_with(|scope| scope.closing.clone()).ok();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upstream = %name, %error, "websocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let outcome = tokio::select! {
            outcome = copy => outcome,
            () = closed(closing) => {
                tracing::debug!(upstream = %name, "websocket closed: shutdown_grace is over");
                return;
            }
        };
        match outcome {
            Ok((to_upstream, to_client)) => {
                tracing::debug!(upstream = %name, to_upstream, to_client, "websocket closed")
            }
            Err(error) => {
                tracing::debug!(upstream = %name, %error, "websocket ended with an error")
            }
        }
    });
}

/// Resolves when the scope's signal turns true or its sender is gone; never without a scope.
async fn closed(closing: Option<watch::Receiver<bool>>) {
    match closing {
        Some(mut closing) => {
            let _ = closing.wait_for(|closed| *closed).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rule() {
        let same = HeaderValue::from_static("https://gw.example:8443");
        let foreign = HeaderValue::from_static("https://evil.example");
        assert!(origin_allowed(None, Some("gw.example:8443"), &[]));
        assert!(origin_allowed(Some(&same), Some("gw.example:8443"), &[]));
        assert!(!origin_allowed(
            Some(&foreign),
            Some("gw.example:8443"),
            &[]
        ));
        assert!(origin_allowed(
            Some(&foreign),
            Some("gw.example"),
            &["https://evil.example".to_owned()]
        ));
        let default_port = HeaderValue::from_static("https://gw.example");
        assert!(origin_allowed(
            Some(&default_port),
            Some("gw.example:443"),
            &[]
        ));
    }

    #[test]
    fn handshake_needs_get_connection_and_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_handshake(&Method::GET, &headers));
        assert!(!is_websocket_handshake(&Method::POST, &headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_websocket_handshake(&Method::GET, &headers));
    }
}
