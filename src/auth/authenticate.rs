//! [`Authenticator`]: runs a route's credential kinds against a request and yields an
//! [`Identity`], or the error to answer with. Built once per runtime from `[auth]`.
//!
//! Order: a present credential is tried locally first — a JWT-shaped one against `[auth.jwt]`
//! when the route accepts `jwt`, anything else against the token store when it accepts `token`.
//! A route that accepts `external` asks the auth service whenever no local kind accepted the
//! request, with or without a credential (NGINX `auth_request`: the service decides). Failed
//! credential attempts count against the client IP's `failure_limit`: refused local credentials,
//! and 401/403 from the auth service for a request that sent it a credential (one of its forward
//! headers). A blocked IP gets 429 before any check, so the auth service is not asked either.
//!
//! A session cookie is a credential only on a route that accepts `session`, and only when the
//! request presents no other credential (an explicit token wins); a session refusal is final.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use super::external::{AuthRequest, ExternalAuth, ExternalDecision};
use super::failures::FailureLimit;
use super::jwt::{JwtVerifier, looks_like_jwt};
use super::session::csrf::Target;
use super::session::{CookieRequest, Refusal, SessionAuth};
use super::token_store::{self, Lookup, TokenStore};
use super::{Identity, credentials};
use crate::config::collect::{Collector, optional};
use crate::config::{AuthKind, AuthSettings};
use crate::error::GatewayError;
use crate::timestamp::rfc3339;

/// The per-runtime authentication state.
#[derive(Debug)]
pub(crate) struct Authenticator {
    /// The token store (empty when `[auth] tokens` is unset).
    pub(crate) tokens: Arc<TokenStore>,
    /// `[auth.jwt]`
    pub(crate) jwt: Option<Arc<JwtVerifier>>,
    /// `[auth.external]`; rebuilt (so its decision cache emptied) on every reload.
    pub(crate) external: Option<ExternalAuth>,
    /// `[auth] failure_limit`
    pub(crate) failures: Option<Arc<FailureLimit>>,
    /// `[auth.session]`; its session table and previous key carry over reloads.
    pub(crate) session: Option<SessionAuth>,
    /// Headers carrying a raw token.
    pub(crate) token_headers: Vec<HeaderName>,
    /// Headers stripped from every request and copied from the auth service.
    pub(crate) copy_headers: Vec<HeaderName>,
}

/// What the request looks like to authentication: what an auth service would be told about it,
/// plus the session cookie. `Debug` shows no header value, query or cookie value.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    /// Method, URI, Host, headers, client IP and request id: the same for every credential kind.
    pub(crate) request: AuthRequest<'a>,
    /// The session cookie, when the request sent one (already removed from `request.headers`).
    pub(crate) session: Option<SessionCookie<'a>>,
}

/// A session cookie as the request presented it.
#[derive(Clone, Copy)]
pub(crate) struct SessionCookie<'a> {
    /// The cookie's value.
    pub(crate) value: &'a str,
    /// The listener's scheme (`https`/`http`), for the same-origin rule.
    pub(crate) scheme: &'a str,
}

impl fmt::Debug for SessionCookie<'_> {
    /// The value is a credential: left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCookie")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// A successful authentication: who, plus headers the auth service asked to pass on.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// The caller.
    pub(crate) identity: Identity,
    /// `copy_headers` from the external auth response.
    pub(crate) copy: Option<Arc<[(HeaderName, HeaderValue)]>>,
    /// Allowed by the auth service without any credential: not a caller of its own.
    pub(crate) anonymous: bool,
}

impl Authenticated {
    /// The subject identity-keyed rate limits count against; `None` for an anonymous caller, who
    /// is counted by client IP instead (SPEC §8.3).
    pub(crate) fn rate_subject(&self) -> Option<&Arc<str>> {
        (!self.anonymous).then_some(&self.identity.subject)
    }
}

/// Why a local credential failed.
enum LocalFailure {
    /// The route accepts no local kind this credential could be.
    NotApplicable,
    /// It was tried and refused.
    Refused(GatewayError),
}

impl Authenticator {
    /// Builds from settings, reusing the JWT keys of `previous` when `[auth.jwt]` is unchanged.
    /// Blocking: reads the token store, token files and JWKS file.
    ///
    /// Every problem is recorded in `check` (the token store's in `tokens.toml` at its entry,
    /// the others at their `[auth]` key); `None` when any was.
    pub(crate) fn build(
        settings: &AuthSettings,
        previous: Option<&Authenticator>,
        check: &mut Collector,
    ) -> Option<Self> {
        let tokens = tokens(settings, previous.is_some(), check);
        let jwt = settings.jwt.as_ref().map(|jwt| {
            let previous = previous.and_then(|p| p.jwt.as_deref());
            check.keyed(JwtVerifier::build(jwt, previous).map(Arc::new))
        });
        let external = settings.external.as_ref().map(|external| {
            let previous = previous.and_then(|p| p.external.as_ref());
            check.keyed(ExternalAuth::new(external).map(|auth| auth.keep_stats(previous)))
        });
        let session = settings.session.as_ref().map(|session| {
            let previous = previous.and_then(|p| p.session.as_ref());
            check.keyed(SessionAuth::build(session, previous))
        });
        Some(Self {
            tokens: Arc::new(tokens?),
            jwt: optional(jwt)?,
            external: optional(external)?,
            failures: settings
                .failure_limit
                .as_ref()
                .map(|policy| Arc::new(FailureLimit::new(policy))),
            session: optional(session)?,
            token_headers: settings.token_headers.clone(),
            copy_headers: settings
                .external
                .as_ref()
                .map(|e| e.copy_headers.clone())
                .unwrap_or_default(),
        })
    }

    /// Every file authentication depends on (token store, token files, JWKS file, HMAC secret,
    /// session key).
    pub(crate) fn files(&self) -> Vec<std::path::PathBuf> {
        let mut files = self.tokens.files();
        if let Some(jwt) = &self.jwt {
            files.extend(jwt.files());
        }
        if let Some(session) = &self.session {
            files.extend(session.files());
        }
        files
    }

    /// Authenticates a request on a route accepting `kinds` (non-empty).
    ///
    /// # Errors
    /// 401 missing/invalid/expired, 429 too many failed attempts, the auth service's own
    /// 401/403/429, 503 when it is down, 500 for an unexpected status.
    pub(crate) async fn authenticate(
        &self,
        kinds: &[AuthKind],
        attempt: &Attempt<'_>,
    ) -> Result<Authenticated, GatewayError> {
        let credential = credentials::credential(attempt.request.headers, &self.token_headers);
        let external = self
            .external
            .as_ref()
            .filter(|_| kinds.contains(&AuthKind::External));
        let external_credential = external.is_some_and(|e| e.presented(attempt.request.headers));
        let session = attempt
            .session
            .filter(|_| credential.is_none() && kinds.contains(&AuthKind::Session));
        if (credential.is_some() || external_credential || session.is_some())
            && let Some(failures) = &self.failures
        {
            failures.check(attempt.request.client_ip)?;
        }
        if let (Some(cookie), Some(sessions)) = (session, &self.session) {
            return self.by_session(sessions, cookie, attempt);
        }
        let local = match credential {
            Some(credential) => self.local(kinds, credential).await,
            None => Err(LocalFailure::NotApplicable),
        };
        let refusal = match local {
            Ok(identity) => {
                return Ok(Authenticated {
                    identity,
                    copy: None,
                    anonymous: false,
                });
            }
            Err(LocalFailure::Refused(error)) => Some(error),
            Err(LocalFailure::NotApplicable) => None,
        };
        if let Some(external) = external {
            // Boxed: kept out of the future of requests that never ask (BENCHMARKS.md, "Future size").
            let decision = Box::pin(external.check(&attempt.request)).await;
            let refused = matches!(&decision, ExternalDecision::Deny(deny) if deny.is_refusal());
            return external_decision(decision).map_err(|error| {
                if refused && external_credential {
                    // Like an invalid token: a guess costs budget, cached answer or not.
                    self.count_failure(attempt.request.client_ip, error)
                } else {
                    error
                }
            });
        }
        match (refusal, credential) {
            (Some(error), _) => Err(self.count_failure(attempt.request.client_ip, error)),
            (None, Some(_)) => {
                Err(self.count_failure(attempt.request.client_ip, GatewayError::InvalidToken))
            }
            (None, None) => Err(GatewayError::MissingCredentials),
        }
    }

    async fn local(&self, kinds: &[AuthKind], credential: &str) -> Result<Identity, LocalFailure> {
        let now = OffsetDateTime::now_utc();
        if kinds.contains(&AuthKind::Jwt)
            && looks_like_jwt(credential)
            && let Some(jwt) = &self.jwt
        {
            return jwt
                .verify(credential, now)
                .await
                .map_err(|error| LocalFailure::Refused(error.into()));
        }
        if !kinds.contains(&AuthKind::Token) {
            return Err(LocalFailure::NotApplicable);
        }
        match self.tokens.lookup(credential, now) {
            Lookup::Valid(identity) => Ok(identity),
            Lookup::Expired(at) => Err(LocalFailure::Refused(GatewayError::TokenExpired(rfc3339(
                at,
            )))),
            Lookup::Disabled | Lookup::Unknown | Lookup::BadChecksum => {
                Err(LocalFailure::Refused(GatewayError::InvalidToken))
            }
        }
    }

    /// Authenticates by the session cookie alone (`GET {path_prefix}/session`), with the same
    /// `failure_limit` rules as a route.
    ///
    /// # Errors
    /// 401 missing/invalid/expired, 403 cross-site write, 429 too many failed attempts.
    pub(crate) fn authenticate_session(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<Authenticated, GatewayError> {
        let (Some(cookie), Some(sessions)) = (attempt.session, &self.session) else {
            return Err(GatewayError::MissingCredentials);
        };
        if let Some(failures) = &self.failures {
            failures.check(attempt.request.client_ip)?;
        }
        self.by_session(sessions, cookie, attempt)
    }

    /// The identity a session cookie stands for. Only a forged value counts as a failed attempt.
    fn by_session(
        &self,
        sessions: &SessionAuth,
        cookie: SessionCookie<'_>,
        attempt: &Attempt<'_>,
    ) -> Result<Authenticated, GatewayError> {
        let req = CookieRequest {
            method: attempt.request.method,
            headers: attempt.request.headers,
            target: Target {
                scheme: cookie.scheme,
                host: attempt.request.host,
            },
        };
        let now = OffsetDateTime::now_utc();
        match sessions.check(cookie.value, &req, &self.tokens, self.jwt.is_some(), now) {
            Ok(identity) => Ok(Authenticated {
                identity,
                copy: None,
                anonymous: false,
            }),
            Err(Refusal::Forged) => {
                Err(self.count_failure(attempt.request.client_ip, GatewayError::InvalidToken))
            }
            Err(Refusal::Ended) => Err(GatewayError::InvalidToken),
            Err(Refusal::Expired(at)) => Err(GatewayError::TokenExpired(rfc3339(at))),
            Err(Refusal::CrossSite) => Err(GatewayError::OriginNotAllowed),
        }
    }

    /// Verifies a login credential (a store token or a JWT) exactly as a route would: a blocked
    /// IP gets 429 first, and a refused credential counts toward `failure_limit`.
    ///
    /// # Errors
    /// 401 invalid/expired, 429 too many failed attempts.
    pub(crate) async fn verify_login(
        &self,
        credential: &str,
        client_ip: IpAddr,
    ) -> Result<Identity, GatewayError> {
        if let Some(failures) = &self.failures {
            failures.check(client_ip)?;
        }
        match self
            .local(&[AuthKind::Token, AuthKind::Jwt], credential)
            .await
        {
            Ok(identity) => Ok(identity),
            Err(LocalFailure::Refused(error)) => Err(self.count_failure(client_ip, error)),
            Err(LocalFailure::NotApplicable) => {
                Err(self.count_failure(client_ip, GatewayError::InvalidToken))
            }
        }
    }

    /// Counts a failed attempt; past the limit the answer becomes 429.
    fn count_failure(&self, ip: IpAddr, error: GatewayError) -> GatewayError {
        self.failures
            .as_ref()
            .and_then(|f| f.record_failure(ip))
            .unwrap_or(error)
    }
}

fn external_decision(decision: ExternalDecision) -> Result<Authenticated, GatewayError> {
    match decision {
        ExternalDecision::Allow {
            identity,
            copy,
            anonymous,
        } => Ok(Authenticated {
            identity,
            copy: Some(copy),
            anonymous,
        }),
        ExternalDecision::Deny(response) => Err(GatewayError::AuthDenied(response)),
        ExternalDecision::Unavailable => Err(GatewayError::AuthUnavailable),
        ExternalDecision::Unexpected(_) => Err(GatewayError::AuthUnexpectedStatus),
    }
}

/// The token store `[auth] tokens` names (empty when unset), or `None` with the problems
/// recorded.
fn tokens(settings: &AuthSettings, reload: bool, check: &mut Collector) -> Option<TokenStore> {
    match &settings.tokens {
        Some(path) if reload && !path.exists() => {
            // A store that vanished mid-update (an editor's delete + recreate) must not revoke
            // every token: refuse this reload and keep the last good store.
            check.error(
                "auth.tokens",
                format!(
                    "{}: token store missing; keeping the last good store",
                    path.display()
                ),
            );
            None
        }
        Some(path) => check.nested(token_store::load(path)),
        None => Some(TokenStore::default()),
    }
}

#[cfg(test)]
mod tests;
