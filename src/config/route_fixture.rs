//! Test fixture: a [`RouteConfig`] with only what route matching reads (path, exact, host,
//! methods) chosen, for the router's and the route labels' tests.

use http::Method;

use super::{ProxyAction, RouteAction, RouteConfig};

/// A route to upstream 0 with no auth, roles, rate limit or WebSocket.
pub(crate) fn route(
    path: &str,
    exact: bool,
    host: Option<&str>,
    methods: Option<&[Method]>,
) -> RouteConfig {
    RouteConfig {
        path: path.to_owned(),
        exact,
        host: host.map(str::to_owned),
        methods: methods.map(<[Method]>::to_vec),
        action: RouteAction::Proxy(ProxyAction {
            upstream: 0,
            strip_prefix: false,
            rewrite: None,
            proxy_method: None,
            pass_request_body: true,
        }),
        auth: Vec::new(),
        roles: Vec::new(),
        write_roles: Vec::new(),
        rate_limit: None,
        websocket: false,
        allowed_origins: Vec::new(),
    }
}
