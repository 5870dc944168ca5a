//! Route matching (segment-boundary longest prefix, `exact`, `host`, `methods`), path rewriting
//! (`strip_prefix`, `rewrite`) with reserved escapes kept, `redirect`, `respond`, and path
//! normalisation before matching (SPEC §2 "Route matching", §4).

use http::Request;
use http::header::{ALLOW, HOST, LOCATION};

use crate::support::{TestGateway, Upstream, empty, route_toml, static_route_toml, upstream_toml};

/// Two upstreams `a` and `b` and a gateway with `routes`.
async fn two_upstreams(routes: &str) -> (TestGateway, Upstream, Upstream) {
    let a = Upstream::text("a").await;
    let b = Upstream::text("b").await;
    let config = format!(
        "{}{}{routes}",
        upstream_toml("a", &[a.addr], ""),
        upstream_toml("b", &[b.addr], "")
    );
    (TestGateway::start(&config).await, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_matches_on_segment_boundary_only() {
    let (gw, a, _b) = two_upstreams(&route_toml("/api", "a", "")).await;

    for path in ["/api", "/api/", "/api/x/y"] {
        let resp = gw.get(path).await;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.text(), "a", "{path}");
    }
    let resp = gw.get("/apix").await;
    assert_eq!(resp.error(404), "no route for /apix");
    assert_eq!(
        a.requests()
            .iter()
            .map(|r| r.uri.as_str())
            .collect::<Vec<_>>(),
        ["/api", "/api/", "/api/x/y"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins() {
    let routes = format!(
        "{}{}",
        route_toml("/api", "a", ""),
        route_toml("/api/configuration-service", "b", "")
    );
    let (gw, _a, _b) = two_upstreams(&routes).await;

    assert_eq!(gw.get("/api/configuration-service/v1").await.text(), "b");
    assert_eq!(gw.get("/api/configuration-service").await.text(), "b");
    assert_eq!(gw.get("/api/configuration-servicex").await.text(), "a");
    assert_eq!(gw.get("/api/other").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_route_wins_over_prefix() {
    let routes = format!(
        "{}{}",
        route_toml("/", "a", ""),
        static_route_toml(
            "/",
            "exact = true\nrespond = { status = 200, body = \"root\" }"
        )
    );
    let (gw, a, _b) = two_upstreams(&routes).await;

    assert_eq!(gw.get("/").await.text(), "root");
    assert_eq!(gw.get("/?q=1").await.text(), "root");
    assert_eq!(gw.get("/x").await.text(), "a");
    assert_eq!(a.single_request().uri, "/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_route_matches_only_below_it() {
    let routes = format!(
        "{}{}",
        route_toml("/api", "a", ""),
        route_toml("/api/secrets/", "b", "")
    );
    let (gw, _a, b) = two_upstreams(&routes).await;

    assert_eq!(gw.get("/api/secrets/x").await.text(), "b");
    let bare = gw.get("/api/secrets").await;
    assert_eq!(bare.status, 301, "NGINX's redirect to the slash path");
    assert_eq!(bare.header("location"), Some("/api/secrets/"));
    assert_eq!(gw.get("/api/secretsx").await.text(), "a");
    assert_eq!(b.single_request().uri, "/api/secrets/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_route_is_chosen_by_host_header() {
    let routes = format!(
        "{}{}",
        route_toml("/svc", "a", "host = \"a.example.test\""),
        route_toml("/svc", "b", "")
    );
    let (gw, _a, _b) = two_upstreams(&routes).await;

    let client = gw.client();
    let resp = client
        .send(
            Request::get("/svc/x")
                .header(HOST, "a.example.test")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "a");
    assert_eq!(
        client.get("/svc/x").await.text(),
        "b",
        "Host localhost:PORT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_route_is_chosen_by_h2_authority() {
    let routes = format!(
        "{}{}",
        route_toml("/svc", "a", "host = \"a.example.test\""),
        route_toml("/svc", "b", "")
    );
    let (gw, a, _b) = two_upstreams(&routes).await;

    let client = gw.h2_client();
    let resp = client
        .send(
            Request::get("https://a.example.test/svc/x")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.text(), "a");
    assert_eq!(client.get("/svc/x").await.text(), "b");
    assert_eq!(
        a.single_request().header("host"),
        Some("a.example.test"),
        "the upstream gets :authority as Host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_not_allowed_gets_405_with_allow() {
    let (gw, a, _b) =
        two_upstreams(&route_toml("/only", "a", "methods = [\"GET\", \"POST\"]")).await;

    let resp = gw
        .client()
        .send(Request::delete("/only/x").body(empty()).unwrap())
        .await;
    assert_eq!(resp.error(405), "method DELETE not allowed");
    let allow = allow_set(resp.header(ALLOW.as_str()).expect("405 carries Allow"));
    assert!(allow.contains(&"GET".to_owned()), "Allow: {allow:?}");
    assert!(allow.contains(&"POST".to_owned()), "Allow: {allow:?}");
    assert!(!allow.contains(&"DELETE".to_owned()), "Allow: {allow:?}");
    assert_eq!(a.count(), 0, "a refused method never reaches the upstream");

    assert_eq!(gw.get("/only/x").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_sharing_a_path_are_split_by_method() {
    let routes = format!(
        "{}{}",
        route_toml("/m", "a", "methods = [\"GET\"]"),
        route_toml("/m", "b", "methods = [\"POST\"]")
    );
    let (gw, _a, _b) = two_upstreams(&routes).await;
    let client = gw.client();

    assert_eq!(client.get("/m").await.text(), "a");
    let post = client
        .send(Request::post("/m").body(empty()).unwrap())
        .await;
    assert_eq!(post.text(), "b");
    let put = client.send(Request::put("/m").body(empty()).unwrap()).await;
    assert_eq!(put.error(405), "method PUT not allowed");
    let allow = allow_set(put.header(ALLOW.as_str()).expect("405 carries Allow"));
    assert!(
        allow.contains(&"GET".to_owned()) && allow.contains(&"POST".to_owned()),
        "Allow lists the methods of every route on the path: {allow:?}"
    );
}

fn allow_set(allow: &str) -> Vec<String> {
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_keeps_encoded_slash_and_query() {
    let up = Upstream::echo().await;
    let config = format!(
        "{}{}",
        upstream_toml("configuration-service", &[up.addr], ""),
        route_toml(
            "/api/configuration-service",
            "configuration-service",
            "strip_prefix = true"
        )
    );
    let gw = TestGateway::start(&config).await;

    let resp = gw
        .get("/api/configuration-service/v1/project/p/resource/helm%2Fcarts.tgz?x=1&y=a%2Fb")
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.single_request().uri,
        "/v1/project/p/resource/helm%2Fcarts.tgz?x=1&y=a%2Fb"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_of_the_bare_prefix_sends_root() {
    let up = Upstream::echo().await;
    let config = format!(
        "{}{}",
        upstream_toml("svc", &[up.addr], ""),
        route_toml("/api/svc", "svc", "strip_prefix = true")
    );
    let gw = TestGateway::start(&config).await;

    assert_eq!(gw.get("/api/svc?q=1").await.status, 200);
    assert_eq!(gw.get("/api/svc/").await.status, 200);
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/?q=1", "/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_replaces_the_matched_prefix() {
    let up = Upstream::echo().await;
    let config = format!(
        "{}{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api/v1/auth", "api-service", "rewrite = \"/v1/auth\""),
        route_toml("/api/controlPlane", "api-service", "rewrite = \"/v1\"")
    );
    let gw = TestGateway::start(&config).await;

    assert_eq!(gw.get("/api/v1/auth").await.status, 200);
    assert_eq!(
        gw.get("/api/controlPlane/project/p%2Fq/stage?x=%2F")
            .await
            .status,
        200
    );
    assert_eq!(
        gw.get("/api/controlPlanex").await.error(404),
        "no route for /api/controlPlanex"
    );
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/v1/auth", "/v1/project/p%2Fq/stage?x=%2F"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrewritten_route_passes_path_and_query_unchanged() {
    let up = Upstream::echo().await;
    let config = format!(
        "{}{}",
        upstream_toml("bridge", &[up.addr], ""),
        route_toml("/bridge", "bridge", "")
    );
    let gw = TestGateway::start(&config).await;

    let resp = gw.get("/bridge/project/a%2Fb?tab=x&q=%20y").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["uri"], "/bridge/project/a%2Fb?tab=x&q=%20y");
    assert_eq!(
        up.single_request().uri,
        "/bridge/project/a%2Fb?tab=x&q=%20y"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_route_answers_308_with_location_as_written() {
    let routes = format!(
        "{}{}",
        static_route_toml("/", "exact = true\nredirect = \"/bridge\""),
        static_route_toml("/old", "redirect = \"/new\"\nredirect_status = 301")
    );
    let gw = TestGateway::start(&routes).await;

    let resp = gw.get("/").await;
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header(LOCATION.as_str()), Some("/bridge"));
    assert!(resp.header("x-request-id").is_some());

    let resp = gw.get("/old").await;
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header(LOCATION.as_str()), Some("/new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_route_answers_static_body() {
    let gw = TestGateway::start(&static_route_toml(
        "/nginx-health",
        "respond = { status = 200, body = \"OK\\n\" }",
    ))
    .await;

    let resp = gw.get("/nginx-health").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "OK\n");
    assert!(resp.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_gets_404_json() {
    let gw = TestGateway::start(&static_route_toml(
        "/nginx-health",
        "respond = { status = 200, body = \"OK\\n\" }",
    ))
    .await;

    let resp = gw.get("/nothing/here").await;
    assert_eq!(resp.error(404), "no route for /nothing/here");
    let h2 = gw.h2_client().get("/nothing").await;
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h2.error(404), "no route for /nothing");
}

/// `/public` → `a`, `/private` → `b`: the shape a traversal attack aims at (once auth lands,
/// `/private` is the protected one).
async fn public_private() -> (TestGateway, Upstream, Upstream) {
    let a = Upstream::echo().await;
    let b = Upstream::echo().await;
    let config = format!(
        "{}{}{}{}",
        upstream_toml("a", &[a.addr], ""),
        upstream_toml("b", &[b.addr], ""),
        route_toml("/public", "a", ""),
        route_toml("/private", "b", "")
    );
    (TestGateway::start(&config).await, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_segment_is_resolved_before_matching() {
    let (gw, a, b) = public_private().await;

    let resp = gw.raw_get("/public/../private/x?q=1").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(a.count(), 0, "the raw prefix /public must not match");
    assert_eq!(b.single_request().uri, "/private/x?q=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_dot_is_resolved_before_matching() {
    let (gw, a, b) = public_private().await;

    for path in [
        "/public/%2e%2e/private/x",
        "/public/%2E%2E/private/y",
        "/public/.%2e/private/z",
    ] {
        let resp = gw.raw_get(path).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
    }
    assert_eq!(a.count(), 0);
    let uris: Vec<String> = b.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/private/x", "/private/y", "/private/z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_and_duplicate_slash_segments_are_removed() {
    let (gw, a, b) = public_private().await;

    for path in ["/public/./x", "//public///y", "/public/z/../w"] {
        let resp = gw.raw_get(path).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
    }
    assert_eq!(b.count(), 0);
    let uris: Vec<String> = a.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/public/x", "/public/y", "/public/w"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_characters_are_decoded() {
    let (gw, a, b) = public_private().await;

    let resp = gw.raw_get("/%70rivate/%7Euser").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(a.count(), 0);
    assert_eq!(b.single_request().uri, "/private/~user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_never_becomes_a_separator() {
    let (gw, a, b) = public_private().await;

    let resp = gw.raw_get("/public/..%2Fprivate").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(a.single_request().uri, "/public/..%2Fprivate");

    let resp = gw.raw_get("/public%2F..%2Fprivate").await;
    assert_eq!(resp.error(404), "no route for /public%2F..%2Fprivate");
    assert_eq!(b.count(), 0);
}
