//! The command line for day two (issue 12 item 6), through the real binary: `token create` warns
//! about roles nothing uses, `token list --json`, `token hash` refuses empty input and warns on a
//! bad checksum, `token rotate` against a live gateway (old token accepted during the overlap,
//! refused after, the same identity throughout), `check` reporting every type error with its
//! key, line and a "did you mean", its summary, no ANSI colour on a pipe, and the demo cleaning
//! up after SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::auth::{Layout, assert_identity};
use crate::support::reload::{RELOAD_WAIT, settle};
use crate::support::{Resp, TestGateway, Upstream, certs, upstream_toml, within};

/// Runs `gatehouse args…` with `stdin` fed in, bounded.
async fn gatehouse_with(args: &[&str], stdin: &str) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gatehouse starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    within(
        &format!("gatehouse {}", args.join(" ")),
        child.wait_with_output(),
    )
    .await
    .expect("gatehouse runs")
}

async fn gatehouse(args: &[&str]) -> Output {
    gatehouse_with(args, "").await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A valid `gateway.toml` in `dir` (test certificates, `[auth] tokens = "tokens.toml"`, one
/// upstream) with `routes` appended.
fn write_config(dir: &Path, routes: &str) -> PathBuf {
    certs().write_into(dir);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\n\
         [auth]\ntokens = \"tokens.toml\"\n\n\
         [[upstreams]]\nname = \"api-service\"\ntargets = [\"127.0.0.1:9\"]\n\n{routes}"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    path
}

const AUDITOR_ROUTE: &str = "[[routes]]\npath = \"/audit\"\nupstream = \"api-service\"\n\
                             auth = [\"token\"]\nroles = [\"auditor\"]\n";

// ---------------------------------------------------------------------------- token create

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_warns_about_a_role_no_route_uses_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), AUDITOR_ROUTE);
    let create = |id: &'static str, roles: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let mut args = vec!["token", "create", "--id", id, "--config", text(&config)];
            for role in roles {
                args.extend(["--role", role]);
            }
            gatehouse(&args).await
        }
    };

    // Used by a route, and built in: no warning.
    let quiet = create("a", &["auditor", "viewer", "admin"]).await;
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(
        !stderr(&quiet).contains("warning"),
        "no warning for used or built-in roles: {}",
        stderr(&quiet)
    );

    // A typo of a used role: warned, with the suggestion; still created (exit 0).
    let typo = create("b", &["auditr"]).await;
    assert_eq!(typo.status.code(), Some(0), "{}", stderr(&typo));
    let warning = stderr(&typo);
    assert!(
        warning.contains("warning: role \"auditr\" is not built in and no route in")
            && warning.contains("did you mean \"auditor\"?"),
        "{warning}"
    );
    let token = stdout(&typo);
    assert!(token.trim().starts_with("gth_"), "token on stdout: {token}");
    assert!(
        !warning.contains(token.trim()),
        "the token is not in the warning"
    );
    let listed = gatehouse(&[
        "token",
        "list",
        "--store",
        text(&dir.path().join("tokens.toml")),
    ])
    .await;
    assert!(stdout(&listed).contains("auditr"), "{}", stdout(&listed));
}

// ------------------------------------------------------------------------------ token list

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_json_is_an_array_of_entries_without_secrets_or_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.toml");
    let created = gatehouse(&[
        "token",
        "create",
        "--id",
        "ci",
        "--role",
        "operator",
        "--expires",
        "1d",
        "--store",
        text(&store),
    ])
    .await;
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    let token = stdout(&created).trim().to_owned();
    let mut store_text = std::fs::read_to_string(&store).unwrap();
    store_text
        .push_str("\n[[tokens]]\nid = \"keptn\"\nfile = \"keptn-token\"\nroles = [\"admin\"]\n");
    std::fs::write(&store, store_text).unwrap();
    std::fs::write(dir.path().join("keptn-token"), "keptn-secret-value\n").unwrap();

    let output = gatehouse(&["token", "list", "--json", "--store", text(&store)]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    let list: Value = serde_json::from_str(&out).expect("stdout is JSON");
    let entries = list.as_array().expect("an array");
    assert_eq!(entries.len(), 2, "{out}");
    let ci = &entries[0];
    assert_eq!(ci["id"], "ci");
    assert_eq!(ci["roles"], serde_json::json!(["operator"]));
    assert_eq!(ci["state"], "active");
    assert_eq!(ci["disabled"], false);
    assert_eq!(ci["source"], "store");
    assert_eq!(ci["hint"], &token[token.len() - 4..]);
    assert_eq!(ci["previous_expires"], Value::Null);
    for key in ["created", "expires"] {
        let time = ci[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a time: {out}"));
        OffsetDateTime::parse(time, &Rfc3339).unwrap();
    }
    assert_eq!(entries[1]["source"], "file");
    assert!(
        entries[1]["file"]
            .as_str()
            .unwrap()
            .ends_with("keptn-token")
    );

    // What must not be there: either token, or any hash of one.
    for secret in [token.as_str(), "keptn-secret-value"] {
        assert!(!out.contains(secret), "a token in the listing: {out}");
        assert!(
            !out.contains(&gatehouse::token_cmd::hash(secret)),
            "a hash in the listing"
        );
    }
    assert!(!out.contains("sha256"), "{out}");
}

// ------------------------------------------------------------------------------ token hash

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_refuses_empty_input_and_warns_on_a_bad_checksum() {
    for empty in ["", "\n", "   \n"] {
        let output = gatehouse_with(&["token", "hash"], empty).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{empty:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("error: no token on stdin"),
            "{}",
            stderr(&output)
        );
        assert!(
            stdout(&output).is_empty(),
            "no hash printed: {}",
            stdout(&output)
        );
    }

    let good = gatehouse::auth::token_format::generate().expose().clone();
    let output = gatehouse_with(&["token", "hash"], &format!("{good}\n")).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output).trim(), gatehouse::token_cmd::hash(&good));
    assert!(
        stderr(&output).is_empty(),
        "no warning for a good token: {}",
        stderr(&output)
    );

    // A Keptn-style token (no gth_ prefix) is not checked: no warning.
    let output = gatehouse_with(&["token", "hash"], "keptn-random-token\n").await;
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));

    let typo = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('A') { 'B' } else { 'A' }
    );
    let output = gatehouse_with(&["token", "hash"], &typo).await;
    assert_eq!(output.status.code(), Some(0), "a warning, not a failure");
    assert!(stderr(&output).contains("warning: this gth_ token fails its checksum"));
    assert_eq!(stdout(&output).trim(), gatehouse::token_cmd::hash(&typo));
    assert!(!stderr(&output).contains(&typo), "the token is not echoed");
}

// ---------------------------------------------------------------------------- token rotate

/// `GET /api/x` with `x-token: token`.
async fn get_with(gw: &TestGateway, token: &str) -> Resp {
    let request = http::Request::get("/api/x")
        .header("x-token", token)
        .body(crate::support::empty())
        .unwrap();
    gw.client().send(request).await
}

/// Accepted as `ci` (operator), as the upstream saw it.
async fn assert_ci(gw: &TestGateway, up: &Upstream, token: &str, what: &str) {
    let before = up.count();
    let resp = get_with(gw, token).await;
    assert_eq!(resp.status, 200, "{what}: {:?}", resp.text());
    let got = up.wait_for_requests(before + 1).await;
    assert_identity(&got[before], "ci", "operator", "token");
}

/// Polls with real requests until `token` gets 401, bounded by `limit`.
async fn wait_refused(gw: &TestGateway, up: &Upstream, token: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let before = up.count();
        let resp = get_with(gw, token).await;
        match resp.status.as_u16() {
            200 => {}
            401 => {
                assert_eq!(up.count(), before, "a refused request reached the upstream");
                return;
            }
            other => panic!("{other} {:?}", resp.text()),
        }
        assert!(started.elapsed() < limit, "still accepted {limit:?} later");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `token` is accepted (the reload picked the new store up), bounded.
async fn wait_accepted(gw: &TestGateway, token: &str) {
    let started = Instant::now();
    while get_with(gw, token).await.status != 200 {
        assert!(
            started.elapsed() < RELOAD_WAIT,
            "new token not accepted within {RELOAD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A settled gateway over `tokens.toml` holding `ci` (operator), and the token.
async fn rotation_gateway() -> (TestGateway, Upstream, String) {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let token = layout.mint("ci", &["operator"]);
    let body = format!(
        "[auth]\ntokens = \"tokens.toml\"\ntoken_headers = [\"x-token\"]\n{}\
         [[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"token\"]\n",
        upstream_toml("api-service", &[up.addr], "")
    );
    let gw = layout.start(&body).await;
    settle(&gw).await;
    assert_ci(&gw, &up, &token, "before rotation").await;
    (gw, up, token)
}

async fn rotate(store: &Path, overlap: &str) -> (String, String) {
    let output = gatehouse(&[
        "token",
        "rotate",
        "ci",
        "--overlap",
        overlap,
        "--store",
        text(store),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    (stdout(&output), stderr(&output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keeps_the_old_token_for_the_overlap_then_refuses_it() {
    let (gw, up, old) = rotation_gateway().await;
    let store = gw.file("tokens.toml");

    let (out, err) = rotate(&store, "2s").await;
    let new = out.trim().to_owned();
    assert!(
        new.starts_with("gth_") && new != old,
        "one new token on stdout: {out:?}"
    );
    assert!(
        !out.contains(&old) && !err.contains(&old),
        "the old token is never printed"
    );
    assert!(err.contains("the old token is accepted until"), "{err}");
    let list: Value = serde_json::from_str(&stdout(
        &gatehouse(&["token", "list", "--json", "--store", text(&store)]).await,
    ))
    .unwrap();
    let until =
        OffsetDateTime::parse(list[0]["previous_expires"].as_str().unwrap(), &Rfc3339).unwrap();

    // The new token works as soon as the reload lands, as the same identity; so does the old one.
    wait_accepted(&gw, &new).await;
    assert_ci(&gw, &up, &new, "the new token").await;
    assert_ci(&gw, &up, &old, "the old token during the overlap").await;
    assert!(
        OffsetDateTime::now_utc() < until,
        "the overlap was over before the old token was tried: the check above proved nothing"
    );

    // After the overlap: refused (no reload needed, the store holds the end time), the new one
    // still works.
    wait_refused(&gw, &up, &old, Duration::from_secs(8)).await;
    let refused_wall = OffsetDateTime::now_utc();
    assert!(
        refused_wall >= until,
        "refused before the overlap ended ({refused_wall} < {until})"
    );
    println!(
        "old token refused {:?} after the overlap end",
        refused_wall - until
    );
    let resp = get_with(&gw, &old).await;
    assert_eq!(resp.status, 401);
    assert_ci(&gw, &up, &new, "the new token after the overlap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_with_no_overlap_refuses_the_old_token_at_the_reload() {
    let (gw, up, old) = rotation_gateway().await;
    let store = gw.file("tokens.toml");
    let (out, err) = rotate(&store, "0s").await;
    let new = out.trim().to_owned();
    assert!(
        err.contains("refused from the gateway's next reload"),
        "{err}"
    );
    wait_accepted(&gw, &new).await;
    let resp = get_with(&gw, &old).await;
    assert_eq!(
        resp.error(401),
        "invalid token",
        "refused as soon as the new one is accepted"
    );
    assert_ci(&gw, &up, &new, "the new token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_after_rotate_refuses_both_tokens() {
    let (gw, up, old) = rotation_gateway().await;
    let store = gw.file("tokens.toml");
    let (out, _) = rotate(&store, "1h").await;
    let new = out.trim().to_owned();
    wait_accepted(&gw, &new).await;
    assert_ci(&gw, &up, &old, "the old token during a long overlap").await;

    let revoked = gatehouse(&["token", "revoke", "ci", "--store", text(&store)]).await;
    assert_eq!(revoked.status.code(), Some(0), "{}", stderr(&revoked));
    wait_refused(&gw, &up, &new, RELOAD_WAIT).await;
    let resp = get_with(&gw, &old).await;
    assert_eq!(
        resp.error(401),
        "invalid token",
        "the previous secret went with the entry"
    );
}

// ----------------------------------------------------------------------------------- check

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_every_type_error_with_its_line_and_suggests_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[routes]]\npath = \"/a\"\nupstream = \"api-service\"\nexact = \"yes\"\n\
         strip_prefx = true\n\n[[routes]]\npath = \"/b\"\nupstream = \"api-servce\"\n\
         websocket = 1\n",
    );
    let text_before = std::fs::read_to_string(&path).unwrap();
    let with_limits = text_before.replace("[tls]", "[limits]\nmax_connections = \"lots\"\n\n[tls]");
    std::fs::write(&path, &with_limits).unwrap();
    let line_of = |needle: &str| {
        with_limits
            .lines()
            .position(|line| line.starts_with(needle))
            .unwrap()
            + 1
    };

    let output = gatehouse(&["check", "-c", text(&path)]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        (
            line_of("max_connections"),
            "limits.max_connections: invalid type: string, expected",
        ),
        (
            line_of("exact"),
            "routes[0].exact: invalid type: string, expected a boolean",
        ),
        (
            line_of("strip_prefx"),
            "routes[0].strip_prefx: unknown key (did you mean \"strip_prefix\"?)",
        ),
        (
            line_of("upstream = \"api-servce\""),
            "routes[1].upstream: unknown upstream \"api-servce\"",
        ),
        (
            line_of("websocket"),
            "routes[1].websocket: invalid type: integer `1`, expected a boolean",
        ),
    ];
    assert_eq!(
        lines.len(),
        expect.len(),
        "one line per problem, none hidden:\n{err}"
    );
    for ((line, message), got) in expect.iter().zip(&lines) {
        let want = format!("{}:{line}:1: {message}", path.display());
        assert!(
            got.starts_with(&want),
            "want {want:?}\n got {got:?}\nall:\n{err}"
        );
    }
    assert!(
        !err.contains("lots"),
        "a mistyped value is not echoed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_summary_shows_routes_certificate_and_tokens_without_ansi() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "{AUDITOR_ROUTE}\n[[routes]]\npath = \"/old\"\nexact = true\nredirect = \"/new\"\n"
        ),
    );
    let store = dir.path().join("tokens.toml");
    for id in ["a", "b"] {
        let created = gatehouse(&[
            "token",
            "create",
            "--id",
            id,
            "--role",
            "viewer",
            "--store",
            text(&store),
        ])
        .await;
        assert_eq!(created.status.code(), Some(0));
    }

    let output = gatehouse(&["check", "-c", text(&path)]).await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert!(
        out.contains("prefix /audit  auth token  -> api-service"),
        "{out}"
    );
    assert!(
        out.contains("exact  /old  auth public  -> redirect 308 /new"),
        "{out}"
    );
    let cert = out.lines().find(|l| l.contains("certificate")).expect(&out);
    let leaf = crate::support::first_cert_in(&dir.path().join("certs/tls.crt"));
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let not_after = parsed
        .validity()
        .not_after
        .to_datetime()
        .format(&Rfc3339)
        .unwrap();
    assert!(
        cert.contains(&format!("expires {not_after} (in ")),
        "the served certificate's notAfter {not_after}: {cert}"
    );
    assert!(out.contains("tokens        2 in "), "{out}");
    assert!(out.contains("(2 active, 0 expired, 0 disabled)"), "{out}");

    // A warning logged to a pipe carries no colour codes.
    std::fs::remove_file(&store).unwrap();
    let output = gatehouse(&["check", "-c", text(&path)]).await;
    let err = stderr(&output);
    assert!(
        err.contains("token store not found"),
        "a logged warning: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped stderr: {err:?}"
    );
    assert!(
        stdout(&output).contains("tokens        none"),
        "{}",
        stdout(&output)
    );
}

// ------------------------------------------------------------------------------------ demo

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_admin_url_and_removes_its_folder_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let folder = within("the demo's Folder: line", async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("demo output ended early");
            seen.push(line.clone());
            if let Some(folder) = line.strip_prefix("Folder: ") {
                return PathBuf::from(folder);
            }
        }
    })
    .await;
    let all = seen.join("\n");
    assert!(all.contains("Admin listener: http://127.0.0.1:"), "{all}");
    let metrics = seen
        .iter()
        .find(|l| l.trim_start().starts_with("curl http://127.0.0.1:") && l.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no metrics curl line:\n{all}"));
    assert!(folder.starts_with(tmp.path()), "{folder:?} under TMPDIR");
    assert!(folder.join("gateway.toml").exists());

    // The metrics line works as printed.
    let admin: std::net::SocketAddr = metrics
        .trim()
        .trim_start_matches("curl http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let resp = crate::support::client::get_plain(admin, "/metrics").await;
    assert_eq!(resp.status, 200);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = within("the demo to exit after SIGTERM", child.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(!folder.exists(), "{folder:?} removed on exit");
}
