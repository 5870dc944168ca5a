use super::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// What the mock auth service received.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// What the mock auth service answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    /// Hold the answer until [`Mock::release`].
    hold: bool,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            hold: false,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    fn held(mut self) -> Self {
        self.hold = true;
        self
    }
}

struct MockState {
    reply: Box<dyn Fn(&Recorded) -> Reply + Send + Sync>,
    requests: Mutex<Vec<Recorded>>,
    count: AtomicUsize,
    arrived: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
}

/// A real HTTP/1.1 auth service on 127.0.0.1 that records each request and answers as
/// scripted.
struct Mock {
    addr: SocketAddr,
    state: Arc<MockState>,
    arrivals: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl Mock {
    async fn start(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived, arrivals) = mpsc::unbounded_channel();
        let (release, release_rx) = watch::channel(false);
        let state = Arc::new(MockState {
            reply: Box::new(reply),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            arrived,
            release: release_rx,
        });
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            arrivals,
            release,
        }
    }

    fn url(&self, path: &str) -> Uri {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    async fn arrival(&mut self) {
        tokio::time::timeout(WAIT, self.arrivals.recv())
            .await
            .expect("auth request arrives")
            .expect("mock running");
    }

    fn release(&self) {
        self.release.send_replace(true);
    }
}

async fn answer(
    state: Arc<MockState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let body = incoming
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    };
    let reply = (state.reply)(&recorded);
    state.requests.lock().unwrap().push(recorded);
    state.count.fetch_add(1, Ordering::SeqCst);
    let _ = state.arrived.send(());
    if reply.hold {
        let mut release = state.release.clone();
        let _ = release.wait_for(|released| *released).await;
    }
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .append(name, HeaderValue::from_str(&value).unwrap());
    }
    Ok(response)
}

fn settings(url: Uri) -> ExternalSettings {
    ExternalSettings {
        url,
        method: Method::GET,
        forward_headers: vec![
            HeaderName::from_static("x-token"),
            HeaderName::from_static("authorization"),
        ],
        copy_headers: vec![
            HeaderName::from_static("x-user"),
            HeaderName::from_static("x-tenant"),
        ],
        timeout: Duration::from_secs(5),
        cache_ttl: Duration::ZERO,
        negative_cache_ttl: Duration::ZERO,
        cache_key: CacheKey::Request,
    }
}

fn cached(url: Uri) -> ExternalSettings {
    ExternalSettings {
        cache_ttl: Duration::from_secs(60),
        negative_cache_ttl: Duration::from_secs(60),
        ..settings(url)
    }
}

fn client_headers(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-token", HeaderValue::from_str(token).unwrap());
    headers
}

async fn check_with(auth: &ExternalAuth, headers: &HeaderMap) -> ExternalDecision {
    check_on(auth, &Method::PUT, "/api/v1/thing?x=1", headers).await
}

async fn check_on(
    auth: &ExternalAuth,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
) -> ExternalDecision {
    let request_id = RequestId::from_client(&HeaderValue::from_static("req-1")).unwrap();
    let request = request(method, uri, headers, &request_id);
    tokio::time::timeout(WAIT, auth.check(&request))
        .await
        .expect("check finishes")
}

/// A request from 203.0.113.7 to `gateway.example`.
fn request<'a>(
    method: &'a Method,
    uri: &'a str,
    headers: &'a HeaderMap,
    request_id: &'a RequestId,
) -> AuthRequest<'a> {
    AuthRequest {
        method,
        uri,
        host: Some("gateway.example"),
        headers,
        client_ip: "203.0.113.7".parse().unwrap(),
        request_id,
    }
}

async fn check(auth: &ExternalAuth, token: &str) -> ExternalDecision {
    check_with(auth, &client_headers(token)).await
}

fn denial(decision: &ExternalDecision) -> Arc<PassThrough> {
    match decision {
        ExternalDecision::Deny(deny) => deny.clone(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn allow_copies_configured_headers_and_names_the_subject() {
    let mock = Mock::start(|_| {
        Reply::status(200)
            .header("x-tenant", "t1")
            .header("x-user", "alice")
            .header("x-other", "not copied")
            .body("ok")
    })
    .await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let ExternalDecision::Allow {
        identity,
        copy,
        anonymous,
    } = check(&auth, "secret-token").await
    else {
        panic!("expected allow");
    };
    assert_eq!(&*identity.subject, "alice");
    assert!(identity.roles.is_empty());
    assert_eq!(identity.method, AuthMethod::External);
    assert_eq!(identity.expires, None);
    assert!(!anonymous);
    assert_eq!(header(&copy, "x-user"), ["alice"]);
    assert_eq!(header(&copy, "x-tenant"), ["t1"]);
    assert_eq!(copy.len(), 2, "only configured copy headers: {copy:?}");
}

/// The allowed identity and its anonymity.
fn allowed(decision: &ExternalDecision) -> (String, bool) {
    match decision {
        ExternalDecision::Allow {
            identity,
            anonymous,
            ..
        } => (identity.subject.to_string(), *anonymous),
        other => panic!("expected allow, got {other:?}"),
    }
}

#[tokio::test]
async fn allow_without_copy_headers_is_subject_external_hash_of_the_credential() {
    let mock = Mock::start(|_| Reply::status(204)).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let decision = check(&auth, "t").await;
    let ExternalDecision::Allow { copy, .. } = &decision else {
        panic!("expected allow");
    };
    assert!(copy.is_empty());
    let (subject, anonymous) = allowed(&decision);
    assert!(!anonymous);
    let hash = subject.strip_prefix("external:").expect("external: prefix");
    assert_eq!(hash.len(), 12);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(
        !subject.contains('t') || !subject.ends_with(":t"),
        "never the credential"
    );

    // Same credential, same subject; another credential, another subject.
    assert_eq!(allowed(&check(&auth, "t").await).0, subject);
    let other = allowed(&check(&auth, "u").await).0;
    assert_ne!(other, subject);
    assert!(other.starts_with("external:"));
    // The value moved to another forward header is another credential.
    let mut as_authorization = HeaderMap::new();
    as_authorization.insert("authorization", HeaderValue::from_static("t"));
    assert_ne!(
        allowed(&check_with(&auth, &as_authorization).await).0,
        subject
    );
}

#[tokio::test]
async fn allow_without_a_credential_is_anonymous_unless_the_service_names_someone() {
    let mock = Mock::start(|_| Reply::status(200)).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("not a forward header"));
    assert_eq!(
        allowed(&check_with(&auth, &headers).await),
        ("anonymous".to_owned(), true)
    );
    let mock = Mock::start(|_| Reply::status(200).header("x-user", "guest-7")).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    assert_eq!(
        allowed(&check_with(&auth, &HeaderMap::new()).await),
        ("guest-7".to_owned(), false)
    );
}

#[tokio::test]
async fn unauthorized_passes_through_with_body_and_www_authenticate() {
    let body = r#"{"code":401,"message":"incorrect api key auth"}"#;
    let mock = Mock::start(move |_| {
        Reply::status(401)
            .header("content-type", "application/json")
            .header("www-authenticate", r#"Bearer realm="keptn""#)
            .header("x-internal", "dropped")
            .body(body)
    })
    .await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let deny = denial(&check(&auth, "wrong").await);
    assert_eq!(deny.status, StatusCode::UNAUTHORIZED);
    assert_eq!(deny.body, body);
    assert_eq!(
        header(&deny.headers, "www-authenticate"),
        [r#"Bearer realm="keptn""#]
    );
    assert_eq!(header(&deny.headers, "content-type"), ["application/json"]);
    assert!(header(&deny.headers, "x-internal").is_empty());

    let response = deny.to_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer realm="keptn""#
    );
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let sent = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(sent, body);
}

#[tokio::test]
async fn forbidden_passes_through() {
    let mock = Mock::start(|_| Reply::status(403).body("no")).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let deny = denial(&check(&auth, "t").await);
    assert_eq!(deny.status, StatusCode::FORBIDDEN);
    assert_eq!(deny.body, "no");
}

#[tokio::test]
async fn too_many_requests_keeps_retry_after_and_is_never_cached() {
    let mock = Mock::start(|_| Reply::status(429).header("retry-after", "7")).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    let deny = denial(&check(&auth, "t").await);
    assert_eq!(deny.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&deny.headers, "retry-after"), ["7"]);
    assert_eq!(deny.to_response().headers()[RETRY_AFTER], "7");
    denial(&check(&auth, "t").await);
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn server_error_is_unavailable_and_never_cached() {
    let mock = Mock::start(|_| Reply::status(500)).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unavailable
    ));
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unavailable
    ));
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn other_status_is_unexpected() {
    let mock = Mock::start(|_| Reply::status(418)).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unexpected(418)
    ));
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unexpected(418)
    ));
    assert_eq!(mock.count(), 2, "unexpected answers are not cached");
    let mock = Mock::start(|_| Reply::status(302).header("location", "/login")).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unexpected(302)
    ));
}

#[tokio::test]
async fn slow_auth_service_is_unavailable_after_the_timeout() {
    let mut mock = Mock::start(|_| Reply::status(200).held()).await;
    let auth = ExternalAuth::new(&ExternalSettings {
        timeout: Duration::from_millis(200),
        ..settings(mock.url("/v1/auth"))
    })
    .unwrap();
    let started = Instant::now();
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unavailable
    ));
    assert!(started.elapsed() >= Duration::from_millis(200));
    mock.arrival().await;
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/v1/auth").parse().unwrap();
    let auth = ExternalAuth::new(&settings(url)).unwrap();
    assert!(matches!(
        check(&auth, "t").await,
        ExternalDecision::Unavailable
    ));
    assert_eq!(auth.calls(), 1);
}

#[tokio::test]
async fn auth_request_has_no_body_and_carries_forwarded_headers() {
    let mock = Mock::start(|_| Reply::status(200)).await;
    let auth = ExternalAuth::new(&ExternalSettings {
        method: Method::POST,
        ..settings(mock.url("/v1/auth?via=gatehouse"))
    })
    .unwrap();
    let mut headers = client_headers("first");
    headers.append("x-token", HeaderValue::from_static("second"));
    headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
    headers.insert("cookie", HeaderValue::from_static("session=not-forwarded"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("content-length", HeaderValue::from_static("5"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    headers.insert("host", HeaderValue::from_static("gateway.example"));
    assert!(matches!(
        check_with(&auth, &headers).await,
        ExternalDecision::Allow { .. }
    ));

    let [seen] = &mock.requests()[..] else {
        panic!("one auth request expected");
    };
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri, "/v1/auth?via=gatehouse");
    assert!(seen.body.is_empty());
    let h = &seen.headers;
    assert_eq!(h["content-length"], "0");
    for absent in ["transfer-encoding", "upgrade", "connection", "cookie"] {
        assert!(!h.contains_key(absent), "{absent} must not be sent: {h:?}");
    }
    let tokens: Vec<_> = h.get_all("x-token").iter().collect();
    assert_eq!(tokens, ["first", "second"]);
    assert_eq!(h["authorization"], "Bearer abc");
    assert_eq!(h["x-forwarded-method"], "PUT");
    assert_eq!(h["x-forwarded-uri"], "/api/v1/thing?x=1");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7");
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-request-id"], "req-1");
    assert_eq!(h["host"], mock.addr.to_string());
}

#[tokio::test]
async fn get_auth_request_sends_no_content_length() {
    let mock = Mock::start(|_| Reply::status(200)).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    check(&auth, "t").await;
    let [seen] = &mock.requests()[..] else {
        panic!("one auth request expected");
    };
    assert_eq!(seen.method, Method::GET);
    assert!(!seen.headers.contains_key("content-length"));
    assert!(!seen.headers.contains_key("transfer-encoding"));
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn allow_is_cached_per_credential() {
    let mock = Mock::start(|_| Reply::status(200).header("x-user", "bob")).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    let first = check(&auth, "token-a").await;
    let second = check(&auth, "token-a").await;
    assert_eq!(mock.count(), 1);
    assert_eq!(auth.calls(), 1);
    for decision in [first, second] {
        assert_eq!(allowed(&decision).0, "bob");
    }
    check(&auth, "token-b").await;
    assert_eq!(
        mock.count(),
        2,
        "different credentials are asked about separately"
    );
}

#[tokio::test]
async fn unauthorized_is_negatively_cached() {
    let mock = Mock::start(|_| Reply::status(401).body("nope")).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    let first = denial(&check(&auth, "bad").await);
    let second = denial(&check(&auth, "bad").await);
    assert_eq!(mock.count(), 1);
    assert_eq!(second.body, "nope");
    assert!(Arc::ptr_eq(&first, &second));
}

#[tokio::test]
async fn zero_ttls_cache_nothing() {
    let mock = Mock::start(|r| match r.headers.get("x-token") {
        Some(token) if token == "good" => Reply::status(200),
        _ => Reply::status(401),
    })
    .await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    for token in ["good", "good", "bad", "bad"] {
        check(&auth, token).await;
    }
    assert_eq!(mock.count(), 4);
}

#[tokio::test]
async fn allow_only_ttl_does_not_cache_denials() {
    let mock = Mock::start(|_| Reply::status(403)).await;
    let auth = ExternalAuth::new(&ExternalSettings {
        negative_cache_ttl: Duration::ZERO,
        ..cached(mock.url("/v1/auth"))
    })
    .unwrap();
    denial(&check(&auth, "t").await);
    denial(&check(&auth, "t").await);
    assert_eq!(mock.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_identical_new_credentials_makes_one_call() {
    let mut mock = Mock::start(|_| Reply::status(200).header("x-user", "carol").held()).await;
    let auth = Arc::new(ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap());
    let checks: Vec<_> = (0..20)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { check(&auth, "fresh-token").await })
        })
        .collect();
    mock.arrival().await;
    wait_until(|| auth.coalesced() == 19).await;
    mock.release();
    for task in checks {
        let decision = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(allowed(&decision).0, "carol");
    }
    assert_eq!(mock.count(), 1);
    assert_eq!(auth.calls(), 1);
    assert!(auth.flights.in_flight() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_wedge_its_followers() {
    let mut mock = Mock::start(|_| Reply::status(200).held()).await;
    let auth = Arc::new(ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap());
    let leader = tokio::spawn({
        let auth = auth.clone();
        async move { check(&auth, "t").await }
    });
    mock.arrival().await;
    let follower = tokio::spawn({
        let auth = auth.clone();
        async move { check(&auth, "t").await }
    });
    wait_until(|| auth.coalesced() == 1).await;
    leader.abort();
    // The follower takes over and asks itself.
    mock.arrival().await;
    mock.release();
    let decision = tokio::time::timeout(WAIT, follower).await.unwrap().unwrap();
    assert!(matches!(decision, ExternalDecision::Allow { .. }));
    assert_eq!(auth.calls(), 2);
    assert!(auth.flights.in_flight() == 0);
}

/// Yields until `ready` holds, bounded by [`WAIT`].
async fn wait_until(ready: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !ready() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("condition reached in time");
}

#[tokio::test]
async fn oversized_denial_body_is_dropped_but_the_status_kept() {
    let mock = Mock::start(|_| {
        Reply::status(403)
            .header("content-type", "text/plain")
            .body(vec![b'x'; MAX_DENY_BODY + 1])
    })
    .await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    let deny = denial(&check(&auth, "t").await);
    assert_eq!(deny.status, StatusCode::FORBIDDEN);
    assert!(deny.body.is_empty());
    assert!(header(&deny.headers, "content-type").is_empty());
    let mock = Mock::start(|_| Reply::status(403).body(vec![b'x'; MAX_DENY_BODY])).await;
    let auth = ExternalAuth::new(&settings(mock.url("/v1/auth"))).unwrap();
    assert_eq!(denial(&check(&auth, "t").await).body.len(), MAX_DENY_BODY);
}

/// The key of a GET /x from 203.0.113.7 to gateway.example with `headers`.
fn key_of(auth: &ExternalAuth, headers: &HeaderMap) -> Key {
    let request_id = RequestId::from_client(&HeaderValue::from_static("rid")).unwrap();
    auth.key(&request(&Method::GET, "/x", headers, &request_id))
}

#[test]
fn keys_depend_on_names_and_values_not_on_other_headers() {
    for cache_key in [CacheKey::Request, CacheKey::Credential] {
        let auth = ExternalAuth::new(&ExternalSettings {
            cache_key,
            ..settings("http://127.0.0.1:1/".parse().unwrap())
        })
        .unwrap();
        let key = |headers: &HeaderMap| key_of(&auth, headers);
        let a = client_headers("abc");
        let mut b = client_headers("abc");
        b.insert("cookie", HeaderValue::from_static("unrelated"));
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&client_headers("abd")));
        let mut as_bearer = HeaderMap::new();
        as_bearer.insert("authorization", HeaderValue::from_static("abc"));
        assert_ne!(key(&a), key(&as_bearer));
        let mut split = client_headers("ab");
        split.append("x-token", HeaderValue::from_static("c"));
        assert_ne!(key(&a), key(&split));
        assert_ne!(key(&a), key(&HeaderMap::new()));
    }
}

#[test]
fn request_keys_cover_everything_the_service_saw_and_credential_keys_only_the_credential() {
    let url: Uri = "http://127.0.0.1:1/".parse().unwrap();
    let by_request = ExternalAuth::new(&settings(url.clone())).unwrap();
    let by_credential = ExternalAuth::new(&ExternalSettings {
        cache_key: CacheKey::Credential,
        ..settings(url)
    })
    .unwrap();
    let headers = client_headers("abc");
    let rid = RequestId::from_client(&HeaderValue::from_static("rid")).unwrap();
    let base = request(&Method::GET, "/reports", &headers, &rid);
    let variants = [
        AuthRequest {
            method: &Method::DELETE,
            ..request(&Method::GET, "/reports", &headers, &rid)
        },
        request(&Method::GET, "/admin", &headers, &rid),
        request(&Method::GET, "/reports?all=1", &headers, &rid),
        AuthRequest {
            host: Some("other.example"),
            ..request(&Method::GET, "/reports", &headers, &rid)
        },
        AuthRequest {
            host: None,
            ..request(&Method::GET, "/reports", &headers, &rid)
        },
        AuthRequest {
            client_ip: "198.51.100.1".parse().unwrap(),
            ..request(&Method::GET, "/reports", &headers, &rid)
        },
    ];
    for variant in &variants {
        assert_ne!(
            by_request.key(&base),
            by_request.key(variant),
            "{variant:?}"
        );
        assert_eq!(
            by_credential.key(&base),
            by_credential.key(variant),
            "{variant:?}"
        );
    }
    let other_id = RequestId::from_client(&HeaderValue::from_static("another-request-id")).unwrap();
    let same = request(&Method::GET, "/reports", &headers, &other_id);
    assert_eq!(
        by_request.key(&base),
        by_request.key(&same),
        "request ids differ always"
    );
}

#[tokio::test]
async fn request_mode_asks_again_for_another_method_or_path() {
    let mock = Mock::start(|r| match r.headers.get("x-forwarded-method") {
        Some(method) if method == "GET" => Reply::status(200),
        _ => Reply::status(403),
    })
    .await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    let headers = client_headers("t");
    let get = check_on(&auth, &Method::GET, "/reports", &headers).await;
    assert!(matches!(get, ExternalDecision::Allow { .. }));
    let delete = check_on(&auth, &Method::DELETE, "/admin", &headers).await;
    assert_eq!(denial(&delete).status, StatusCode::FORBIDDEN);
    check_on(&auth, &Method::GET, "/reports", &headers).await;
    check_on(&auth, &Method::DELETE, "/admin", &headers).await;
    assert_eq!(mock.count(), 2, "each decision cached for its own request");
}

#[tokio::test]
async fn clear_empties_the_cache_and_a_call_in_flight_does_not_refill_it() {
    let mock = Mock::start(|_| Reply::status(200)).await;
    let auth = ExternalAuth::new(&cached(mock.url("/v1/auth"))).unwrap();
    check(&auth, "t").await;
    check(&auth, "t").await;
    assert_eq!(mock.count(), 1);
    auth.clear();
    check(&auth, "t").await;
    assert_eq!(mock.count(), 2, "cleared");

    // A call that started before a clear delivers its answer but does not cache it.
    let mut held = Mock::start(|_| Reply::status(200).held()).await;
    let auth = Arc::new(ExternalAuth::new(&cached(held.url("/v1/auth"))).unwrap());
    let first = tokio::spawn({
        let auth = auth.clone();
        async move { check(&auth, "t").await }
    });
    held.arrival().await;
    auth.clear();
    held.release();
    let decision = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert!(matches!(decision, ExternalDecision::Allow { .. }));
    assert_eq!(auth.flights.cached(), 0);
    check(&auth, "t").await;
    assert_eq!(held.count(), 2);
}

pub(super) fn allow_decision() -> ExternalDecision {
    ExternalDecision::Allow {
        identity: Identity::new(
            Arc::from("alice"),
            Arc::from(Vec::new()),
            AuthMethod::External,
            None,
        ),
        copy: Arc::from(Vec::new()),
        anonymous: false,
    }
}

#[test]
fn new_refuses_unforwardable_headers() {
    for bad in [
        "content-length",
        "host",
        "connection",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-host",
    ] {
        let mut s = settings("http://127.0.0.1:1/".parse().unwrap());
        s.forward_headers.push(HeaderName::from_static(bad));
        let error = ExternalAuth::new(&s).unwrap_err().to_string();
        assert!(error.contains(bad), "{error}");
    }
}

#[test]
fn base64_and_percent_decoding() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
    assert_eq!(percent_decode("p%40ss%3Aw%2fd"), b"p@ss:w/d");
    assert_eq!(percent_decode("100%"), b"100%");
    assert_eq!(percent_decode("%zz%4"), b"%zz%4");
}

#[tokio::test]
async fn url_userinfo_is_sent_as_basic_auth_unless_the_client_sends_authorization() {
    let mock = Mock::start(|_| Reply::status(200)).await;
    let url = format!("http://gate%40house:s3cr%3At@{}/v1/auth?x=1", mock.addr);
    let auth = ExternalAuth::new(&settings(url.parse().unwrap())).unwrap();
    check(&auth, "t").await;
    let mut with_authorization = client_headers("t");
    with_authorization.insert("authorization", HeaderValue::from_static("Bearer client"));
    check_with(&auth, &with_authorization).await;

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    // base64("gate@house:s3cr:t")
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Basic {}", base64(b"gate@house:s3cr:t"))
    );
    assert_eq!(seen[0].uri, "/v1/auth?x=1");
    assert_eq!(seen[0].headers["host"], mock.addr.to_string());
    let authorizations: Vec<_> = seen[1].headers.get_all("authorization").iter().collect();
    assert_eq!(
        authorizations,
        ["Bearer client"],
        "the client's credential is judged"
    );

    let text = format!("{auth:?}");
    assert!(
        !text.contains("s3cr") && !text.contains("gate") && !text.contains("x=1"),
        "{text}"
    );
}

#[test]
fn settings_debug_hides_the_url_userinfo_and_query() {
    let s = settings(
        "http://user:pw-secret@auth:9000/v1/auth?key=k3y"
            .parse()
            .unwrap(),
    );
    let text = format!("{s:?}");
    // The one redaction used everywhere (`config::redact_url`): user kept, password and
    // query hidden.
    assert!(
        text.contains("http://user:***@auth:9000/v1/auth?***"),
        "{text}"
    );
    assert!(
        !text.contains("pw-secret") && !text.contains("k3y"),
        "{text}"
    );
}

#[test]
fn debug_output_never_shows_header_values() {
    let headers = client_headers("super-secret");
    let request_id = RequestId::from_client(&HeaderValue::from_static("rid")).unwrap();
    let request = AuthRequest {
        method: &Method::GET,
        uri: "/x?token=query-secret",
        host: Some("gateway.example"),
        headers: &headers,
        client_ip: "127.0.0.1".parse().unwrap(),
        request_id: &request_id,
    };
    let text = format!("{request:?}");
    assert!(
        !text.contains("super-secret") && !text.contains("query-secret"),
        "{text}"
    );
    let allow = ExternalDecision::Allow {
        identity: Identity::new(
            Arc::from("alice"),
            Arc::from(Vec::new()),
            AuthMethod::External,
            None,
        ),
        copy: Arc::from(vec![(
            HeaderName::from_static("x-upstream-key"),
            HeaderValue::from_static("copied-secret"),
        )]),
        anonymous: false,
    };
    let text = format!("{allow:?}");
    assert!(
        text.contains("x-upstream-key") && !text.contains("copied-secret"),
        "{text}"
    );
}
