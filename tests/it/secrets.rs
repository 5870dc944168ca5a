//! No secret reaches a log line, an error body, `/config` or `/metrics`: the real binary runs with
//! debug logging, sees a valid token, a mistyped one, a token in a query string, a cookie and an
//! Authorization header, and its whole output is searched for them. It also checks that SIGTERM
//! drains and exits 0.

use std::process::Stdio;
use std::time::Duration;

use http::Request;

use crate::support::auth::mistyped;
use crate::support::empty;
use crate::support::gateway::compose_config;
use crate::support::{Client, Upstream, certs};

const DEADLINE: Duration = Duration::from_secs(10);

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn admin_get(admin: std::net::SocketAddr, path: &str) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "admin")
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?
        .to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_cookie_or_authorization_value_is_ever_logged_or_shown() {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    certs().write_into(dir.path());
    let store = dir.path().join("tokens.toml");
    let now = time::OffsetDateTime::now_utc();
    let token =
        gatehouse::token_cmd::create(&store, "ci-bot", &["viewer".to_owned()], None, now).unwrap();
    let token = token.expose().clone();
    let (https, admin) = (free_addr(), free_addr());
    let config = compose_config(&format!(
        "[server]\nlisten = \"{https}\"\nadmin_listen = \"{admin}\"\n\n[limits]\ndrain_delay = \"0s\"\n\n\
         [auth]\ntokens = \"tokens.toml\"\n\n\
         [[upstreams]]\nname = \"api\"\ntargets = [\"{}\"]\n\n\
         [[routes]]\npath = \"/api\"\nupstream = \"api\"\nauth = [\"token\"]\n",
        upstream.addr
    ));
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("out.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-c"])
        .arg(&config_path)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while admin_get(admin, "/healthz").await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await; // bounded polling of a subprocess
        }
    })
    .await
    .expect("gatehouse starts");

    let client = Client::h1(https);
    let mistyped = mistyped(&token);
    let requests = [
        Request::get("/api/ok")
            .header("x-token", &token)
            .body(empty())
            .unwrap(),
        Request::get("/api/bad")
            .header("authorization", format!("Bearer {mistyped}"))
            .body(empty())
            .unwrap(),
        Request::get(format!("/api/query?api_token={token}&x=1"))
            .header("cookie", "session=cookie-secret-value")
            .body(empty())
            .unwrap(),
        Request::get("/api/basic")
            .header("authorization", "Basic dXNlcjpwYXNzd29yZC1zZWNyZXQ=")
            .body(empty())
            .unwrap(),
    ];
    let mut bodies = String::new();
    let mut statuses = Vec::new();
    for request in requests {
        let resp = client.send(request).await;
        statuses.push(resp.status.as_u16());
        bodies.push_str(&resp.text());
    }
    assert_eq!(
        statuses,
        [200, 401, 401, 401],
        "a query-string token is not a credential"
    );
    let config_view = admin_get(admin, "/config").await.unwrap();
    let metrics = admin_get(admin, "/metrics").await.unwrap();

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("drains within bound")
        .unwrap();
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let output = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(dir.path().join("err.log")).unwrap();
    assert!(
        output.contains("\"path\":\"/api/ok\""),
        "the access log was written:\n{output}"
    );
    let body_text = bodies.replace(&token, "<TOKEN>"); // the echo upstream returns the query it got
    for (name, text) in [
        ("logs", output.as_str()),
        ("error bodies", body_text.as_str()),
        ("/config", &config_view),
        ("/metrics", &metrics),
    ] {
        for secret in [
            token.as_str(),
            &mistyped,
            "cookie-secret-value",
            "dXNlcjpwYXNzd29yZC1zZWNyZXQ=",
        ] {
            assert!(
                !text.contains(secret),
                "{name} contain a secret ({secret:.8}…)"
            );
        }
    }
}
