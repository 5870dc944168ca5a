//! The loaded store: [`TokenStore`], entries indexed by the SHA-256 of their token, answering
//! [`lookup`](TokenStore::lookup) in one hash-map probe without allocating beyond the
//! [`Identity`] it returns; and [`build`], which reads `file =` tokens and fills the index.
//!
//! Comparing hashes with `==` is not constant time, but what an attacker could learn is the hash
//! of their own guess, which says nothing about a stored token.

// foldhash: the keys are SHA-256 digests, which no client can steer into collisions, and SipHash
// showed in the per-request profile (BENCHMARKS.md, "Instruction counts").
use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::parse::{TokenSource, TokenSpec};
use crate::auth::token_format::{self, Shape};
use crate::auth::{AuthMethod, Identity, IdentityHeaders};
use crate::config::ConfigErrors;
use crate::config::collect::Collector;
use crate::secret::Secret;

/// Whether an entry is accepted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TokenState {
    /// Accepted.
    Active,
    /// Past its `expires`.
    Expired,
    /// `disabled = true` (reported even when also expired).
    Disabled,
}

impl TokenState {
    /// Disabled beats expired; a token expires at the instant `expires` (not one tick later).
    pub(crate) fn of(disabled: bool, expires: Option<OffsetDateTime>, now: OffsetDateTime) -> Self {
        match (disabled, expires) {
            (true, _) => Self::Disabled,
            (false, Some(expires)) if expires <= now => Self::Expired,
            (false, _) => Self::Active,
        }
    }

    /// `active`, `expired` or `disabled` (the `token list` column and the metric label).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Disabled => "disabled",
        }
    }
}

// Here rather than in `parse` so that parsing does not depend on the index.
impl TokenSpec {
    /// The entry's state at `now`.
    pub(crate) fn state(&self, now: OffsetDateTime) -> TokenState {
        TokenState::of(self.disabled, self.expires, now)
    }
}

/// A loaded entry: everything about a token except the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenEntry {
    /// Unique id; becomes [`Identity::subject`].
    pub(crate) id: Arc<str>,
    /// Roles; shared with every [`Identity`] this entry produces.
    pub(crate) roles: Arc<[String]>,
    /// When it was created, if recorded.
    pub(crate) created: Option<OffsetDateTime>,
    /// When it stops being accepted, if ever.
    pub(crate) expires: Option<OffsetDateTime>,
    /// Last characters of the token, for humans.
    pub(crate) hint: Option<String>,
    /// Refused while `true`.
    pub(crate) disabled: bool,
    /// The `file =` the token was read from, if any.
    pub(crate) from_file: Option<PathBuf>,
    /// The identity's upstream header values, built at load.
    pub(crate) headers: IdentityHeaders,
}

impl TokenEntry {
    /// The entry's state at `now`.
    pub(crate) fn state(&self, now: OffsetDateTime) -> TokenState {
        TokenState::of(self.disabled, self.expires, now)
    }

    fn identity(&self) -> Identity {
        Identity {
            subject: self.id.clone(),
            roles: self.roles.clone(),
            method: AuthMethod::Token,
            expires: self.expires,
            headers: self.headers.clone(),
        }
    }
}

/// What a presented token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Accepted: this is the caller.
    Valid(Identity),
    /// Known but expired at this time (SPEC §4 prints it).
    Expired(OffsetDateTime),
    /// Known but `disabled = true`.
    Disabled,
    /// Not in the store.
    Unknown,
    /// A `gth_` token with a wrong length or checksum: refused without a lookup.
    BadChecksum,
}

/// The loaded store: entries indexed by the SHA-256 of their token, and of their previous token
/// while a rotation's overlap lasts. Immutable; a reload builds a new one. `Debug` shows the path
/// and the entries, never a hash or a token.
#[derive(Default)]
pub struct TokenStore {
    path: PathBuf,
    by_hash: HashMap<[u8; 32], Indexed>,
    entries: Vec<Arc<TokenEntry>>,
    files: Vec<PathBuf>,
}

/// What [`TokenStore::by_hash`] found.
#[derive(Debug)]
pub(crate) struct HashMatch<'a> {
    /// The store entry.
    pub(crate) entry: &'a Arc<TokenEntry>,
    /// When this secret stops being accepted (the entry's expiry, or a rotation's overlap end).
    pub(crate) expires: Option<OffsetDateTime>,
    /// Active, disabled or expired at the time asked.
    pub(crate) state: TokenState,
}

/// One index slot: the entry, and for a rotated-out token the end of its overlap.
struct Indexed {
    entry: Arc<TokenEntry>,
    /// `Some` for a `previous_sha256`: refused from this instant on.
    until: Option<OffsetDateTime>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Who `token` is at `now`. The checksum of a `gth_` token is checked before anything is
    /// hashed; disabled beats expired. A rotated-out token is its entry until its overlap ends,
    /// then expired (and disabled or revoked with the entry). Allocates nothing: the
    /// [`Identity`] shares the entry's strings.
    pub fn lookup(&self, token: &str, now: OffsetDateTime) -> Lookup {
        if token_format::shape(token) == Shape::BadChecksum {
            return Lookup::BadChecksum;
        }
        let Some(found) = self.by_hash(&hash_token(token.as_bytes()), now) else {
            return Lookup::Unknown;
        };
        match found.state {
            TokenState::Disabled => Lookup::Disabled,
            TokenState::Expired => Lookup::Expired(found.expires.unwrap_or(now)),
            TokenState::Active => Lookup::Valid(found.entry.identity()),
        }
    }

    /// The entry whose token hashes to `hash` and that token's state at `now`: how a lookup
    /// and a session's recheck on every request decide, in O(1), without holding the token.
    /// The old secret of a rotation lives the shorter of its overlap and the entry's own life.
    pub(crate) fn by_hash(&self, hash: &[u8; 32], now: OffsetDateTime) -> Option<HashMatch<'_>> {
        let Indexed { entry, until } = self.by_hash.get(hash)?;
        let expires = match (entry.expires, *until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(HashMatch {
            entry,
            expires,
            state: TokenState::of(entry.disabled, expires, now),
        })
    }

    /// Entries in file order.
    pub(crate) fn entries(&self) -> &[Arc<TokenEntry>] {
        &self.entries
    }

    /// The store file and every `file =` token file, for the reload watcher.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    /// `(active, expired, disabled)` entry counts at `now`, for `gatehouse_tokens{state}`.
    pub(crate) fn counts(&self, now: OffsetDateTime) -> (usize, usize, usize) {
        self.entries
            .iter()
            .fold(
                (0, 0, 0),
                |(active, expired, disabled), entry| match entry.state(now) {
                    TokenState::Active => (active + 1, expired, disabled),
                    TokenState::Expired => (active, expired + 1, disabled),
                    TokenState::Disabled => (active, expired, disabled + 1),
                },
            )
    }
}

/// SHA-256 of a token: the value stored as `sha256` and the index key.
pub(crate) fn hash_token(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Reads `file =` tokens, hashes everything and builds the index.
pub(super) fn build(path: &Path, specs: Vec<TokenSpec>) -> Result<TokenStore, ConfigErrors> {
    let mut check = Collector::new(path);
    let mut files = vec![path.to_owned()];
    let mut by_hash = HashMap::with_capacity(specs.len());
    let mut first_by_hash: HashMap<[u8; 32], usize> = HashMap::with_capacity(specs.len());
    let mut entries = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let hash = match &spec.source {
            TokenSource::Sha256(hash) => *hash,
            TokenSource::File(file) => {
                files.push(file.clone());
                match read_token_file(file) {
                    Ok(hash) => hash,
                    Err(reason) => {
                        check.error(format!("tokens[{i}].file"), reason);
                        continue;
                    }
                }
            }
        };
        let previous = spec.previous.clone();
        if let Some(first) = first_by_hash.insert(hash, i) {
            check.error(
                format!("tokens[{i}]"),
                format!("same token as tokens[{first}]: each token needs its own entry"),
            );
            continue;
        }
        let entry = Arc::new(entry(spec));
        if let Some(previous) = previous {
            if let Some(first) = first_by_hash.insert(previous.sha256, i) {
                check.error(
                    format!("tokens[{i}].previous_sha256"),
                    format!("same token as tokens[{first}]: each token needs its own entry"),
                );
                continue;
            }
            let until = Some(previous.until);
            by_hash.insert(
                previous.sha256,
                Indexed {
                    entry: entry.clone(),
                    until,
                },
            );
        }
        by_hash.insert(
            hash,
            Indexed {
                entry: entry.clone(),
                until: None,
            },
        );
        entries.push(entry);
    }
    check.finish(TokenStore {
        path: path.to_owned(),
        by_hash,
        entries,
        files,
    })
}

fn entry(spec: TokenSpec) -> TokenEntry {
    let from_file = match spec.source {
        TokenSource::File(file) => Some(file),
        TokenSource::Sha256(_) => None,
    };
    TokenEntry {
        headers: IdentityHeaders::of(&spec.id, &spec.roles),
        id: spec.id.into(),
        roles: spec.roles.into(),
        created: spec.created,
        expires: spec.expires,
        hint: spec.hint,
        disabled: spec.disabled,
        from_file,
    }
}

/// Reads a raw token file and returns its hash; the token itself never leaves this function.
/// Surrounding whitespace (the trailing newline of `echo token > file`) is trimmed.
fn read_token_file(file: &Path) -> Result<[u8; 32], String> {
    let raw = Secret::new(
        std::fs::read(file)
            .map_err(|e| format!("cannot read token file {}: {e}", file.display()))?,
    );
    let token = raw.expose().trim_ascii();
    if token.is_empty() {
        return Err(format!("token file {} is empty", file.display()));
    }
    if std::str::from_utf8(token).is_ok_and(|t| token_format::shape(t) == Shape::BadChecksum) {
        return Err(format!(
            "token file {} holds a gth_ token with a bad checksum; it could never be accepted",
            file.display()
        ));
    }
    Ok(hash_token(token))
}
