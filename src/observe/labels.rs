//! The `route` metric label: a route's `path` as configured (SPEC §6), made unique.
//!
//! SPEC §2 lets two routes share a `path` when one is `exact` or their `host` or `methods`
//! differ (keptn.toml: the exact `/api` redirect and the `/api` prefix proxy). Labelled by path
//! alone they would merge into one series, so a route whose path another route shares carries
//! what tells it apart: `/api (exact)`, `/api (host=api.example.com)`, `/x (methods=GET,HEAD)`.
//! A route whose path is its own keeps the bare path, so most labels are exactly the path and
//! do not change when unrelated routes are added.

use std::sync::Arc;

use crate::config::RouteConfig;

/// The label of a request that matched no route.
pub(crate) const NO_ROUTE: &str = "none";

/// The `route` label of every route, and the explicit label of a request that matched none —
/// shared, so recording allocates nothing.
#[derive(Debug)]
pub(crate) struct RouteLabels {
    /// One per route, in config order; unique, and never [`NO_ROUTE`].
    routes: Vec<Arc<str>>,
    /// [`NO_ROUTE`].
    no_route: Arc<str>,
}

impl RouteLabels {
    /// The labels of `routes`.
    pub(crate) fn new(routes: &[RouteConfig]) -> Self {
        Self {
            routes: route_labels(routes).into_iter().map(Arc::from).collect(),
            no_route: Arc::from(NO_ROUTE),
        }
    }

    /// The metrics label of a request: its route's, or [`NO_ROUTE`] when it matched none.
    pub(crate) fn label(&self, route: Option<usize>) -> &Arc<str> {
        self.matched(route).unwrap_or(&self.no_route)
    }

    /// The label of the route a request matched; `None` when it matched none, which the access
    /// and audit lines write as `null` rather than as a name.
    pub(crate) fn matched(&self, route: Option<usize>) -> Option<&Arc<str>> {
        // An index always comes from the router built from the same config; a miss would be a
        // bug, and is labelled as no route rather than panicking on the request path.
        route.and_then(|index| self.routes.get(index))
    }
}

/// One label per route, in config order. Labels are unique and never [`NO_ROUTE`].
fn route_labels(routes: &[RouteConfig]) -> Vec<String> {
    let mut labels: Vec<String> = routes
        .iter()
        .map(|route| {
            let shared = routes
                .iter()
                .filter(|other| other.path == route.path)
                .count()
                > 1;
            if shared {
                qualified(route)
            } else {
                route.path.clone()
            }
        })
        .collect();
    // Validation already refuses routes that nothing tells apart; keep labels unique anyway so
    // a future route attribute can never merge two series silently.
    for i in 0..labels.len() {
        if labels[..i].contains(&labels[i]) || labels[i] == NO_ROUTE {
            labels[i] = format!("{} #{}", labels[i], i + 1);
        }
    }
    labels
}

/// `path (exact, host=H, methods=M,N)` with the attributes this route has.
fn qualified(route: &RouteConfig) -> String {
    let mut parts = Vec::new();
    if route.exact {
        parts.push("exact".to_owned());
    }
    if let Some(host) = &route.host {
        parts.push(format!("host={host}"));
    }
    if let Some(methods) = &route.methods {
        let names: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
        parts.push(format!("methods={}", names.join(",")));
    }
    if parts.is_empty() {
        route.path.clone()
    } else {
        format!("{} ({})", route.path, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::config::route_fixture::route;

    fn labels(routes: &[RouteConfig]) -> Vec<String> {
        let labels = RouteLabels::new(routes);
        let mut all: Vec<String> = (0..routes.len())
            .map(|i| labels.label(Some(i)).to_string())
            .collect();
        all.push(labels.label(None).to_string());
        all
    }

    #[test]
    fn own_paths_stay_bare_and_shared_paths_say_what_differs() {
        let routes = [
            route("/", true, None, None),
            route("/api", true, None, None),
            route("/api", false, None, None),
            route("/x", false, Some("a.example.com"), None),
            route("/x", false, None, Some(&[Method::GET, Method::HEAD])),
        ];
        assert_eq!(
            labels(&routes),
            [
                "/",
                "/api (exact)",
                "/api",
                "/x (host=a.example.com)",
                "/x (methods=GET,HEAD)",
                "none"
            ]
        );
    }

    #[test]
    fn labels_are_unique_even_for_routes_nothing_tells_apart() {
        let routes = [
            route("/a", false, None, None),
            route("/a", false, None, None),
            route("none", false, None, None),
        ];
        assert_eq!(labels(&routes), ["/a", "/a #2", "none #3", "none"]);
    }

    #[test]
    fn no_route_is_labelled_for_metrics_and_absent_for_logs() {
        let labels = RouteLabels::new(&[route("/a", false, None, None)]);
        assert_eq!(&**labels.label(None), NO_ROUTE);
        assert_eq!(labels.matched(None), None);
        assert_eq!(labels.matched(Some(0)).map(|l| &**l), Some("/a"));
        // An index from another config is no route, never a panic.
        assert_eq!(&**labels.label(Some(1)), NO_ROUTE);
        assert_eq!(labels.matched(Some(1)), None);
    }
}
