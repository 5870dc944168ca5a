//! Keptn end to end (issue 4 item 10): `examples/keptn.toml` in front of a mock `api-service`
//! whose `POST /v1/auth` checks `x-token` exactly as Keptn 0.8's does (go-swagger API key auth:
//! 200 with an empty body, or 401 `{"code":401,"message":"incorrect api key auth"}`) and a mock
//! `configuration-service`, both ways: as shipped (`auth = ["external"]`, NGINX `auth_request`)
//! and with the same token loaded locally from a Secret-style `file =` entry (`auth = ["token"]`),
//! which never calls `/v1/auth`.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use crate::support::auth::{INVALID_TOKEN_CHALLENGE, Layout, assert_identity};
use crate::support::files::K8sVolume;
use crate::support::upstream::Recorded;
use crate::support::{Body, TestGateway, Upstream, channel_body, empty, full};

/// The Keptn API token (a plain random string, as Keptn's installer generates).
pub(crate) const KEPTN_TOKEN: &str = "NzY3YjYxYWItY2ZlNy00ZTFhLWE3OWQtZGQ5NDY0ZmQ1NmQ0";
/// api-service's answer to a wrong `x-token`.
const INCORRECT: &str = r#"{"code":401,"message":"incorrect api key auth"}"#;
/// api-service's answer to a missing `x-token`.
const UNAUTHENTICATED: &str = r#"{"code":401,"message":"unauthenticated for invalid credentials"}"#;
/// A resource path with an encoded slash that NGINX's `rewrite` used to decode.
const RESOURCE: &str = "/api/configuration-service/v1/project/sockshop/stage/dev/service/carts/resource/helm%2Fcarts.tgz";
/// What configuration-service must receive for [`RESOURCE`].
const RESOURCE_UPSTREAM: &str =
    "/v1/project/sockshop/stage/dev/service/carts/resource/helm%2Fcarts.tgz";

fn json_response(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_owned()))
        .unwrap()
}

/// go-swagger's API key check on `x-token`, as Keptn's api-service configures it: the 401 to
/// answer, or `None` when the token is right.
fn key_auth(req: &Recorded) -> Option<Response<Body>> {
    match req.header("x-token") {
        Some(token) if token == KEPTN_TOKEN => None,
        Some(_) => Some(json_response(StatusCode::UNAUTHORIZED, INCORRECT)),
        None => Some(json_response(StatusCode::UNAUTHORIZED, UNAUTHENTICATED)),
    }
}

/// A mock api-service: `POST /v1/auth` answers 200 with an empty body for the right `x-token`;
/// every other path checks `x-token` too and answers JSON naming the path.
async fn api_service() -> Upstream {
    Upstream::spawn(|req| {
        let path = req.uri.split('?').next().unwrap_or_default();
        if path == "/v1/auth" {
            if req.method != Method::POST {
                return json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    r#"{"code":405,"message":"method not allowed"}"#,
                );
            }
            return key_auth(req).unwrap_or_else(|| Response::new(empty()));
        }
        if path.starts_with("/swagger-ui") {
            return Response::new(full("swagger-ui"));
        }
        key_auth(req).unwrap_or_else(|| {
            json_response(
                StatusCode::OK,
                &format!(r#"{{"service":"api-service","path":"{path}"}}"#),
            )
        })
    })
    .await
}

/// A mock configuration-service answering every request with the resource bytes.
async fn configuration_service() -> Upstream {
    Upstream::spawn(|_| {
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(full(Bytes::from_static(b"helm chart bytes")))
            .unwrap()
    })
    .await
}

/// The requests api-service got on `/v1/auth`.
fn auth_calls(api: &Upstream) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.uri.starts_with("/v1/auth"))
        .collect()
}

/// `examples/keptn.toml` as shipped, pointed at the mocks: api-service (`:8081`, also the
/// external auth URL) and configuration-service (`:8082`) at the mocks, the other services at a
/// refusing port, listeners on `127.0.0.1:0`, the harness's certificates.
fn keptn_config(api: SocketAddr, configuration: SocketAddr) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/keptn.toml");
    let mut text = std::fs::read_to_string(path).unwrap();
    let refusing = Upstream::refusing().to_string();
    let replacements = [
        (
            "listen = \"0.0.0.0:8443\"",
            "listen = \"127.0.0.1:0\"".to_owned(),
        ),
        (
            "admin_listen = \"127.0.0.1:9901\"",
            "admin_listen = \"127.0.0.1:0\"".to_owned(),
        ),
        ("\"../certs/tls.crt\"", "\"certs/tls.crt\"".to_owned()),
        ("\"../certs/tls.key\"", "\"certs/tls.key\"".to_owned()),
        ("127.0.0.1:8081", api.to_string()),
        ("127.0.0.1:8082", configuration.to_string()),
        ("127.0.0.1:8083", refusing.clone()),
        ("127.0.0.1:8084", refusing.clone()),
        ("127.0.0.1:8085", refusing.clone()),
        ("127.0.0.1:8086", refusing.clone()),
        ("127.0.0.1:8087", refusing),
    ];
    for (from, to) in replacements {
        replace(&mut text, from, &to);
    }
    text
}

/// Replaces every `from` in `text`, which must contain it (a changed example fails loudly).
fn replace(text: &mut String, from: &str, to: &str) {
    assert!(
        text.contains(from),
        "examples/keptn.toml no longer contains {from:?}"
    );
    *text = text.replace(from, to);
}

/// The shipped example with the mocks; nothing else changed.
pub(crate) async fn keptn_as_shipped() -> (TestGateway, Upstream, Upstream) {
    let (api, configuration) = (api_service().await, configuration_service().await);
    let config = keptn_config(api.addr, configuration.addr);
    let gw = Layout::new().start(&config).await;
    (gw, api, configuration)
}

/// The example with the Keptn token loaded locally, as its `[auth]` comment describes: a token
/// store whose `keptn` entry reads the mounted `keptn-api-token` Secret (`file =`), and
/// `auth = ["token"]` on `/api/configuration-service`.
async fn keptn_with_local_token() -> (TestGateway, Upstream, Upstream) {
    let (api, configuration) = (api_service().await, configuration_service().await);
    let mut config = keptn_config(api.addr, configuration.addr);
    replace(
        &mut config,
        "[auth]\n",
        "[auth]\ntokens = \"tokens.toml\"\n",
    );
    replace(
        &mut config,
        "path = \"/api/configuration-service\"\nupstream = \"configuration-service\"\nstrip_prefix = true\nauth = [\"external\"]",
        "path = \"/api/configuration-service\"\nupstream = \"configuration-service\"\nstrip_prefix = true\nauth = [\"token\"]",
    );
    let layout = Layout::new();
    K8sVolume::create(
        &layout.path("secrets/keptn-api-token"),
        &[("keptn-api-token", KEPTN_TOKEN.as_bytes())],
    );
    layout.append_tokens(
        "[[tokens]]\nid = \"keptn\"\nfile = \"secrets/keptn-api-token/keptn-api-token\"\nroles = [\"admin\"]\n",
    );
    let gw = layout.start(&config).await;
    (gw, api, configuration)
}

async fn get_with_token(gw: &TestGateway, path: &str, token: Option<&str>) -> crate::support::Resp {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("x-token", token);
    }
    gw.client().send(request.body(empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_as_shipped_allows_the_right_x_token_and_keeps_encoded_slashes() {
    let (gw, api, configuration) = keptn_as_shipped().await;

    let resp = get_with_token(&gw, RESOURCE, Some(KEPTN_TOKEN)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(&resp.body[..], b"helm chart bytes");

    let got = configuration.single_request();
    assert_eq!(got.method, Method::GET);
    assert_eq!(got.uri, RESOURCE_UPSTREAM, "%2F stays encoded");
    assert_eq!(
        got.header("x-token"),
        Some(KEPTN_TOKEN),
        "Keptn services re-check x-token"
    );
    assert_eq!(got.header("x-auth-method"), Some("external"));

    let asked = api.single_request();
    assert_eq!(asked.method, Method::POST);
    assert_eq!(asked.uri, "/v1/auth");
    assert!(asked.body.is_empty());
    assert_eq!(asked.header("content-length"), Some("0"));
    assert_eq!(asked.header("x-token"), Some(KEPTN_TOKEN));
    assert_eq!(asked.header("x-forwarded-method"), Some("GET"));
    assert_eq!(asked.header("x-forwarded-uri"), Some(RESOURCE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_as_shipped_refuses_a_wrong_x_token_with_keptns_401_body() {
    let (gw, api, configuration) = keptn_as_shipped().await;

    let resp = get_with_token(&gw, RESOURCE, Some("wrong-token")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.text(), INCORRECT);
    assert_eq!(resp.header("content-type"), Some("application/json"));

    let resp = get_with_token(&gw, "/api/controlPlane/v1/project", None).await;
    assert_eq!(resp.status, 401, "no credential: api-service decides");
    assert_eq!(resp.text(), UNAUTHENTICATED);

    assert_eq!(configuration.count(), 0, "{:#?}", configuration.requests());
    assert_eq!(auth_calls(&api).len(), 2);
    assert_eq!(api.count(), 2, "only auth calls reached api-service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_with_the_token_loaded_locally_allows_without_calling_v1_auth() {
    let (gw, api, configuration) = keptn_with_local_token().await;

    let resp = get_with_token(&gw, RESOURCE, Some(KEPTN_TOKEN)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(&resp.body[..], b"helm chart bytes");

    let got = configuration.single_request();
    assert_eq!(got.uri, RESOURCE_UPSTREAM, "%2F stays encoded");
    assert_identity(&got, "keptn", "admin", "token");
    assert_eq!(got.header("x-token"), Some(KEPTN_TOKEN));
    assert_eq!(
        auth_calls(&api).len(),
        0,
        "checked locally: {:#?}",
        api.requests()
    );
    assert_eq!(api.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_with_the_token_loaded_locally_refuses_a_wrong_token_with_invalid_token() {
    let (gw, api, configuration) = keptn_with_local_token().await;

    let resp = get_with_token(&gw, RESOURCE, Some("wrong-token")).await;
    assert_eq!(resp.error(401), "invalid token");
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE)
    );
    let resp = get_with_token(&gw, RESOURCE, None).await;
    assert_eq!(resp.error(401), "missing credentials");

    assert_eq!(configuration.count(), 0);
    assert_eq!(api.count(), 0, "no call to /v1/auth: {:#?}", api.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_api_v1_auth_reaches_api_service_as_post_v1_auth_without_body() {
    let (gw, api, _configuration) = keptn_as_shipped().await;
    let client = gw.client();

    let get = client
        .send(
            Request::get("/api/v1/auth")
                .header("x-token", KEPTN_TOKEN)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.body.is_empty(), "Keptn's 200 has an empty body");

    let post = client
        .send(
            Request::post("/api/v1/auth")
                .header("x-token", KEPTN_TOKEN)
                .header("content-type", "application/json")
                .body(full("{\"ignored\":true}"))
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, 200, "{}", post.text());

    let (tx, body) = channel_body();
    tx.send(Bytes::from_static(b"chunk one,")).await.unwrap();
    tx.send(Bytes::from_static(b"chunk two")).await.unwrap();
    drop(tx);
    let chunked = client
        .send(
            Request::put("/api/v1/auth")
                .header("x-token", KEPTN_TOKEN)
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(chunked.status, 200, "{}", chunked.text());

    let wrong = client
        .send(
            Request::post("/api/v1/auth")
                .header("x-token", "wrong-token")
                .body(full("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.text(), INCORRECT, "upstream 401 bodies pass through");

    let got = api.wait_for_requests(4).await;
    for request in &got {
        assert_eq!(request.method, Method::POST, "{request:?}");
        assert_eq!(request.uri, "/v1/auth");
        assert!(request.body.is_empty(), "no body: {:?}", request.body);
        assert!(
            request.header("content-length").is_none_or(|l| l == "0"),
            "content-length {:?}",
            request.header("content-length")
        );
        assert_eq!(request.header("transfer-encoding"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_api_and_swagger_routes_reach_their_services_without_gateway_auth() {
    let (gw, api, configuration) = keptn_as_shipped().await;

    let resp = get_with_token(&gw, "/api/v1/metadata", Some(KEPTN_TOKEN)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["path"], "/v1/metadata");
    let resp = get_with_token(&gw, "/api/v1/metadata", Some("wrong-token")).await;
    assert_eq!(resp.status, 401, "api-service checks x-token itself");
    assert_eq!(resp.text(), INCORRECT);

    let resp = get_with_token(
        &gw,
        "/api/configuration-service/swagger-ui/swagger.yaml",
        None,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        configuration.single_request().uri,
        "/swagger-ui/swagger.yaml"
    );

    assert_eq!(
        auth_calls(&api).len(),
        0,
        "public routes never ask /v1/auth"
    );
    let got = api.wait_for_requests(2).await;
    assert_eq!(got[0].uri, "/v1/metadata");
    assert_eq!(got[0].header("x-auth-method"), None);
}
