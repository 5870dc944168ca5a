//! Who is calling and what they may do: credential extraction, authentication over a route's
//! credential kinds, and authorization (roles, write gate). Every credential kind produces the
//! same [`Identity`], so the rest of the pipeline never cares how a caller proved who they are.

pub mod authenticate;
pub mod credentials;
pub mod external;
pub mod failures;
mod jwks;
pub mod jwt;
pub mod login;
pub mod roles;
pub mod session;
pub mod token_format;
pub mod token_store;

use std::sync::Arc;

pub use authenticate::{Attempt, Authenticated, Authenticator, SessionCookie};

use time::OffsetDateTime;

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
    /// The `x-auth-method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Jwt => "jwt",
            Self::Session => "session",
            Self::External => "external",
            Self::Mtls => "mtls",
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
}
