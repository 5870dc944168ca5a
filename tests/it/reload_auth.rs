//! Live reload of what authentication trusts (SPEC §3, §5; issue 5): the token store (tokens
//! added with `token create`, revoked with `token revoke`, editor saves, a Kubernetes `..data`
//! swap, invalid and deleted stores), `file =` tokens (rewritten in place and swapped as a
//! Secret), the JWKS file, and a store moved to a new folder by a `gateway.toml` change.
//!
//! Every wait is on the reload status (`generation`, `attempts`, `ok`) inside a timeout, through
//! real TLS requests; nothing sleeps to synchronise.

use std::time::{Duration, Instant};

use gatehouse::reload::ReloadStatus;
use gatehouse::token_cmd;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::auth::{
    INVALID_TOKEN_CHALLENGE, JwtKey, Layout, assert_identity, jwks, unix_now,
};
use crate::support::files::{K8sVolume, save_atomically};
use crate::support::gateway::compose_config;
use crate::support::reload::{RELOAD_WAIT, settle, wait_generation, wait_status};
use crate::support::{Resp, TestGateway, Upstream, upstream_toml};

/// SPEC §5: a revoked token is refused within 1 s of the write.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------------------------ helpers

/// Waits for a refused reload attempt after `before`; returns its status (same generation).
async fn wait_refused(gw: &TestGateway, before: &ReloadStatus) -> ReloadStatus {
    let status = wait_status(gw, "a refused reload", |s| {
        s.attempts > before.attempts && !s.ok
    })
    .await;
    assert_eq!(
        status.generation, before.generation,
        "a refused reload keeps the running generation: {status:?}"
    );
    status
}

/// The status now.
fn status_now(gw: &TestGateway) -> ReloadStatus {
    gw.gateway().reload_handle().status().borrow().clone()
}

/// A `[[routes]]` table proxying `/api` to `api-service` with credential kinds `auth`.
fn protected_api(auth: &str) -> String {
    format!("\n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = {auth}\n")
}

/// `gateway.toml` body: `[auth] tokens = store` in front of `up` on `/api` (token only).
fn token_config(store: &str, up: &Upstream) -> String {
    format!(
        "[auth]\ntokens = \"{store}\"\n{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        protected_api("[\"token\"]")
    )
}

/// `GET /api/x` over HTTPS/1.1 (a fresh TLS connection) with the header `name: value`.
async fn get_header(gw: &TestGateway, name: &'static str, value: String) -> Resp {
    let request = http::Request::get("/api/x")
        .header(name, value)
        .body(crate::support::empty())
        .unwrap();
    gw.client().send(request).await
}

/// `GET /api/x` with `x-token: token`.
async fn get_with(gw: &TestGateway, token: &str) -> Resp {
    get_header(gw, "x-token", token.to_owned()).await
}

/// The token is accepted: 200 from the upstream, which saw `id` as the subject.
async fn assert_accepted(gw: &TestGateway, up: &Upstream, token: &str, id: &str, roles: &str) {
    let before = up.count();
    let resp = get_with(gw, token).await;
    if resp.status != 200 {
        let config = gw.admin_get("/config").await.json();
        panic!(
            "token {id:?}: {} {:?}, expected 200; runtime generation {}, last_reload {}",
            resp.status,
            resp.text(),
            config["generation"],
            config["last_reload"]
        );
    }
    let got = up.wait_for_requests(before + 1).await;
    assert_identity(&got[before], id, roles, "token");
}

/// The token is refused: 401 `invalid token` with the `invalid_token` challenge, and the
/// upstream got nothing.
async fn assert_refused(gw: &TestGateway, up: &Upstream, token: &str, why: &str) {
    let before = up.count();
    let resp = get_with(gw, token).await;
    assert_eq!(resp.error(401), "invalid token", "{why}");
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE),
        "{why}"
    );
    assert_eq!(up.count(), before, "{why}: the upstream got a request");
}

/// `token create` into `store` (as the CLI does), returning the token.
fn create(store: &std::path::Path, id: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    token_cmd::create(store, id, &roles, None, OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("token create {id}: {e:#}"))
        .expose()
        .clone()
}

/// A hand-written `[[tokens]]` entry for `token` (stored as its SHA-256).
fn entry(id: &str, token: &str, roles: &str) -> String {
    format!(
        "\n[[tokens]]\nid = \"{id}\"\nsha256 = \"{}\"\nroles = [{roles}]\n",
        token_cmd::hash(token)
    )
}

/// The value of `gatehouse_reloads_total{result="…"}` on `/metrics`.
async fn reloads_total(gw: &TestGateway, result: &str) -> u64 {
    let text = gw.admin_get("/metrics").await.text();
    let prefix = format!("gatehouse_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A gateway over `tokens.toml` holding one minted `ci-bot` (viewer) token: (gateway, upstream,
/// the token), settled.
async fn store_gateway() -> (TestGateway, Upstream, String) {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let token = layout.mint("ci-bot", &["viewer"]);
    let gw = layout.start(&token_config("tokens.toml", &up)).await;
    settle(&gw).await;
    assert_accepted(&gw, &up, &token, "ci-bot", "viewer").await;
    (gw, up, token)
}

// --------------------------------------------------------------------------- token create/revoke

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_created_is_accepted_and_revoked_is_refused_within_a_second() {
    let (gw, up, ci_bot) = store_gateway().await;
    let store = gw.file("tokens.toml");
    let stranger = Layout::new().mint("deploy-bot", &["operator"]);
    assert_refused(&gw, &up, &stranger, "a token minted into another store").await;

    // Added with `token create`: accepted after the reload it triggers.
    let before = status_now(&gw);
    let deploy = create(&store, "deploy-bot", &["operator"]);
    let added = wait_generation(&gw, before.generation).await;
    assert_accepted(&gw, &up, &deploy, "deploy-bot", "operator").await;
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;

    // Revoked with `token revoke`: refused from the reload on. Measure revoke → first 401,
    // polling with real requests (each on a fresh TLS connection) until the refusal shows.
    let started = Instant::now();
    token_cmd::revoke(&store, "deploy-bot").unwrap();
    let written = started.elapsed();
    let mut polls = 0u32;
    let first_401 = loop {
        polls += 1;
        let resp = get_with(&gw, &deploy).await;
        match resp.status.as_u16() {
            200 => {}
            401 => {
                assert_eq!(resp.error(401), "invalid token");
                break started.elapsed();
            }
            other => panic!("while revoking: {other} {:?}", resp.text()),
        }
        assert!(
            started.elapsed() < RELOAD_WAIT,
            "the revoked token was still accepted {RELOAD_WAIT:?} after `token revoke` \
             ({polls} requests); status {:?}",
            status_now(&gw)
        );
    };
    println!(
        "revocation latency: `token revoke` -> first 401 in {first_401:?} \
         (the revoke itself took {written:?}; {polls} requests)"
    );
    assert!(
        first_401 < REVOCATION_BOUND,
        "SPEC §5: a revoked token is refused within 1 s; took {first_401:?}"
    );
    let revoked = wait_generation(&gw, added.generation).await;
    assert_ne!(revoked.content_hash, added.content_hash);
    assert_refused(&gw, &up, &deploy, "revoked").await;
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], true);
}

// ---------------------------------------------------------------------------- `file =` tokens

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_token_rewritten_in_place_replaces_the_old_token() {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    layout.write("secrets/api-token", "first-raw-token-0123456789\n");
    layout.append_tokens(
        "[[tokens]]\nid = \"keptn\"\nfile = \"secrets/api-token\"\nroles = [\"admin\"]\n",
    );
    let gw = layout.start(&token_config("tokens.toml", &up)).await;
    let before = settle(&gw).await;
    assert_accepted(&gw, &up, "first-raw-token-0123456789", "keptn", "admin").await;

    // `echo new > file`: truncate + write of the same inode, in a folder of its own.
    std::fs::write(
        gw.file("secrets/api-token"),
        "second-raw-token-9876543210\n",
    )
    .unwrap();
    wait_generation(&gw, before.generation).await;

    assert_accepted(&gw, &up, "second-raw-token-9876543210", "keptn", "admin").await;
    assert_refused(
        &gw,
        &up,
        "first-raw-token-0123456789",
        "the old content of the token file",
    )
    .await;
}

// ------------------------------------------------------------------- Kubernetes `..data` swaps

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_swap_of_the_token_store_folder_is_applied() {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let old = "configmap-token-old-0123456789";
    let new = "configmap-token-new-9876543210";
    let first = entry("ops-bot", old, "\"operator\"");
    let mut volume = K8sVolume::create(&layout.path("store"), &[("tokens.toml", first.as_bytes())]);
    let gw = layout.start(&token_config("store/tokens.toml", &up)).await;
    let before = settle(&gw).await;
    assert_accepted(&gw, &up, old, "ops-bot", "operator").await;
    assert_refused(&gw, &up, new, "not in the store yet").await;

    // The kubelet's update: new timestamped folder, `..data` renamed over, old folder removed.
    // `tokens.toml` itself (a symlink through `..data`) is never written.
    let second = entry("ops-bot", new, "\"operator\"") + &entry("viewer-bot", old, "\"viewer\"");
    volume.update(&[("tokens.toml", second.as_bytes())]);
    let swapped = wait_generation(&gw, before.generation).await;

    assert_accepted(&gw, &up, new, "ops-bot", "operator").await;
    assert_accepted(&gw, &up, old, "viewer-bot", "viewer").await;

    // And a second swap (the old real folder is gone; the watch must have followed).
    let third = entry("ops-bot", new, "\"operator\"");
    volume.update(&[("tokens.toml", third.as_bytes())]);
    wait_generation(&gw, swapped.generation).await;
    assert_accepted(&gw, &up, new, "ops-bot", "operator").await;
    assert_refused(&gw, &up, old, "dropped by the second swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_swap_of_a_token_file_secret_is_applied() {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let old = "secret-token-old-0123456789";
    let new = "secret-token-new-9876543210";
    let mut volume = K8sVolume::create(
        &layout.path("secrets/keptn-api-token"),
        &[("keptn-api-token", old.as_bytes())],
    );
    layout.append_tokens(
        "[[tokens]]\nid = \"keptn\"\nfile = \"secrets/keptn-api-token/keptn-api-token\"\nroles = [\"admin\"]\n",
    );
    let gw = layout.start(&token_config("tokens.toml", &up)).await;
    let before = settle(&gw).await;
    assert_accepted(&gw, &up, old, "keptn", "admin").await;

    volume.update(&[("keptn-api-token", new.as_bytes())]);
    let swapped = wait_generation(&gw, before.generation).await;
    assert_accepted(&gw, &up, new, "keptn", "admin").await;
    assert_refused(&gw, &up, old, "the rotated-out Secret value").await;

    // A second rotation, after the first real folder was removed.
    let newer = "secret-token-newer-5555555555";
    volume.update(&[("keptn-api-token", newer.as_bytes())]);
    wait_generation(&gw, swapped.generation).await;
    assert_accepted(&gw, &up, newer, "keptn", "admin").await;
    assert_refused(&gw, &up, new, "the second rotated-out Secret value").await;
}

// ------------------------------------------------------------------------------- editor save

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_style_save_of_tokens_toml_is_applied() {
    let (gw, up, ci_bot) = store_gateway().await;
    let store = gw.file("tokens.toml");
    let before = status_now(&gw);
    let hand_made = "hand-edited-token-0123456789";
    assert_refused(&gw, &up, hand_made, "not in the store yet").await;

    // An editor's save: temp file in the same folder, then renamed over tokens.toml.
    let mut text = std::fs::read_to_string(&store).unwrap();
    text.push_str("# added by hand\n");
    text.push_str(&entry("hand-bot", hand_made, "\"viewer\", \"operator\""));
    save_atomically(&store, &text);
    wait_generation(&gw, before.generation).await;

    assert_accepted(&gw, &up, hand_made, "hand-bot", "viewer,operator").await;
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
}

// ------------------------------------------------------------------------- refused token stores

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_toml_is_refused_and_old_tokens_keep_working() {
    let (gw, up, ci_bot) = store_gateway().await;
    let store = gw.file("tokens.toml");
    let good = std::fs::read_to_string(&store).unwrap();
    let errors_before = reloads_total(&gw, "error").await;
    let fresh = "fresh-token-0123456789abcdef";

    // A malformed sha256 (a raw token pasted where its hash belongs) in a second entry, next
    // to an entry that would add `fresh`: the whole store is refused.
    let before = status_now(&gw);
    let malformed = format!(
        "{good}{}\n[[tokens]]\nid = \"pasted\"\nsha256 = \"{fresh}\"\nroles = [\"viewer\"]\n",
        entry("fresh-bot", fresh, "\"viewer\"")
    );
    save_atomically(&store, &malformed);
    let refused = wait_refused(&gw, &before).await;
    let error = refused
        .error
        .clone()
        .expect("a refused reload has an error");
    let want = format!("{}: tokens[2].sha256: malformed sha256", store.display());
    assert!(
        error.contains(&want),
        "the error names tokens.toml and the key: {error:?}, want {want:?}"
    );
    assert!(
        !error.contains(fresh),
        "the error never echoes the pasted value: {error:?}"
    );
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
    assert_refused(&gw, &up, fresh, "in a refused store").await;
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], false, "{config}");
    assert_eq!(config["last_reload"]["error"], error.as_str());
    assert_eq!(config["generation"], before.generation);
    assert!(reloads_total(&gw, "error").await > errors_before);

    // A duplicate id: refused as well, naming the key.
    let before = status_now(&gw);
    let duplicate = format!("{good}{}", entry("ci-bot", fresh, "\"viewer\""));
    save_atomically(&store, &duplicate);
    let refused = wait_status(&gw, "the duplicate-id store refused", |s| {
        s.attempts > before.attempts && !s.ok && s.error.as_deref() != Some(error.as_str())
    })
    .await;
    assert_eq!(refused.generation, before.generation);
    let error = refused.error.clone().unwrap();
    let want = format!("{}: tokens[1].id: duplicate id \"ci-bot\"", store.display());
    assert!(error.contains(&want), "{error:?}, want {want:?}");
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
    assert_refused(&gw, &up, fresh, "in a refused store").await;
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], false);
    assert_eq!(config["last_reload"]["error"], error.as_str());
    let errors = reloads_total(&gw, "error").await;
    assert!(
        errors >= errors_before + 2,
        "gatehouse_reloads_total{{result=\"error\"}} {errors}, was {errors_before}"
    );

    // The next valid store applies normally.
    let fixed = format!("{good}{}", entry("fresh-bot", fresh, "\"viewer\""));
    save_atomically(&store, &fixed);
    let applied = wait_generation(&gw, before.generation).await;
    assert_eq!(applied.error, None);
    assert_accepted(&gw, &up, fresh, "fresh-bot", "viewer").await;
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], true);
    assert_eq!(config["last_reload"]["error"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tokens_toml_is_refused_and_tokens_keep_working() {
    let (gw, up, ci_bot) = store_gateway().await;
    let store = gw.file("tokens.toml");
    let good = std::fs::read_to_string(&store).unwrap();
    let before = status_now(&gw);

    std::fs::remove_file(&store).unwrap();
    let refused = wait_refused(&gw, &before).await;
    let error = refused.error.clone().unwrap();
    assert!(
        error.contains(&store.display().to_string()) && error.contains("missing"),
        "the error names the missing store: {error:?}"
    );
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], false);
    assert_eq!(config["last_reload"]["error"], error.as_str());

    // Put back with a new entry: applied, and the old token still works.
    let back = "restored-token-0123456789";
    save_atomically(
        &store,
        format!("{good}{}", entry("back-bot", back, "\"viewer\"")),
    );
    wait_generation(&gw, before.generation).await;
    assert_accepted(&gw, &up, back, "back-bot", "viewer").await;
    assert_accepted(&gw, &up, &ci_bot, "ci-bot", "viewer").await;
}

// ------------------------------------------------------------------------------------- JWKS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_file_rewrite_brings_in_a_new_signing_key() {
    const ISSUER: &str = "https://issuer.test/";
    let up = Upstream::text("upstream ok").await;
    let old_key = JwtKey::es256("ec-old");
    let new_key = JwtKey::ed25519("ed-new");
    let layout = Layout::new();
    layout.write("keys/jwks.json", jwks(&[&old_key]));
    let gw = layout
        .start(&format!(
            "[auth.jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"gatehouse\"]\n\
             algorithms = [\"ES256\", \"EdDSA\"]\njwks_file = \"keys/jwks.json\"\n{}{}",
            upstream_toml("api-service", &[up.addr], ""),
            protected_api("[\"jwt\"]")
        ))
        .await;
    let before = settle(&gw).await;
    let now = unix_now();
    let claims = json!({"iss": ISSUER, "aud": "gatehouse", "sub": "alice",
        "roles": ["viewer"], "iat": now, "exp": now + 3600});
    let get_jwt = |key: &JwtKey| {
        get_header(
            &gw,
            "authorization",
            format!("Bearer {}", key.sign(&claims)),
        )
    };

    let resp = get_jwt(&old_key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = get_jwt(&new_key).await;
    assert_eq!(
        resp.error(401),
        "invalid token",
        "signed by a key not in the JWKS yet"
    );
    assert_eq!(up.count(), 1);

    // The file rewritten in place (truncate + write) with both keys.
    std::fs::write(gw.file("keys/jwks.json"), jwks(&[&old_key, &new_key])).unwrap();
    let rotated = wait_generation(&gw, before.generation).await;

    let resp = get_jwt(&new_key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = get_jwt(&old_key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = up.wait_for_requests(3).await;
    assert_identity(&got[1], "alice", "viewer", "jwt");

    // The old key retired by an editor-style save: its JWTs are refused.
    save_atomically(&gw.file("keys/jwks.json"), jwks(&[&new_key]));
    wait_generation(&gw, rotated.generation).await;
    let resp = get_jwt(&old_key).await;
    assert_eq!(resp.error(401), "invalid token", "signed by a retired key");
    let resp = get_jwt(&new_key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.count(), 4);
}

// ------------------------------------------------------------------ watch set follows the config

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_store_moved_to_a_new_folder_is_watched_after_the_reload() {
    let (gw, up, ci_bot) = store_gateway().await;
    let before = status_now(&gw);

    // A store in a folder the gateway has never heard of, then gateway.toml pointed at it.
    let vault = tempfile::tempdir().unwrap();
    let new_store = vault.path().join("tokens.toml");
    let first = create(&new_store, "vault-bot", &["viewer"]);
    std::fs::write(
        gw.file("gateway.toml"),
        compose_config(&token_config(&new_store.display().to_string(), &up)),
    )
    .unwrap();
    let moved = wait_generation(&gw, before.generation).await;
    assert_accepted(&gw, &up, &first, "vault-bot", "viewer").await;
    assert_refused(&gw, &up, &ci_bot, "only in the old store").await;

    // A token created in the new store afterwards: its folder is watched, no config change.
    let second = create(&new_store, "late-bot", &["operator"]);
    wait_generation(&gw, moved.generation).await;
    assert_accepted(&gw, &up, &second, "late-bot", "operator").await;
    assert_accepted(&gw, &up, &first, "vault-bot", "viewer").await;

    // And revoking there is seen too.
    let status = status_now(&gw);
    token_cmd::revoke(&new_store, "vault-bot").unwrap();
    wait_generation(&gw, status.generation).await;
    assert_refused(&gw, &up, &first, "revoked in the new store").await;
}
