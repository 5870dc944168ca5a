//! [`SessionTable`]: the server-side record of every live session, keyed by the random
//! [`SessionId`] the cookie carries. In memory and per process: a restart ends every session (the
//! browser logs in again), and replicas do not share it. It is a small concrete type on purpose —
//! `insert`, `get`, `remove` — so a shared store (ROADMAP "scale out") can take its place behind
//! the same three calls.
//!
//! Bounded by [`MAX_SESSIONS`]: when full, expired records are purged, then the record closest to
//! its end is dropped (that browser logs in again). A `std` `RwLock`, never held across `.await`:
//! a request only reads; logins and logouts write.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::cookie::SessionId;

/// Most sessions held at once (about 200 bytes each).
pub(crate) const MAX_SESSIONS: usize = 100_000;

/// Expired records are also purged every this many logins, so the table does not sit at its
/// bound with dead records.
const PURGE_EVERY: u64 = 1024;

/// What proved the caller's identity at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A token from the store. Its SHA-256 (the store's own index key, never the token) pins the
    /// session to that exact token: a token re-created under the same id does not revive it.
    Token {
        /// SHA-256 of the token, as in the store.
        hash: [u8; 32],
    },
    /// A JWT; the session ends at its `exp` at the latest.
    Jwt,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The token id (or JWT subject).
    pub(crate) subject: Arc<str>,
    /// Roles at login; for token sessions the store's current roles are used instead.
    pub(crate) roles: Arc<[String]>,
    /// How the caller logged in.
    pub(crate) via: Via,
    /// When the session ends, unix seconds.
    pub(crate) expires: i64,
}

/// Live sessions by id.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    sessions: RwLock<HashMap<SessionId, Session>>,
    logins: std::sync::atomic::AtomicU64,
}

impl SessionTable {
    /// Records a new session, making room when the table is full.
    pub(crate) fn insert(&self, id: SessionId, session: Session, now: i64) {
        let logins = self
            .logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS || logins % PURGE_EVERY == PURGE_EVERY - 1 {
            sessions.retain(|_, s| s.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| *id)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id, session);
    }

    /// The session `id`, if it is live.
    pub(crate) fn get(&self, id: &SessionId) -> Option<Session> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Ends session `id`; `true` if it existed.
    pub(crate) fn remove(&self, id: &SessionId) -> bool {
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }

    /// Sessions held (live or not yet purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: i64) -> Session {
        Session {
            subject: Arc::from("ci-bot"),
            roles: Arc::from(vec!["viewer".to_owned()]),
            via: Via::Jwt,
            expires,
        }
    }

    #[test]
    fn insert_get_remove() {
        let table = SessionTable::default();
        let id = SessionId([1; 16]);
        table.insert(id, session(100), 0);
        assert_eq!(table.get(&id), Some(session(100)));
        assert!(table.remove(&id));
        assert_eq!(table.get(&id), None);
        assert!(!table.remove(&id));
    }

    #[test]
    fn a_full_table_drops_expired_then_the_closest_to_its_end() {
        let table = SessionTable::default();
        for i in 0..MAX_SESSIONS {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            // Session 0 has already ended; session 1 ends soonest of the live ones.
            let expires = if i == 0 { 5 } else { 1_000 + i as i64 };
            table.insert(SessionId(id), session(expires), 0);
        }
        assert_eq!(table.len(), MAX_SESSIONS);
        table.insert(SessionId([0xff; 16]), session(5_000_000), 10);
        assert_eq!(table.len(), MAX_SESSIONS, "the expired one made room");
        table.insert(SessionId([0xfe; 16]), session(5_000_000), 10);
        assert_eq!(table.len(), MAX_SESSIONS, "bounded");
        let mut first_live = [0u8; 16];
        first_live[..8].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(
            table.get(&SessionId(first_live)),
            None,
            "closest to its end dropped"
        );
        assert!(table.get(&SessionId([0xfe; 16])).is_some());
    }
}
