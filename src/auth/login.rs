//! The session endpoints under `[auth.session] path_prefix` (SPEC §2), answered before routing
//! so no route can shadow them and no upstream ever sees a login:
//!
//! - `POST {prefix}/login` — the token as `Authorization: Bearer` (or a token header) or a JSON
//!   body `{"token": "..."}` (at most [`MAX_LOGIN_BODY`] bytes). Verified by the same
//!   [`Authenticator`] routes use (store tokens and JWTs), so a refused login counts toward
//!   `failure_limit` and sets no cookie. A foreign `Origin` is refused (see `session::csrf`).
//! - `GET {prefix}/session` — the identity the cookie stands for, or 401.
//! - `POST {prefix}/logout` — ends the session and clears the cookie; a write, so it needs the
//!   same-origin proof every cookie-authenticated write needs.
//!
//! Every answer is `Cache-Control: no-store`: it carries an identity or sets a credential.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use time::OffsetDateTime;

use super::external::AuthRequest;
use super::session::csrf::{self, Target};
use super::session::table::Via;
use super::session::{Opened, SessionAuth};
use super::token_store::hash_token;
use super::{Attempt, AuthMethod, Authenticator, Identity, SessionCookie, credentials};
use crate::error::GatewayError;
use crate::http::body::{self, Body};
use crate::http::forwarded;
use crate::secret::Secret;
use crate::timestamp::rfc3339;

/// Largest login body read: a JSON object holding one token (JWTs run to a few KiB).
pub(crate) const MAX_LOGIN_BODY: usize = 8 * 1024;

/// An endpoint's answer, and who it was for (for the access log).
#[derive(Debug)]
pub(crate) struct Served {
    /// The response.
    pub(crate) response: Response<Body>,
    /// The caller, when one was verified.
    pub(crate) identity: Option<(Arc<str>, AuthMethod)>,
}

/// Which endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Login,
    Session,
    Logout,
}

fn endpoint(prefix: &str, path: &str) -> Option<Endpoint> {
    match path.strip_prefix(prefix)? {
        "/login" => Some(Endpoint::Login),
        "/session" => Some(Endpoint::Session),
        "/logout" => Some(Endpoint::Logout),
        _ => None,
    }
}

/// Answers `path` (normalised) if it is a session endpoint; `Ok(None)` lets the request go on to
/// routing. `conn` is the listener's scheme and the client IP. Takes `body` only for a JSON login.
///
/// # Errors
/// 405 wrong method, 403 cross-site, 400/413 login body, 401/429 as for any credential.
pub(crate) async fn serve(
    req: &Request<()>,
    path: &str,
    body: &mut Option<Incoming>,
    conn: (&'static str, IpAddr),
    auth: &Authenticator,
) -> Result<Option<Served>, GatewayError> {
    let Some(sessions) = &auth.session else {
        return Ok(None);
    };
    let Some(endpoint) = endpoint(&sessions.settings().path_prefix, path) else {
        return Ok(None);
    };
    let (scheme, client_ip) = conn;
    let target = Target {
        scheme,
        host: host(req),
    };
    let served = match endpoint {
        Endpoint::Login => {
            only(req, &Method::POST, "POST")?;
            // Boxed: a rare path, kept out of every request's future (BENCHMARKS.md, "Future size").
            Box::pin(login(req, body, target, client_ip, auth, sessions)).await?
        }
        Endpoint::Session => {
            if req.method() != Method::HEAD {
                only(req, &Method::GET, "GET, HEAD")?;
            }
            session(req, target, client_ip, auth)?
        }
        Endpoint::Logout => {
            only(req, &Method::POST, "POST")?;
            logout(req, target, sessions)?
        }
    };
    Ok(Some(served))
}

fn only(req: &Request<()>, method: &Method, allow: &'static str) -> Result<(), GatewayError> {
    if req.method() == method {
        return Ok(());
    }
    Err(GatewayError::MethodNotAllowed {
        method: req.method().clone(),
        allow: HeaderValue::from_static(allow),
    })
}

async fn login(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    target: Target<'_>,
    client_ip: IpAddr,
    auth: &Authenticator,
    sessions: &SessionAuth,
) -> Result<Served, GatewayError> {
    if !csrf::login_allowed(req.headers(), target) {
        return Err(GatewayError::OriginNotAllowed);
    }
    let credential = match credentials::credential(req.headers(), &auth.token_headers) {
        Some(token) => Secret::new(token.to_owned()),
        None => body_token(body.take()).await?,
    };
    let identity = auth.verify_login(credential.expose(), client_ip).await?;
    let via = match identity.method {
        AuthMethod::Token => Via::Token {
            hash: hash_token(credential.expose().as_bytes()),
        },
        AuthMethod::Jwt => Via::Jwt,
        // `verify_login` only tries the token store and JWTs.
        AuthMethod::Session | AuthMethod::External | AuthMethod::Mtls => {
            return Err(GatewayError::InvalidToken);
        }
    };
    let now = OffsetDateTime::now_utc();
    let Some(Opened {
        set_cookie,
        identity: session,
        ..
    }) = sessions.open(&identity, via, now)
    else {
        // Valid, but for less than a second: a session would be over before it is used.
        return Err(GatewayError::TokenExpired(rfc3339(
            identity.expires.unwrap_or(now),
        )));
    };
    let mut response = identity_response(StatusCode::OK, &session);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie);
    Ok(Served {
        response,
        identity: Some((identity.subject.clone(), identity.method)),
    })
}

/// The login body: `{"token": "..."}`. No `Debug`: it holds the token.
#[derive(Deserialize)]
struct LoginBody {
    token: String,
}

/// Reads the JSON login body, bounded by [`MAX_LOGIN_BODY`].
async fn body_token(body: Option<Incoming>) -> Result<Secret<String>, GatewayError> {
    let Some(body) = body else {
        return Err(GatewayError::MissingCredentials);
    };
    let bytes = match Limited::new(body, MAX_LOGIN_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(GatewayError::BodyTooLarge),
        Err(_) => return Err(GatewayError::MalformedBody),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::MissingCredentials);
    }
    // serde_json's error text may quote the input: it is dropped, never shown or logged.
    let parsed: LoginBody = serde_json::from_slice(&bytes)
        .map_err(|_| GatewayError::BadRequest("login body must be JSON {\"token\": \"...\"}"))?;
    let token = Secret::new(parsed.token);
    if token.expose().trim().is_empty() {
        return Err(GatewayError::MissingCredentials);
    }
    Ok(token)
}

fn session(
    req: &Request<()>,
    target: Target<'_>,
    client_ip: IpAddr,
    auth: &Authenticator,
) -> Result<Served, GatewayError> {
    let cookie = auth
        .session
        .as_ref()
        .and_then(|s| s.find_cookie(req.headers()));
    let request_id = forwarded::request_id(req.headers());
    let attempt = Attempt {
        request: AuthRequest {
            method: req.method(),
            uri: req.uri().path(),
            host: target.host,
            headers: req.headers(),
            client_ip,
            request_id: &request_id,
        },
        session: cookie.as_deref().map(|value| SessionCookie {
            value,
            scheme: target.scheme,
        }),
    };
    let caller = auth.authenticate_session(&attempt)?;
    Ok(Served {
        response: identity_response(StatusCode::OK, &caller.identity),
        identity: Some((caller.identity.subject.clone(), AuthMethod::Session)),
    })
}

fn logout(
    req: &Request<()>,
    target: Target<'_>,
    sessions: &SessionAuth,
) -> Result<Served, GatewayError> {
    if !csrf::write_allowed(req.headers(), target) {
        return Err(GatewayError::OriginNotAllowed);
    }
    if let Some(value) = sessions.find_cookie(req.headers()) {
        sessions.close(&value);
    }
    // The same answer whether a session ended or not: logout says nothing about a cookie.
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    no_store(&mut response);
    if let Some(clear) = sessions.clear_cookie() {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(Served {
        response,
        identity: None,
    })
}

/// `{"subject", "roles", "method", "expires"}`.
fn identity_response(status: StatusCode, identity: &Identity) -> Response<Body> {
    let json = serde_json::json!({
        "subject": &*identity.subject,
        "roles": &*identity.roles,
        "method": identity.method.as_str(),
        "expires": identity.expires.map(rfc3339),
    });
    let mut response = Response::new(body::full(json.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `Host` (HTTP/1) or `:authority` (HTTP/2), port included.
fn host(req: &Request<()>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_exact_paths_under_the_prefix() {
        for (path, want) in [
            ("/auth/login", Some(Endpoint::Login)),
            ("/auth/session", Some(Endpoint::Session)),
            ("/auth/logout", Some(Endpoint::Logout)),
            ("/auth/login/x", None),
            ("/auth/loginx", None),
            ("/authx/login", None),
            ("/auth", None),
            ("/api/auth/login", None),
        ] {
            assert_eq!(endpoint("/auth", path), want, "{path}");
        }
    }
}
