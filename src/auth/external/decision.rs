//! [`ExternalDecision`]: what the auth service decided about one request, in its own file so the
//! decision cache and the single flight can hold it without reaching up into `external.rs`.

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::auth::Identity;
use crate::error::PassThrough;

/// What the auth service decided about one request.
#[derive(Clone)]
pub(crate) enum ExternalDecision {
    /// 2xx: allowed. `copy` holds the configured `copy_headers` present on the auth response (all
    /// values, in configuration order), to be set on the upstream request.
    Allow {
        /// The caller: `subject` from the first configured copy header present, else
        /// `external:` + a hash of the forwarded credential, else `anonymous`.
        identity: Identity,
        /// Auth response headers to set on the upstream request.
        copy: Arc<[(HeaderName, HeaderValue)]>,
        /// No credential was sent and the service named nobody: rate limits key on the IP.
        anonymous: bool,
    },
    /// 401, 403 or 429: returned to the client as the auth service sent it.
    Deny(Arc<PassThrough>),
    /// Timeout, refused or broken connection, or 5xx: the pipeline answers 503
    /// `auth service unavailable`.
    Unavailable,
    /// Any other status: the pipeline answers 500 `unexpected auth service status`.
    Unexpected(u16),
}

impl fmt::Debug for ExternalDecision {
    /// Copied header values are left out: an auth service may hand a credential to upstreams.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow {
                identity,
                copy,
                anonymous,
            } => f
                .debug_struct("Allow")
                .field("identity", identity)
                .field("copy", &HeaderNames(copy))
                .field("anonymous", anonymous)
                .finish(),
            Self::Deny(deny) => f.debug_tuple("Deny").field(deny).finish(),
            Self::Unavailable => f.write_str("Unavailable"),
            Self::Unexpected(status) => f.debug_tuple("Unexpected").field(status).finish(),
        }
    }
}

/// Debug-prints header names only.
struct HeaderNames<'a>(&'a [(HeaderName, HeaderValue)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}
