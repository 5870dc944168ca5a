//! [`RouteTable`]: picks the route for a normalised path, host and method (SPEC §2 route
//! matching), and [`upstream_path`] computes what goes upstream after `strip_prefix`/`rewrite`.
//!
//! Precedence: an `exact` route beats any prefix route; among prefix routes the longest `path`
//! wins, on segment boundaries (`/api` matches `/api` and `/api/x`, never `/apix`); a `path` ending
//! in `/` matches only below it. Routes sharing the winning path are then filtered by method,
//! host-specific ones first; if none allows the method the answer is 405 with `Allow`.
//!
//! As in NGINX, a proxied prefix route whose `path` ends in `/` answers its bare path (`/api/secrets`
//! for `/api/secrets/`) with a 301 to the slash path, unless a route names the bare path itself;
//! it beats shorter prefixes, which would otherwise take the request somewhere else.
//!
//! The table is a pre-sorted `Vec` scanned linearly: for the dozens of routes a gateway like
//! Keptn's has, that beats a trie and allocates nothing per request.

use std::borrow::Cow;

use http::{HeaderValue, Method};

use crate::config::{RouteAction, RouteConfig};

/// Why no route was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    /// Nothing matches the path (and host).
    NotFound,
    /// The path matches, the method does not; carries the `Allow` value.
    MethodNotAllowed(HeaderValue),
    /// The path is a proxied prefix route's `path` without its trailing `/`: answer 301 to
    /// [`slash_location`] (NGINX's behaviour for `location /x/ { proxy_pass ...; }`).
    AddSlash,
}

#[derive(Debug)]
struct Entry {
    /// Index into the config's routes.
    index: usize,
    path: Box<str>,
    exact: bool,
    host: Option<Box<str>>,
    methods: Option<Vec<Method>>,
    /// A proxied prefix route whose path ends in `/` (not `/` itself): its bare path redirects.
    redirects_bare_path: bool,
}

impl Entry {
    fn matches_path(&self, path: &str) -> bool {
        if self.exact {
            return path == &*self.path;
        }
        path_has_prefix(path, &self.path)
    }

    /// `path` is this route's path without the trailing `/`.
    fn is_bare_path(&self, path: &str) -> bool {
        self.redirects_bare_path && self.path.strip_suffix('/') == Some(path)
    }

    fn matches_host(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        }
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|methods| {
            methods.contains(method) || (method == Method::HEAD && methods.contains(&Method::GET))
        })
    }
}

/// Segment-boundary prefix test; a prefix ending in `/` matches anything below it.
pub(crate) fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// Routes in match order.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
}

impl RouteTable {
    /// Builds the table; `routes[i]` is reported back as index `i`.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(index, route)| Entry {
                index,
                path: route.path.as_str().into(),
                exact: route.exact,
                host: route.host.as_deref().map(Into::into),
                methods: route.methods.clone(),
                redirects_bare_path: !route.exact
                    && route.path.len() > 1
                    && route.path.ends_with('/')
                    && matches!(route.action, RouteAction::Proxy(_)),
            })
            .collect();
        // Exact first, then longer paths, then host-specific before host-less; stable keeps file order.
        entries.sort_by(|a, b| {
            b.exact
                .cmp(&a.exact)
                .then(b.path.len().cmp(&a.path.len()))
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        Self { entries }
    }

    /// The index of the route for this request.
    ///
    /// `host` is the request's host without port.
    ///
    /// # Errors
    /// [`RouteMiss`] when nothing matches, or only the method does not.
    pub fn find(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Result<usize, RouteMiss> {
        let mut candidates = self
            .entries
            .iter()
            .filter(|e| e.matches_host(host) && e.matches_path(path));
        let best = candidates.next();
        if best.is_none_or(|b| *b.path != *path)
            && self
                .entries
                .iter()
                .any(|e| e.matches_host(host) && e.is_bare_path(path))
        {
            return Err(RouteMiss::AddSlash);
        }
        let Some(best) = best else {
            return Err(RouteMiss::NotFound);
        };
        if best.allows(method) {
            return Ok(best.index);
        }
        let same_path = |e: &&Entry| e.exact == best.exact && e.path == best.path;
        let group: Vec<&Entry> = std::iter::once(best)
            .chain(candidates.filter(same_path))
            .collect();
        if let Some(entry) = group.iter().find(|e| e.allows(method)) {
            return Ok(entry.index);
        }
        Err(RouteMiss::MethodNotAllowed(allow_header(&group)))
    }
}

fn allow_header(group: &[&Entry]) -> HeaderValue {
    let mut names: Vec<&str> = group
        .iter()
        .flat_map(|e| e.methods.iter().flatten())
        .map(Method::as_str)
        .collect();
    if names.contains(&"GET") && !names.contains(&"HEAD") {
        names.push("HEAD");
    }
    names.sort_unstable();
    names.dedup();
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Location` for [`RouteMiss::AddSlash`]: the normalised path with `/` appended, query kept.
pub(crate) fn slash_location(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    }
}

/// The path sent upstream: the matched prefix removed (`strip_prefix`) or replaced (`rewrite`),
/// never empty, escapes untouched.
pub(crate) fn upstream_path<'a>(
    route_path: &str,
    strip_prefix: bool,
    rewrite: Option<&str>,
    path: &'a str,
) -> Cow<'a, str> {
    if !strip_prefix && rewrite.is_none() {
        return Cow::Borrowed(path);
    }
    let prefix = route_path.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or_default();
    let replacement = rewrite.unwrap_or("");
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    out.push_str(replacement.trim_end_matches('/'));
    if rest.is_empty() {
        out.push_str(if replacement.ends_with('/') || out.is_empty() {
            "/"
        } else {
            ""
        });
    } else {
        out.push_str(rest);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::route_fixture::route;

    fn keptn() -> RouteTable {
        RouteTable::new(&[
            route("/api", false, None, None),                        // 0
            route("/api/configuration-service", false, None, None),  // 1
            route("/api", true, None, None),                         // 2
            route("/api/secrets/", false, None, None),               // 3
            route("/", true, None, None),                            // 4
            route("/bridge", false, None, None),                     // 5
            route("/admin", false, Some("admin.example.com"), None), // 6
            route("/write", false, None, Some(&[Method::POST])),     // 7
            route("/write", false, None, Some(&[Method::GET])),      // 8
        ])
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let table = keptn();
        let get = Method::GET;
        for (path, want) in [
            ("/api/x", Ok(0)),
            ("/api/configuration-service", Ok(1)),
            ("/api/configuration-service/v1/project", Ok(1)),
            ("/api/configuration-servicex", Ok(0)),
            ("/api", Ok(2)),
            ("/apix", Err(RouteMiss::NotFound)),
            ("/api/secrets/x", Ok(3)),
            ("/api/secrets/", Ok(3)),
            ("/api/secrets", Err(RouteMiss::AddSlash)),
            ("/", Ok(4)),
            ("/other", Err(RouteMiss::NotFound)),
            ("/bridge/project", Ok(5)),
        ] {
            assert_eq!(table.find(None, &get, path), want, "{path}");
        }
    }

    #[test]
    fn a_bare_slash_route_path_redirects_unless_a_route_names_it() {
        let get = Method::GET;
        let mut redirect_only = route("/static/", false, None, None);
        redirect_only.action = RouteAction::Respond {
            status: 200,
            body: String::new(),
            content_type: String::new(),
        };
        let table = RouteTable::new(&[
            route("/", false, None, None),                         // 0
            route("/api/secrets/", false, None, None),             // 1
            route("/api/exact/", false, None, None),               // 2
            route("/api/exact", true, None, None),                 // 3
            route("/api/prefix/", false, None, None),              // 4
            route("/api/prefix", false, None, None),               // 5
            route("/hosted/", false, Some("a.example.com"), None), // 6
            redirect_only,                                         // 7
            route("/api/exactslash/", true, None, None),           // 8
        ]);
        for (host, path, want) in [
            (None, "/api/secrets", Err(RouteMiss::AddSlash)),
            (None, "/api/exact", Ok(3)),
            (None, "/api/prefix", Ok(5)),
            (Some("a.example.com"), "/hosted", Err(RouteMiss::AddSlash)),
            (Some("b.example.com"), "/hosted", Ok(0)),
            (None, "/static", Ok(0)),
            (None, "/api/exactslash", Ok(0)),
            (None, "/", Ok(0)),
        ] {
            assert_eq!(table.find(host, &get, path), want, "{host:?} {path}");
        }
        assert_eq!(
            table.find(None, &Method::DELETE, "/api/secrets"),
            Err(RouteMiss::AddSlash),
            "any method, as NGINX"
        );
        assert_eq!(slash_location("/api/secrets", None), "/api/secrets/");
        assert_eq!(
            slash_location("/api/secrets", Some("a=1&b")),
            "/api/secrets/?a=1&b"
        );
    }

    #[test]
    fn host_routes_match_only_their_host() {
        let table = keptn();
        assert_eq!(
            table.find(Some("admin.example.com"), &Method::GET, "/admin/x"),
            Ok(6)
        );
        assert_eq!(
            table.find(Some("ADMIN.example.com"), &Method::GET, "/admin"),
            Ok(6)
        );
        assert_eq!(
            table.find(Some("other.example.com"), &Method::GET, "/admin"),
            Err(RouteMiss::NotFound)
        );
        assert_eq!(
            table.find(None, &Method::GET, "/admin"),
            Err(RouteMiss::NotFound)
        );
    }

    #[test]
    fn methods_pick_among_same_path_routes_or_405() {
        let table = keptn();
        assert_eq!(table.find(None, &Method::POST, "/write"), Ok(7));
        assert_eq!(table.find(None, &Method::GET, "/write/x"), Ok(8));
        assert_eq!(table.find(None, &Method::HEAD, "/write"), Ok(8));
        assert_eq!(
            table.find(None, &Method::DELETE, "/write"),
            Err(RouteMiss::MethodNotAllowed(HeaderValue::from_static(
                "GET, HEAD, POST"
            )))
        );
    }

    #[test]
    fn strip_and_rewrite_keep_escapes_and_never_empty() {
        for (route_path, strip, rewrite, path, want) in [
            (
                "/api/configuration-service",
                true,
                None,
                "/api/configuration-service/v1/p/helm%2Fcarts.tgz",
                "/v1/p/helm%2Fcarts.tgz",
            ),
            (
                "/api/configuration-service",
                true,
                None,
                "/api/configuration-service",
                "/",
            ),
            (
                "/api/secrets/",
                true,
                None,
                "/api/secrets/v1/secret",
                "/v1/secret",
            ),
            (
                "/api/v1/auth",
                false,
                Some("/v1/auth"),
                "/api/v1/auth",
                "/v1/auth",
            ),
            ("/api", false, Some("/v1"), "/api/x", "/v1/x"),
            ("/api", false, Some("/v1/"), "/api/x", "/v1/x"),
            ("/api", false, Some("/v1/"), "/api", "/v1/"),
            ("/", true, None, "/x", "/x"),
            ("/api", false, None, "/api/x", "/api/x"),
        ] {
            assert_eq!(
                upstream_path(route_path, strip, rewrite, path),
                want,
                "{route_path} {path}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn a_prefix_never_matches_a_sibling(name in "[a-z]{1,8}", extra in "[a-z0-9]{1,8}") {
            let prefix = format!("/{name}");
            let sibling = format!("/{name}{extra}");
            proptest::prop_assert!(!path_has_prefix(&sibling, &prefix));
            let child = format!("/{name}/{extra}");
            proptest::prop_assert!(path_has_prefix(&child, &prefix));
        }
    }
}
