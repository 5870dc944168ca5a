//! The admin listener: `/healthz` (process alive), `/readyz` (serving and not draining),
//! `/config` (the effective configuration, redacted, with its content hash, generation and the
//! last reload's result), `POST /reload` (answers after the swap with the outcome).
//! Bound to loopback by default.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::auth::external::AuthRequest;
use crate::auth::{Attempt, roles};
use crate::config::{AuthKind, Limits};
use crate::error::GatewayError;
use crate::http::body::{self, Body};
use crate::reload::{ReloadHandle, ReloadOutcome};
use crate::runtime::Shared;
use crate::timestamp::rfc3339;

/// Most admin connections served at once (SPEC §8.8); more wait in the listen backlog.
pub(crate) const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves admin requests until the process stops (the admin listener outlives the drain so
/// `/readyz` can say 503 throughout it). Each connection holds one of
/// [`MAX_ADMIN_CONNECTIONS`] permits and gets the main listener's header read timeout and
/// header size limit; a failed `accept` backs off instead of spinning.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, reload: ReloadHandle) {
    let permits = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = crate::listen::accept(&listener, "admin").await;
        let shared = shared.clone();
        let reload = reload.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer.ip(), shared, reload).await;
            drop(permit);
        });
    }
}

/// One admin connection, HTTP/1.1 only, with the current runtime's header limits.
async fn serve_connection(
    stream: TcpStream,
    peer: IpAddr,
    shared: Arc<Shared>,
    reload: ReloadHandle,
) {
    let builder = admin_builder(&shared.runtime.load().config.limits);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let reload = reload.clone();
        async move { Ok::<_, Infallible>(handle(&req, &shared, &reload, peer).await) }
    });
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

/// The main listener's HTTP/1 limits: `header_read_timeout` (which also bounds an idle
/// keep-alive connection) and `max_header_bytes`.
fn admin_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(crate::listen::http1_buffer(limits));
    builder
}

async fn handle(
    req: &Request<Incoming>,
    shared: &Shared,
    reload: &ReloadHandle,
    peer: IpAddr,
) -> Response<Body> {
    let sensitive = matches!(
        (req.method(), req.uri().path()),
        (&Method::POST, "/reload") | (&Method::GET, "/config")
    );
    if sensitive && let Some(refused) = admin_refusal(req, shared, peer).await {
        return refused;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/reload") => reload_response(reload.reload().await),
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if shared.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        (&Method::GET | &Method::HEAD, "/readyz") => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/metrics") => metrics(shared),
        (&Method::GET, "/config") => json(StatusCode::OK, &config_view(shared, reload)),
        (_, "/healthz" | "/readyz" | "/config" | "/reload" | "/metrics") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The refusal, if any. SPEC §6: on loopback anyone local may use `/config` and `/reload`; bound
/// anywhere else they need a token from the store with the `admin` role (`Authorization: Bearer`
/// or a token header). The token goes through the same [`Authenticator`] path as on the main
/// listener, so `failure_limit` counts refused admin tokens per peer IP too and a peer over it
/// gets 429 (SPEC §8.8).
///
/// [`Authenticator`]: crate::auth::Authenticator
async fn admin_refusal(
    req: &Request<Incoming>,
    shared: &Shared,
    peer: IpAddr,
) -> Option<Response<Body>> {
    if shared.bound().server.admin_listen.ip().is_loopback() {
        return None;
    }
    let runtime = shared.runtime.load_full();
    let request_id = crate::http::forwarded::request_id(req.headers());
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let attempt = Attempt {
        request: AuthRequest {
            method: req.method(),
            uri: path,
            host: None,
            headers: req.headers(),
            client_ip: peer,
            request_id: &request_id,
        },
        session: None,
    };
    let error = match runtime
        .auth
        .authenticate(&[AuthKind::Token], &attempt)
        .await
    {
        Ok(caller)
            if caller
                .identity
                .roles
                .iter()
                .any(|r| roles::satisfies(r, "admin")) =>
        {
            return None;
        }
        Ok(_) => GatewayError::RoleRequired("admin".to_owned()),
        Err(error) => error,
    };
    let mut response = error.into_response(request_id.as_str());
    response.headers_mut().insert(
        crate::http::forwarded::X_REQUEST_ID,
        request_id.header().clone(),
    );
    Some(response)
}

/// The effective configuration without secrets: names, paths and addresses only.
fn config_view(shared: &Shared, reload: &ReloadHandle) -> serde_json::Value {
    let runtime = shared.runtime.load();
    let status = reload.status().borrow().clone();
    let config = &runtime.config;
    let loaded_at = rfc3339(runtime.loaded_at);
    serde_json::json!({
        "file": config.path.display().to_string(),
        "content_hash": runtime.content_hash,
        "generation": runtime.generation,
        "loaded_at": loaded_at,
        "last_reload": {
            "time": rfc3339(status.at),
            "ok": status.ok,
            "error": status.error,            "attempts": status.attempts,
            "restart_needed": status.restart_needed,
        },
        "server": {
            "listen": config.server.listen.to_string(),
            "plain_listen": config.server.plain_listen.map(|a| a.to_string()),
            "admin_listen": config.server.admin_listen.to_string(),
        },
        "upstreams": config.upstreams.iter().map(|u| serde_json::json!({"name": u.name, "targets": u.targets})).collect::<Vec<_>>(),
        "routes": config.routes.iter().map(|r| serde_json::json!({
            "path": r.path,
            "exact": r.exact,
            "host": r.host,
            "auth": r.auth.iter().map(|kind| kind.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        // URLs may carry a password or a key in their query: only ever shown redacted (SPEC §8.12).
        "rate_limits": {
            "backend": config.rate_backend.as_ref().map(|b| serde_json::json!({
                "redis": crate::config::redact_url(&b.redis),
            })),
        },
        "auth": {
            "external_url": config.auth.external.as_ref().map(|e| crate::config::redact_url(&e.url.to_string())),
            "jwks_url": config.auth.jwt.as_ref().and_then(|j| j.jwks_url.as_deref()).map(crate::config::redact_url),
            "failure_limit": config.auth.failure_limit.is_some(),
        },
        "warnings": config.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn metrics(shared: &Shared) -> Response<Body> {
    let runtime = shared.runtime.load();
    let tokens = runtime.auth.tokens.counts(time::OffsetDateTime::now_utc());
    let mut text = shared.metrics.render(tokens);
    shared.access_log.render(&mut text);
    let limits = &runtime.rate_limits;
    text.push_str("# HELP gatehouse_rate_limit_backend_errors_total Redis rate-limit calls that failed or timed out.\n");
    text.push_str("# TYPE gatehouse_rate_limit_backend_errors_total counter\n");
    text.push_str(&format!(
        "gatehouse_rate_limit_backend_errors_total {}\n",
        limits.redis_errors()
    ));
    text.push_str("# HELP gatehouse_rate_limit_keys Keys tracked by the local rate limiters.\n");
    text.push_str("# TYPE gatehouse_rate_limit_keys gauge\n");
    text.push_str(&format!(
        "gatehouse_rate_limit_keys {}\n",
        limits.tracked_keys()
    ));
    crate::observe::scrape::render(&mut text, &runtime);
    crate::observe::audit::render_metrics(runtime.audit.as_ref(), &mut text);
    let mut response = Response::new(body::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `POST /reload`: 200 with the outcome, or 422 with the error (the old runtime stays).
fn reload_response(outcome: ReloadOutcome) -> Response<Body> {
    match outcome {
        ReloadOutcome::Applied {
            generation,
            restart_needed,
        } => json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "changed": true, "generation": generation, "restart_needed": restart_needed}),
        ),
        ReloadOutcome::Unchanged { generation } => json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "changed": false, "generation": generation}),
        ),
        ReloadOutcome::Failed { error } => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({"ok": false, "error": error}),
        ),
    }
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
