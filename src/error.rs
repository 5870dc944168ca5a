//! [`GatewayError`]: every way a request can fail, mapped to a status, headers and a JSON body in
//! one exhaustive `match` (no `_` arm, so a new variant must choose its status).
//!
//! The `Display` text is the public message from SPEC §4. It never contains a token, cookie or
//! header value; causes that may be sensitive are kept out of it (they go to logs via `source`).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};

use crate::http::body::{self, Body};

/// Another service's response, returned to the client as it was sent (external auth's 401, 403
/// and 429). Neutral on purpose: the auth service builds it, this module only relays it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PassThrough {
    /// The status, e.g. 401, 403 or 429.
    pub(crate) status: StatusCode,
    /// The headers kept (for external auth: `Content-Type`, every `WWW-Authenticate`,
    /// `Retry-After`).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty if it was too long to relay).
    pub(crate) body: Bytes,
}

impl PassThrough {
    /// The response for the client.
    pub(crate) fn to_response(&self) -> Response<Body> {
        let mut response = Response::new(body::full(self.body.clone()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        response
    }

    /// 401 or 403: the credential was refused (a failed attempt); 429 asks for patience, neither.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    }
}

impl fmt::Debug for PassThrough {
    /// Header names only: a relayed header may carry a challenge or a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&HeaderName> = self.headers.iter().map(|(name, _)| name).collect();
        f.debug_struct("PassThrough")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A request-path failure. Each variant carries data, not preformatted text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// Malformed request: smuggling shapes, bad path escapes, bad `Host`.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Request headers larger than `max_header_bytes`.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Request body larger than `max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client's body broke its framing (bad chunk size, chunk data without its CRLF, fewer
    /// bytes than `Content-Length`) while it streamed upstream; the upstream request was aborted.
    #[error("malformed request body")]
    MalformedBody,
    /// No route matches the (normalised) path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// A route matches the path but not the method.
    #[error("method {method} not allowed")]
    MethodNotAllowed {
        /// The refused method.
        method: Method,
        /// The `Allow` header value.
        allow: HeaderValue,
    },
    /// No credential on a protected route.
    #[error("missing credentials")]
    MissingCredentials,
    /// A route that accepts only client certificates, on a connection that presented none.
    #[error("client certificate required")]
    ClientCertRequired,
    /// Unknown or malformed token, or a JWT that failed validation.
    #[error("invalid token")]
    InvalidToken,
    /// Expired token or JWT; carries the RFC 3339 expiry time.
    #[error("token expired at {0}")]
    TokenExpired(String),
    /// Authenticated, but no sufficient role.
    #[error("role {0} required")]
    RoleRequired(String),
    /// The global write gate is closed.
    #[error("write actions are disabled")]
    WritesDisabled,
    /// WebSocket handshake from an Origin not allowed on the route.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// Rate limited; carries the `Retry-After` seconds.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Whole seconds, at least 1.
        retry_after_secs: u64,
    },
    /// Too many failed credential attempts from one IP.
    #[error("too many failed attempts")]
    TooManyFailures {
        /// Whole seconds, at least 1.
        retry_after_secs: u64,
    },
    /// The external auth service answered 401, 403 or 429: its response goes to the client.
    #[error("access denied by auth service")]
    AuthDenied(Arc<PassThrough>),
    /// External auth timed out, refused, or answered 5xx.
    #[error("auth service unavailable")]
    AuthUnavailable,
    /// External auth answered a status outside 2xx/401/403/429/5xx.
    #[error("unexpected auth service status")]
    AuthUnexpectedStatus,
    /// A write while the audit log cannot be written (fail-closed; the write is not forwarded).
    #[error("audit log unavailable")]
    AuditUnavailable,
    /// Shared rate limiter down with `on_error = "deny"`.
    #[error("rate limiter unavailable")]
    RateLimiterUnavailable,
    /// Upstream refused or reset the connection, or its name did not resolve.
    #[error("upstream {0} unavailable")]
    UpstreamUnavailable(Arc<str>),
    /// Upstream did not send response headers within `response_timeout`.
    #[error("upstream {0} timed out")]
    UpstreamTimeout(Arc<str>),
}

/// Why authentication or authorization refused a request: the `reason` label of
/// `gatehouse_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum AuthFailure {
    /// No credential (401).
    Missing,
    /// A credential that did not verify (401).
    Invalid,
    /// An expired credential (401).
    Expired,
    /// The client IP is blocked by `failure_limit` (429).
    TooManyFailures,
    /// A required role is missing (403).
    Forbidden,
    /// The write gate refused a write (403).
    WriteGate,
    /// The external auth service denied (its 401, 403 or 429).
    ExternalDenied,
    /// The external auth service failed or answered an unexpected status.
    ExternalUnavailable,
    /// A WebSocket handshake from a foreign `Origin` (403).
    Origin,
}

impl AuthFailure {
    /// Every reason, in the order the metric lists them; `reason as usize` indexes it.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 9] = [
        Self::Missing,
        Self::Invalid,
        Self::Expired,
        Self::TooManyFailures,
        Self::Forbidden,
        Self::WriteGate,
        Self::ExternalDenied,
        Self::ExternalUnavailable,
        Self::Origin,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::TooManyFailures => "too_many_failures",
            Self::Forbidden => "forbidden",
            Self::WriteGate => "write_gate",
            Self::ExternalDenied => "external_denied",
            Self::ExternalUnavailable => "external_unavailable",
            Self::Origin => "origin",
        }
    }
}

impl GatewayError {
    /// The auth failure this error counts as, or `None` for a refusal that is not about who the
    /// caller is. No `_` arm: a new variant must say whether it is an auth failure, so none goes
    /// uncounted.
    pub(crate) fn auth_failure(&self) -> Option<AuthFailure> {
        match self {
            Self::MissingCredentials | Self::ClientCertRequired => Some(AuthFailure::Missing),
            Self::InvalidToken => Some(AuthFailure::Invalid),
            Self::TokenExpired(_) => Some(AuthFailure::Expired),
            Self::TooManyFailures { .. } => Some(AuthFailure::TooManyFailures),
            Self::RoleRequired(_) => Some(AuthFailure::Forbidden),
            Self::WritesDisabled => Some(AuthFailure::WriteGate),
            Self::AuthDenied(_) => Some(AuthFailure::ExternalDenied),
            Self::AuthUnavailable | Self::AuthUnexpectedStatus => {
                Some(AuthFailure::ExternalUnavailable)
            }
            Self::OriginNotAllowed => Some(AuthFailure::Origin),
            Self::BadRequest(_)
            | Self::HeadersTooLarge
            | Self::BodyTooLarge
            | Self::MalformedBody
            | Self::NoRoute(_)
            | Self::MethodNotAllowed { .. }
            | Self::RateLimited { .. }
            | Self::RateLimiterUnavailable
            | Self::UpstreamUnavailable(_)
            | Self::UpstreamTimeout(_)
            | Self::AuditUnavailable => None,
        }
    }

    /// The HTTP status for this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MalformedBody => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingCredentials
            | Self::ClientCertRequired
            | Self::InvalidToken
            | Self::TokenExpired(_) => StatusCode::UNAUTHORIZED,
            Self::RoleRequired(_) | Self::WritesDisabled | Self::OriginNotAllowed => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited { .. } | Self::TooManyFailures { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::AuthUnavailable | Self::RateLimiterUnavailable | Self::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::AuthDenied(deny) => deny.status,
            Self::AuthUnexpectedStatus => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Extra headers this error's response carries (`WWW-Authenticate`, `Retry-After`, `Allow`).
    fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        const BEARER: &str = "Bearer realm=\"gatehouse\"";
        const INVALID: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";
        match self {
            Self::MissingCredentials => {
                vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static(BEARER))]
            }
            Self::InvalidToken | Self::TokenExpired(_) => {
                vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static(INVALID))]
            }
            Self::MethodNotAllowed { allow, .. } => vec![(header::ALLOW, allow.clone())],
            Self::RateLimited { retry_after_secs } | Self::TooManyFailures { retry_after_secs } => {
                vec![(
                    header::RETRY_AFTER,
                    HeaderValue::from((*retry_after_secs).max(1)),
                )]
            }
            Self::RateLimiterUnavailable | Self::AuditUnavailable => {
                vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))]
            }
            // No challenge: HTTP has no scheme for "reconnect with a certificate".
            Self::ClientCertRequired
            | Self::BadRequest(_)
            | Self::HeadersTooLarge
            | Self::BodyTooLarge
            | Self::MalformedBody
            | Self::NoRoute(_)
            | Self::RoleRequired(_)
            | Self::WritesDisabled
            | Self::OriginNotAllowed
            | Self::AuthDenied(_)
            | Self::AuthUnavailable
            | Self::AuthUnexpectedStatus
            | Self::UpstreamUnavailable(_)
            | Self::UpstreamTimeout(_) => Vec::new(),
        }
    }

    /// Whether the client connection should be closed after this response (the request stream
    /// may be in an unknown state).
    pub(crate) fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_) | Self::BodyTooLarge | Self::HeadersTooLarge | Self::MalformedBody
        )
    }

    /// The JSON error response: `{"error": "<message>", "request_id": "<id>"}`. Pure: no logging.
    pub(crate) fn into_response(self, request_id: &str) -> Response<Body> {
        if let Self::AuthDenied(deny) = &self {
            return deny.to_response();
        }
        let mut response = json_error(self.status(), &self.to_string(), request_id);
        for (name, value) in self.headers() {
            response.headers_mut().insert(name, value);
        }
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON error body with the given status and message.
pub(crate) fn json_error(status: StatusCode, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message, "request_id": request_id }).to_string();
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric indexes its counters by `reason as usize`: `ALL` must be in declaration order.
    #[test]
    fn auth_failure_all_is_in_declaration_order() {
        for (index, reason) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason:?}");
        }
        let labels: std::collections::HashSet<_> =
            AuthFailure::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), AuthFailure::ALL.len());
    }

    #[test]
    fn only_refusals_about_the_caller_are_auth_failures() {
        assert_eq!(
            GatewayError::OriginNotAllowed.auth_failure(),
            Some(AuthFailure::Origin)
        );
        assert_eq!(
            GatewayError::AuthUnexpectedStatus.auth_failure(),
            Some(AuthFailure::ExternalUnavailable)
        );
        for error in [
            GatewayError::RateLimited {
                retry_after_secs: 1,
            },
            GatewayError::RateLimiterUnavailable,
            GatewayError::UpstreamTimeout(Arc::from("api")),
        ] {
            assert_eq!(error.auth_failure(), None, "{error:?}");
        }
    }

    #[test]
    fn statuses_follow_spec_table() {
        let name: Arc<str> = Arc::from("api-service");
        for (error, status) in [
            (GatewayError::MissingCredentials, 401),
            (GatewayError::InvalidToken, 401),
            (
                GatewayError::TokenExpired("2027-02-21T10:00:00Z".into()),
                401,
            ),
            (GatewayError::RoleRequired("operator".into()), 403),
            (GatewayError::WritesDisabled, 403),
            (GatewayError::OriginNotAllowed, 403),
            (GatewayError::NoRoute("/x".into()), 404),
            (
                GatewayError::RateLimited {
                    retry_after_secs: 1,
                },
                429,
            ),
            (GatewayError::BodyTooLarge, 413),
            (GatewayError::MalformedBody, 400),
            (GatewayError::HeadersTooLarge, 431),
            (GatewayError::AuthUnavailable, 503),
            (GatewayError::UpstreamUnavailable(name.clone()), 502),
            (GatewayError::UpstreamTimeout(name), 504),
        ] {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn messages_are_the_spec_templates() {
        assert_eq!(
            GatewayError::NoRoute("/x".into()).to_string(),
            "no route for /x"
        );
        assert_eq!(
            GatewayError::UpstreamTimeout(Arc::from("api-service")).to_string(),
            "upstream api-service timed out"
        );
        assert_eq!(
            GatewayError::TokenExpired("2027-02-21T10:00:00Z".into()).to_string(),
            "token expired at 2027-02-21T10:00:00Z"
        );
        assert_eq!(
            GatewayError::MalformedBody.to_string(),
            "malformed request body"
        );
    }

    #[test]
    fn malformed_body_closes_the_connection() {
        let response = GatewayError::MalformedBody.into_response("id");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn rate_limited_carries_retry_after_of_at_least_one_second() {
        let response = GatewayError::RateLimited {
            retry_after_secs: 0,
        }
        .into_response("id");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn missing_credentials_challenges_with_bearer() {
        let response = GatewayError::MissingCredentials.into_response("id");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"gatehouse\""
        );
        let invalid = GatewayError::InvalidToken.into_response("id");
        assert!(
            invalid.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }
}
