//! Browser sessions (`[auth.session]`, SPEC §2): a token or JWT is exchanged once for an HttpOnly
//! cookie (`auth::login` serves the endpoints), and [`SessionAuth::check`] turns that cookie back
//! into an [`Identity`] on every request to a route whose `auth` lists `"session"`.
//!
//! Design, and why:
//! - **Server-side table.** The cookie carries only a random session id and its expiry, signed
//!   ([`cookie`]); the [`SessionTable`] maps the id to the token id, how the caller logged in and
//!   when the session ends. Logout removes the record, so that cookie value stops working at
//!   once — a self-contained signed cookie could not be taken back. The table lives in memory
//!   and is carried from runtime to runtime across reloads; a restart ends every session.
//! - **The token is rechecked on every request**, in O(1), against the *current* runtime's token
//!   store (by the token's hash, which also names its id): revoking, disabling or expiring the
//!   token ends its sessions as soon as the reload lands, and the session has the token's
//!   current roles. JWT sessions end at the JWT's `exp` (a JWT cannot be revoked), or when
//!   `[auth.jwt]` goes away.
//! - **Keys** ([`keys`]): HMAC-SHA256 keyed by `secret_file`, which is watched like every file the
//!   runtime reads. After a rotation the previous key is accepted for one `ttl`.
//! - **CSRF** ([`csrf`]): a write carried by the cookie needs a same-origin `Origin` or
//!   `Sec-Fetch-Site: same-origin`.
//!
//! What a refusal costs is decided by the caller (`Authenticator`): only a value that is not
//! ours ([`Refusal::Forged`]) counts toward `failure_limit`. A stale cookie — expired, logged
//! out, its token revoked — is what every browser sends sooner or later; counting it would
//! block a whole office behind one NAT.

pub mod cookie;
pub(crate) mod csrf;
mod keys;
pub(crate) mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method};
use time::OffsetDateTime;

use self::cookie::{Claims, SessionId};
use self::csrf::Target;
use self::keys::SessionKeys;
use self::table::{Session, SessionTable, Via};
use super::roles::is_write;
use super::token_store::{TokenState, TokenStore};
use super::{AuthMethod, Identity};
use crate::config::SessionSettings;
use crate::config::collect::KeyError;

/// The per-runtime session state; the table and the previous key outlive the runtime.
#[derive(Debug)]
pub(crate) struct SessionAuth {
    settings: SessionSettings,
    keys: SessionKeys,
    table: Arc<SessionTable>,
}

/// Why a session cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a value this gateway signed (malformed, edited, another secret): a guess.
    Forged,
    /// Signed by us, but the session is over (logged out, token revoked or disabled, `[auth.jwt]`
    /// removed, gateway restarted, or signed by a key retired more than one `ttl` ago).
    Ended,
    /// The session or its token expired at this time.
    Expired(OffsetDateTime),
    /// A write carried by the cookie from another origin (see [`csrf`]).
    CrossSite,
}

/// The request facts a cookie check needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieRequest<'a> {
    /// The client's method (writes get the CSRF rule).
    pub(crate) method: &'a Method,
    /// The client's headers (`Origin`, `Sec-Fetch-Site`).
    pub(crate) headers: &'a HeaderMap,
    /// Listener scheme and `Host`.
    pub(crate) target: Target<'a>,
}

/// A new session, for the login response.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The `Set-Cookie` value.
    pub(crate) set_cookie: HeaderValue,
    /// The identity it carries (its `expires` is when the session ends).
    pub(crate) identity: Identity,
}

impl SessionAuth {
    /// Reads the key, carrying over `previous`'s table and (after a rotation) its key.
    ///
    /// # Errors
    /// The secret file is unreadable or too short.
    pub(crate) fn build(
        settings: &SessionSettings,
        previous: Option<&SessionAuth>,
    ) -> Result<Self, KeyError> {
        let keys = SessionKeys::load(&settings.secret_file, previous.map(|p| &p.keys))?;
        Ok(Self {
            settings: settings.clone(),
            keys,
            table: previous.map(|p| p.table.clone()).unwrap_or_default(),
        })
    }

    /// The settings this was built from.
    pub(crate) fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The secret file, for the reload watcher.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        vec![self.settings.secret_file.clone()]
    }

    /// The session cookie's value in `headers`, if sent.
    pub(crate) fn find_cookie(&self, headers: &HeaderMap) -> Option<String> {
        cookie::find(headers, &self.settings.cookie)
    }

    /// Removes the session cookie from `headers` (on every route: nothing behind the gateway
    /// needs it) and returns its value.
    pub(crate) fn take_cookie(&self, headers: &mut HeaderMap) -> Option<String> {
        cookie::take(headers, &self.settings.cookie)
    }

    /// The identity a session cookie stands for right now.
    ///
    /// # Errors
    /// A [`Refusal`]; a session found over is removed from the table.
    pub(crate) fn check(
        &self,
        value: &str,
        req: &CookieRequest<'_>,
        tokens: &TokenStore,
        jwt_enabled: bool,
        now: OffsetDateTime,
    ) -> Result<Identity, Refusal> {
        let claims = self.verify(value, now)?;
        let unix_now = now.unix_timestamp();
        if claims.expires <= unix_now {
            return Err(Refusal::Expired(at(claims.expires)));
        }
        let session = self.table.get(&claims.id).ok_or(Refusal::Ended)?;
        let roles = match self.still_valid(&session, tokens, jwt_enabled, now) {
            Ok(roles) => roles,
            Err(refusal) => {
                self.table.remove(&claims.id);
                return Err(refusal);
            }
        };
        if is_write(req.method) && !csrf::write_allowed(req.headers, req.target) {
            return Err(Refusal::CrossSite);
        }
        Ok(Identity::new(
            session.subject,
            roles,
            AuthMethod::Session,
            Some(at(session.expires)),
        ))
    }

    /// The claims of a value signed by an accepted key.
    fn verify(&self, value: &str, now: OffsetDateTime) -> Result<Claims, Refusal> {
        let parsed = cookie::parse(value).ok_or(Refusal::Forged)?;
        if self
            .keys
            .accepted(Instant::now(), self.settings.ttl)
            .any(|key| parsed.verify(key))
        {
            return Ok(parsed.claims);
        }
        // Past its claimed end, a value is refused unread: a cookie from a retired key is stale,
        // and a forger gains nothing from claiming an end in the past.
        if parsed.claims.expires <= now.unix_timestamp() {
            Err(Refusal::Ended)
        } else {
            Err(Refusal::Forged)
        }
    }

    /// The session's roles if it may go on: its own end, then its token's state now.
    fn still_valid(
        &self,
        session: &Session,
        tokens: &TokenStore,
        jwt_enabled: bool,
        now: OffsetDateTime,
    ) -> Result<Arc<[String]>, Refusal> {
        if session.expires <= now.unix_timestamp() {
            return Err(Refusal::Expired(at(session.expires)));
        }
        match session.via {
            Via::Token { hash } => {
                let found = tokens
                    .by_hash(&hash, now)
                    .filter(|found| found.entry.id == session.subject)
                    .ok_or(Refusal::Ended)?;
                match found.state {
                    TokenState::Active => Ok(found.entry.roles.clone()),
                    TokenState::Disabled => Err(Refusal::Ended),
                    TokenState::Expired => Err(Refusal::Expired(found.expires.unwrap_or(now))),
                }
            }
            Via::Jwt if jwt_enabled => Ok(session.roles.clone()),
            Via::Jwt => Err(Refusal::Ended),
        }
    }

    /// Opens a session for a caller just verified by `via`: `ttl` long, never beyond the
    /// credential's own expiry. `None` when that leaves less than a second.
    pub(crate) fn open(
        &self,
        identity: &Identity,
        via: Via,
        now: OffsetDateTime,
    ) -> Option<Opened> {
        let unix_now = now.unix_timestamp();
        let ttl = i64::try_from(self.settings.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut expires = unix_now.saturating_add(ttl);
        if let Some(credential_end) = identity.expires {
            expires = expires.min(credential_end.unix_timestamp());
        }
        let max_age = u64::try_from(expires - unix_now).ok().filter(|s| *s > 0)?;
        let id = SessionId::random();
        let value = cookie::encode(&Claims { id, expires }, self.keys.current());
        let set_cookie = cookie::set_cookie(&self.settings.cookie, &value, max_age)?;
        self.table.insert(
            id,
            Session {
                subject: identity.subject.clone(),
                roles: identity.roles.clone(),
                via,
                expires,
            },
            unix_now,
        );
        Some(Opened {
            set_cookie,
            identity: Identity {
                method: AuthMethod::Session,
                expires: Some(at(expires)),
                ..identity.clone()
            },
        })
    }

    /// Ends the session a cookie value names, if it is ours; `true` if one ended.
    pub(crate) fn close(&self, value: &str) -> bool {
        self.verify(value, OffsetDateTime::now_utc())
            .is_ok_and(|claims| self.table.remove(&claims.id))
    }

    /// `Set-Cookie` that clears the cookie.
    pub(crate) fn clear_cookie(&self) -> Option<HeaderValue> {
        cookie::clear_cookie(&self.settings.cookie)
    }
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
