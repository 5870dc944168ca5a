//! Who is calling and what they may do: credential extraction, authentication over a route's
//! credential kinds, and authorization (roles, write gate). Every credential kind produces the
//! same [`Identity`], so the rest of the pipeline never cares how a caller proved who they are
//! (a client certificate too: [`mtls`]).

pub(crate) mod authenticate;
pub mod credentials;
pub(crate) mod external;
pub(crate) mod failures;
mod jwks;
pub mod jwt;
pub(crate) mod login;
pub(crate) mod mtls;
pub(crate) mod roles;
pub mod session;
pub mod token_format;
pub mod token_store;

use std::sync::Arc;

use http::HeaderValue;

pub(crate) use authenticate::{Attempt, Authenticated, Authenticator, SessionCookie};

use time::OffsetDateTime;

use crate::config::AuthKind;

/// How a caller authenticated; sent upstream as `x-auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// API token from the token store.
    Token,
    /// JWT verified by `[auth.jwt]`.
    Jwt,
    /// Session cookie.
    Session,
    /// Allowed by `[auth.external]`.
    External,
    /// Verified client certificate.
    Mtls,
}

impl AuthMethod {
    /// The `x-auth-method` value: the kind's name as a route's `auth = [...]` writes it.
    pub fn as_str(self) -> &'static str {
        AuthKind::from(self).as_str()
    }
}

/// The kind of credential a method proved. One table of names ([`AuthKind::as_str`]) serves
/// both the config and `x-auth-method`, so the two can never drift apart.
impl From<AuthMethod> for AuthKind {
    fn from(method: AuthMethod) -> Self {
        match method {
            AuthMethod::Token => Self::Token,
            AuthMethod::Jwt => Self::Jwt,
            AuthMethod::Session => Self::Session,
            AuthMethod::External => Self::External,
            AuthMethod::Mtls => Self::Mtls,
        }
    }
}

/// An authenticated caller. Cheap to clone: the strings are shared with the store or cache that
/// produced them, so a token lookup allocates nothing beyond this struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Token id, JWT subject, or the external auth's subject; appears in logs, audit and
    /// `x-auth-subject`. Never a credential.
    pub subject: Arc<str>,
    /// Roles, as configured or claimed.
    pub roles: Arc<[String]>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// When the credential stops being valid, if known.
    pub expires: Option<OffsetDateTime>,
    /// `x-auth-subject` and `x-auth-roles` as sent upstream, built with the identity.
    pub headers: IdentityHeaders,
}

impl Identity {
    /// An identity, its header values built from `subject` and `roles`.
    pub fn new(
        subject: Arc<str>,
        roles: Arc<[String]>,
        method: AuthMethod,
        expires: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            headers: IdentityHeaders::of(&subject, &roles),
            subject,
            roles,
            method,
            expires,
        }
    }
}

/// The values of `x-auth-subject` and `x-auth-roles` for one identity. Built once where the
/// identity is made — a token store entry at load, a cached external decision — so a request
/// clones two shared values instead of joining and validating strings
/// (BENCHMARKS.md, "Per-request header work").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityHeaders {
    /// `None` when the subject is not a valid header value: the header is then not sent.
    pub(crate) subject: Option<HeaderValue>,
    /// The roles joined with `,`; `None` when there are none.
    pub(crate) roles: Option<HeaderValue>,
}

impl IdentityHeaders {
    /// The header values for `subject` and `roles`.
    pub fn of(subject: &str, roles: &[String]) -> Self {
        Self {
            subject: HeaderValue::from_str(subject).ok(),
            roles: if roles.is_empty() {
                None
            } else {
                HeaderValue::from_str(&roles.join(",")).ok()
            },
        }
    }
}
