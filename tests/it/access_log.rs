//! The access log of the real binary (SPEC §7; issue 12 item 2): every stdout line is one JSON
//! object without duplicate keys; access lines carry every field with its JSON type (numbers as
//! numbers, `null` when absent, never Debug text), the bytes each way, the HTTP and TLS versions;
//! credential-looking query values are redacted; no token, JWT or cookie value appears anywhere
//! in stdout or stderr; a streamed response is logged when its body ends, not at its head; and
//! `gatehouse::access=off` turns the lines off while the byte counters keep counting.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use crate::support::auth::{JwtKey, Layout, jwks, unix_now};
use crate::support::client::{Proto, tls_config};
use crate::support::{Client, Gate, Upstream, empty, full, upstream_toml, within};

/// The body the upstream serves on `/api/…`: long enough to span several frames.
fn served_body() -> String {
    "0123456789abcdef".repeat(1000)
}

const ISSUER: &str = "https://issuer.test/";

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A `gatehouse run` child with its stdout and stderr in files.
struct Running {
    child: tokio::process::Child,
    https: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// Starts the binary on `layout`'s folder with `routes` (upstreams and routes TOML) and the
    /// given `RUST_LOG` (`None`: unset, the default level).
    async fn start(layout: &Layout, routes: &str, rust_log: Option<&str>) -> Running {
        Self::start_with_server(layout, "", routes, rust_log).await
    }

    /// [`Running::start`] with `server` (TOML lines) added to the `[server]` table.
    async fn start_with_server(
        layout: &Layout,
        server: &str,
        routes: &str,
        rust_log: Option<&str>,
    ) -> Running {
        let (https, admin) = (free_addr(), free_addr());
        let config = crate::support::gateway::compose_config(&format!(
            "[server]\nlisten = \"{https}\"\nadmin_listen = \"{admin}\"\n{server}\n\
             [limits]\ndrain_delay = \"0s\"\n\n\
             [auth]\ntokens = \"tokens.toml\"\n\n\
             [auth.jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"gatehouse\"]\n\
             algorithms = [\"ES256\"]\njwks_file = \"jwks.json\"\n\n{routes}"
        ));
        let config_path = layout.path("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        let (out, err) = (layout.path("out.log"), layout.path("err.log"));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        command
            .args(["run", "-c"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .kill_on_drop(true);
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let child = command.spawn().unwrap();
        let running = Running {
            child,
            https,
            admin,
            out,
            err,
        };
        within("gatehouse to answer /healthz", async {
            while running.admin_get("/healthz").await.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll of a subprocess
            }
        })
        .await;
        running
    }

    async fn admin_get(&self, path: &str) -> Option<String> {
        let resp = crate::support::client::send_on(
            tokio::net::TcpStream::connect(self.admin).await.ok()?,
            Proto::H1,
            Request::get(path)
                .header("host", "admin")
                .body(empty())
                .unwrap(),
        )
        .await
        .ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap()
    }

    /// Waits (bounded) until an access line for `path` (as logged, query included) is on stdout.
    async fn access_line(&self, path: &str) -> Value {
        within(&format!("the access line for {path}"), async {
            loop {
                if let Some(line) = access_lines(&self.stdout())
                    .into_iter()
                    .find(|l| l["path"] == path)
                {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll of a file
            }
        })
        .await
    }

    /// SIGTERM, then the exit status (must be success).
    async fn stop(mut self) -> (String, String) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = within("gatehouse to drain and exit", self.child.wait())
            .await
            .unwrap();
        assert!(status.success(), "SIGTERM exits 0, got {status}");
        (self.stdout(), self.stderr())
    }
}

/// Every access line (objects with `request_id` and `bytes_out`) in `stdout`.
fn access_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("request_id").is_some() && v.get("bytes_out").is_some())
        .collect()
}

/// A JSON value parsed with duplicate keys refused (serde_json keeps the last one silently).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
}

/// Every stdout line is one JSON object without duplicate keys and without Debug-rendered
/// values (`"None"`, `"Some(…)"`, `"[\"…\"]"`).
fn assert_every_line_is_clean_json(stdout: &str) {
    for line in stdout.lines() {
        if let Err(error) = serde_json::from_str::<NoDuplicateKeys>(line) {
            panic!("not one clean JSON object ({error}): {line}");
        }
        let value: Value = serde_json::from_str(line).unwrap();
        let object = value.as_object().expect("each line is an object");
        for (key, field) in object {
            if let Some(text) = field.as_str() {
                assert!(
                    text != "None" && !text.starts_with("Some(") && !text.starts_with("[\""),
                    "{key} is Debug text in {line}"
                );
            }
        }
    }
}

/// The fields and JSON types every access line has.
fn assert_access_line_shape(line: &Value) {
    let object = line.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want = vec![
        "time",
        "request_id",
        "client_ip",
        "method",
        "path",
        "route",
        "upstream",
        "status",
        "identity",
        "auth_method",
        "duration_ms",
        "user_agent",
        "http",
        "tls",
        "bytes_in",
        "bytes_out",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the access line's keys: {line}");
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "RFC 3339 UTC with milliseconds: {time}"
    );
    assert!(line["request_id"].is_string());
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["method"].is_string() && line["path"].is_string());
    assert!(line["status"].is_u64(), "status is a number: {line}");
    assert!(line["bytes_in"].is_u64() && line["bytes_out"].is_u64());
    let duration = line["duration_ms"]
        .as_f64()
        .expect("duration_ms is a number");
    assert!(
        (duration * 1000.0 - (duration * 1000.0).round()).abs() < 1e-6,
        "rounded to 3 decimals: {duration}"
    );
    for key in ["route", "upstream", "identity", "auth_method", "user_agent"] {
        assert!(
            line[key].is_string() || line[key].is_null(),
            "{key} is a string or null: {line}"
        );
    }
    assert!(line["http"] == "1.1" || line["http"] == "2", "{line}");
}

fn es256_claims() -> Value {
    let now = unix_now();
    json!({"iss": ISSUER, "aud": "gatehouse", "sub": "alice", "roles": ["viewer"],
        "iat": now, "exp": now + 3600})
}

/// An upstream serving [`served_body`] on `/api/…`, and on `/stream` one chunk, then (once
/// `gate` opens) a second chunk and the end.
async fn upstream(gate: Gate) -> Upstream {
    Upstream::spawn_raw(move |req| {
        let gate = gate.clone();
        async move {
            if !req.uri().path().starts_with("/stream") {
                let _ = req.into_body().collect().await;
                return Response::new(full(served_body()));
            }
            let chunks = futures_util::stream::unfold(0, move |step| {
                let gate = gate.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(Bytes::from_static(b"first;"))), 1)),
                        1 => {
                            gate.opened().await;
                            Some((Ok(Frame::data(Bytes::from_static(b"second"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(http_body_util::StreamBody::new(chunks).boxed())
        }
    })
    .await
}

fn routes(up: &Upstream) -> String {
    format!(
        "{}\n[[upstreams]]\nname = \"gone\"\ntargets = [\"{}\"]\n\n\
         [[routes]]\npath = \"/api\"\nupstream = \"api\"\nauth = [\"token\", \"jwt\"]\n\n\
         [[routes]]\npath = \"/stream\"\nupstream = \"api\"\nauth = [\"public\"]\n\n\
         [[routes]]\npath = \"/gone\"\nupstream = \"gone\"\nauth = [\"public\"]\n",
        upstream_toml("api", &[up.addr], ""),
        Upstream::refusing()
    )
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<crate::support::Body> {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(empty()).unwrap()
}

/// The folder with a token store (one minted token) and a JWKS holding `key`.
fn layout(key: &JwtKey) -> (Layout, String) {
    let layout = Layout::new();
    layout.write("jwks.json", jwks(&[key]));
    let token = layout.mint("ci-bot", &["viewer", "operator"]);
    (layout, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_are_typed_complete_and_carry_no_secret() {
    let gate = Gate::new();
    let up = upstream(gate.clone()).await;
    let key = JwtKey::es256("ec-1");
    let (layout, token) = layout(&key);
    let jwt = key.sign(&es256_claims());
    let gw = Running::start(&layout, &routes(&up), None).await;
    let h1 = Client::h1(gw.https);
    let body_len = served_body().len() as u64;
    let mistyped = crate::support::auth::mistyped(&token);

    // A token in x-token, credentials in the query, a user agent with quotes.
    let resp = h1
        .send(get(
            "/api/data?access_token=qs-secret-1&api_key=qs-secret-2&page=7",
            &[("x-token", &token), ("user-agent", "tester/1.0 \"quoted\"")],
        ))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len() as u64, body_len);
    let line = gw
        .access_line("/api/data?access_token=REDACTED&api_key=REDACTED&page=7")
        .await;
    assert_access_line_shape(&line);
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/api");
    assert_eq!(line["upstream"], "api");
    assert_eq!(line["identity"], "ci-bot");
    assert_eq!(line["auth_method"], "token");
    assert_eq!(line["user_agent"], "tester/1.0 \"quoted\"");
    assert_eq!(line["bytes_out"], body_len, "bytes_out is the body served");
    assert_eq!(line["bytes_in"], 0);
    assert_eq!(line["http"], "1.1");
    assert_eq!(line["tls"], "1.3");
    assert_eq!(
        Some(line["request_id"].as_str().unwrap()),
        resp.header("x-request-id")
    );

    // A JWT as Bearer over HTTP/2.
    let resp = Client::h2(gw.https)
        .send(get(
            "/api/h2?sig=qs-secret-3",
            &[("authorization", &format!("Bearer {jwt}"))],
        ))
        .await;
    assert_eq!(resp.status, 200);
    let line = gw.access_line("/api/h2?sig=REDACTED").await;
    assert_access_line_shape(&line);
    assert_eq!(line["http"], "2");
    assert_eq!(line["identity"], "alice");
    assert_eq!(line["auth_method"], "jwt");
    assert_eq!(line["bytes_out"], body_len);
    assert!(line["user_agent"].is_null(), "no User-Agent sent: {line}");

    // A refused request: a cookie and a mistyped token; identity and upstream are null.
    let resp = h1
        .send(get(
            "/api/refused",
            &[
                ("cookie", "session=cookie-secret-value"),
                ("authorization", &format!("Bearer {mistyped}")),
            ],
        ))
        .await;
    assert_eq!(resp.status, 401);
    let line = gw.access_line("/api/refused").await;
    assert_access_line_shape(&line);
    assert_eq!(line["status"], 401);
    assert!(line["identity"].is_null() && line["upstream"].is_null());
    let refused_len = resp.body.len() as u64;
    assert_eq!(line["bytes_out"], refused_len, "the JSON error body");

    // A request body counts as bytes_in; TLS 1.2 is named.
    let tls12 = Client::new(
        gw.https,
        Proto::H1,
        tls_config(&[b"http/1.1"], &[&rustls::version::TLS12]),
    );
    let upload = vec![b'u'; 5000];
    let resp = tls12
        .send(
            Request::post("/api/upload")
                .header("x-token", &token)
                .body(full(upload))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let line = gw.access_line("/api/upload").await;
    assert_eq!(line["bytes_in"], 5000);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["tls"], "1.2");

    // A User-Agent that is not UTF-8 still gives a valid line.
    let mut odd = get("/api/odd", &[("x-token", &token)]);
    odd.headers_mut().insert(
        "user-agent",
        HeaderValue::from_bytes(b"bot\xff\xfe/1").unwrap(),
    );
    assert_eq!(h1.send(odd).await.status, 200);
    let line = gw.access_line("/api/odd").await;
    assert_eq!(line["user_agent"], "bot\u{fffd}\u{fffd}/1");

    // An unreachable upstream: 502, and its warning line has no duplicate `target`.
    assert_eq!(h1.get("/gone/x").await.status, 502);
    let line = gw.access_line("/gone/x").await;
    assert_eq!(line["status"], 502);
    assert_eq!(line["upstream"], "gone");

    let metrics = gw.admin_get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "gatehouse_access_log_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "gatehouse_request_bytes_total{route=\"/api\"} 5000"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            == format!(
                "gatehouse_response_bytes_total{{route=\"/api\"}} {}",
                4 * body_len + refused_len
            )),
        "{metrics}"
    );
    drop(gate);

    let (stdout, stderr) = gw.stop().await;
    assert_every_line_is_clean_json(&stdout);
    let failure = stdout
        .lines()
        .find(|l| l.contains("upstream request failed"))
        .unwrap_or_else(|| panic!("the upstream failure is logged:\n{stdout}"));
    let failure: Value = serde_json::from_str(failure).unwrap();
    assert!(failure["upstream_addr"].is_string(), "{failure}");
    assert_eq!(access_lines(&stdout).len(), 6, "one line per request");
    for secret in [
        token.as_str(),
        &mistyped,
        &jwt,
        "cookie-secret-value",
        "qs-secret-1",
        "qs-secret-2",
        "qs-secret-3",
    ] {
        for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert!(!text.contains(secret), "{name} contains {secret:.12}…");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logged_client_ip_is_the_peer_or_what_a_trusted_proxy_forwarded() {
    let up = upstream(Gate::new()).await;
    let (layout, _token) = layout(&JwtKey::es256("ec-1"));
    let trust_loopback = "trusted_proxies = [\"127.0.0.1/32\"]\n";
    let gw = Running::start_with_server(&layout, trust_loopback, &routes(&up), None).await;
    let h1 = Client::h1(gw.https);

    assert_eq!(h1.get("/direct").await.status, 404);
    let forwarded = get("/forwarded", &[("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(h1.send(forwarded).await.status, 404);
    // The peer's own address (formatted once per connection) when nothing is forwarded; the
    // forwarded client's, on the same connection, when the trusted peer says so.
    assert_eq!(gw.access_line("/direct").await["client_ip"], "127.0.0.1");
    assert_eq!(
        gw.access_line("/forwarded").await["client_ip"],
        "203.0.113.7"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_is_logged_when_its_body_ends() {
    let gate = Gate::new();
    let up = upstream(gate.clone()).await;
    let key = JwtKey::es256("ec-1");
    let (layout, _token) = layout(&key);
    let gw = Running::start(&layout, &routes(&up), None).await;
    let h1 = Client::h1(gw.https);

    let resp = h1.send_streaming(get("/stream/events", &[])).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within("the first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    // A request that starts and ends after the stream's head: once its line is out, a line for
    // the stream would be too if it were written at the head.
    assert_eq!(h1.get("/stream-control").await.status, 404);
    gw.access_line("/stream-control").await;
    assert!(
        !gw.stdout().contains("\"/stream/events\""),
        "logged before the body ended:\n{}",
        gw.stdout()
    );

    gate.open();
    let rest = within("the rest of the stream", body.collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");
    let line = gw.access_line("/stream/events").await;
    assert_access_line_shape(&line);
    assert_eq!(line["bytes_out"], 12, "both chunks counted");
    assert!(line["route"] == "/stream" && line["identity"].is_null());
    let (stdout, _) = gw.stop().await;
    assert_every_line_is_clean_json(&stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_target_off_writes_no_line_but_bytes_are_still_counted() {
    let up = upstream(Gate::new()).await;
    let key = JwtKey::es256("ec-1");
    let (layout, token) = layout(&key);
    let gw = Running::start(&layout, &routes(&up), Some("info,gatehouse::access=off")).await;
    let resp = Client::h1(gw.https)
        .send(get("/api/quiet", &[("x-token", &token)]))
        .await;
    assert_eq!(resp.status, 200);
    let response_bytes = format!(
        "gatehouse_response_bytes_total{{route=\"/api\"}} {}",
        served_body().len()
    );
    within("the byte counter", async {
        loop {
            let metrics = gw.admin_get("/metrics").await.unwrap_or_default();
            if metrics.lines().any(|l| l == response_bytes) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll
        }
    })
    .await;
    let (stdout, _) = gw.stop().await;
    assert!(
        stdout.contains("gatehouse listening"),
        "other info lines are still written:\n{stdout}"
    );
    assert!(
        access_lines(&stdout).is_empty() && !stdout.contains("/api/quiet"),
        "no access line when gatehouse::access is off:\n{stdout}"
    );
    assert_every_line_is_clean_json(&stdout);
}

/// Sends `head` on a fresh TLS connection and reads what the gateway answers until it closes.
async fn raw_exchange(gw: &Running, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS);
    let connect = crate::support::client::connect_tls(gw.https, "localhost", config);
    let mut tls = within("raw TLS connect", connect).await.unwrap();
    tls.write_all(head).await.unwrap();
    let mut answer = Vec::new();
    // The connection closes after the refusal; a reset instead of a close_notify still ends it.
    let _ = within("the refusal and close", tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_the_gateway_cannot_parse_is_logged_and_counted() {
    let up = upstream(Gate::new()).await;
    let (layout, _token) = layout(&JwtKey::es256("ec-1"));
    let gw = Running::start(&layout, &routes(&up), None).await;
    for head in [
        &b"GET /x HTTP/1.1\r\nbad header\r\n\r\n"[..],
        b"\x16\x03\x01 not http at all\r\n\r\n",
    ] {
        let answer = raw_exchange(&gw, head).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // A URI over hyper's 65,534 bytes, in a head that fits the read buffer: hyper's own 414.
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "u".repeat(66_000));
    let answer = raw_exchange(&gw, long_uri.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    // A head over `max_header_bytes` (64 KiB by default) is parsed and refused by the gateway
    // itself: its line has the method and path.
    let huge = format!(
        "GET /y HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let too_large = raw_exchange(&gw, huge.as_bytes()).await;
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large}");

    let lines = within("four refused heads in the access log", async {
        loop {
            let refused: Vec<Value> = access_lines(&gw.stdout())
                .into_iter()
                .filter(|l| l["status"] != 200)
                .collect();
            if refused.len() >= 4 {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll of a file
        }
    })
    .await;
    let shapes: Vec<(&Value, &Value, &Value)> = lines
        .iter()
        .map(|l| (&l["status"], &l["method"], &l["path"]))
        .collect();
    let null = Value::Null;
    assert_eq!(
        shapes,
        [
            (&json!(400), &null, &null),
            (&json!(400), &null, &null),
            (&json!(414), &null, &null),
            (&json!(431), &json!("GET"), &json!("/y")),
        ],
        "{lines:?}"
    );
    for line in &lines {
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["http"], "1.1");
        assert!(line["request_id"].as_str().is_some_and(|id| id.len() == 32));
        let text = line.to_string();
        assert!(
            !text.contains("aaaa") && !text.contains("uuuu"),
            "nothing of the head: {line}"
        );
    }
    // Nothing of an unparsed head is trusted into the metrics either: method `OTHER`.
    let metrics = gw.admin_get("/metrics").await.unwrap();
    let counted = "gatehouse_requests_total{route=\"none\",method=\"OTHER\",status=\"400\"} 2";
    assert!(metrics.lines().any(|l| l == counted), "{metrics}");
    gw.stop().await;
}
