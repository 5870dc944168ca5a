//! `gatehouse token rotate ID [--overlap DURATION]`: a new secret for the same entry (same id,
//! roles, expiry), with the old one still accepted until the overlap ends. This is how a client
//! such as Keptn's CLI is moved to a new token without an outage: rotate, hand out the new token,
//! and the old one stops working by itself.
//!
//! The entry keeps its old hash as `previous_sha256` with `previous_expires` (SPEC §3 keys plus
//! these two); the gateway indexes both hashes, so lookup stays one hash-map probe, and a reload
//! picks the edit up like any other store change. Only one previous secret is kept: rotating
//! again during an overlap ends the older overlap at once. `--overlap 0s` writes no previous
//! hash (the old token is refused after the next reload). Revoking the entry or setting
//! `disabled = true` refuses both secrets, since both are the one entry.
//!
//! Like `create` and `revoke`, the edit keeps comments and layout (only the entry's `sha256`,
//! `hint` and `previous_*` values change), runs under the store lock and is checked by re-parsing
//! before anything is written.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use time::{OffsetDateTime, UtcOffset};
use toml_edit::Value;

use super::edit::StoreDocument;
use super::store_file::{StoreLock, parse_store, read_store, write_checked};
use crate::auth::token_format;
use crate::auth::token_store::{Previous, TokenSource, TokenSpec, TokenState, hash_token};
use crate::secret::Secret;
use crate::timestamp::rfc3339;

/// What `rotate` did.
#[derive(Debug)]
pub(crate) struct Rotated {
    /// The new token: print it once, it exists nowhere else.
    pub(crate) token: Secret<String>,
    /// Until when the old token is still accepted; `None` when the overlap was zero.
    pub(crate) old_until: Option<OffsetDateTime>,
}

/// Gives the entry `id` a new token; the old one stays valid until `now + overlap`.
///
/// # Errors
/// A missing or invalid store, an unknown id, a `file =` entry (its token lives in a Secret: rotate
/// that), a disabled or expired entry, a lock or write failure. Never names a token or hash.
pub(crate) fn rotate(
    store: &Path,
    id: &str,
    overlap: Duration,
    now: OffsetDateTime,
) -> anyhow::Result<Rotated> {
    let now = now.to_offset(UtcOffset::UTC);
    let old_until = if overlap.is_zero() {
        None
    } else {
        let until = time::Duration::try_from(overlap)
            .ok()
            .and_then(|overlap| now.checked_add(overlap))
            .and_then(ceil_to_second)
            .ok_or_else(|| anyhow!("--overlap: too long"))?;
        Some(until)
    };

    let _lock = StoreLock::acquire(store)?;
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let specs = parse_store(&text, store)?;
    let index = specs
        .iter()
        .position(|spec| spec.id == id)
        .ok_or_else(|| anyhow!("{}: no token with id {id:?}", store.display()))?;
    let old = &specs[index];
    let where_ = format!("{}: tokens[{index}]", store.display());
    let old_hash = match &old.source {
        TokenSource::Sha256(hash) => *hash,
        TokenSource::File(file) => bail!(
            "{where_}: the token is read from {}; rotate that Secret instead",
            file.display()
        ),
    };
    match old.state(now) {
        TokenState::Active => {}
        TokenState::Disabled => bail!("{where_}: token {id:?} is disabled; nothing to rotate"),
        TokenState::Expired => {
            bail!("{where_}: token {id:?} has expired; create a new one instead")
        }
    }

    let token = token_format::generate();
    let previous = old_until.map(|until| Previous {
        sha256: old_hash,
        until,
    });
    let rotated = TokenSpec {
        source: TokenSource::Sha256(hash_token(token.expose().as_bytes())),
        hint: Some(token_format::hint(token.expose())),
        previous: previous.clone(),
        ..old.clone()
    };
    let mut document = StoreDocument::parse(&text, store)?;
    for (key, value) in rotated_fields(&rotated)? {
        document
            .set(index, key, value)
            .with_context(|| format!("{where_}: cannot rewrite the entry"))?;
    }
    let mut expected = specs;
    expected[index] = rotated;
    write_checked(store, &document, &expected)?;
    Ok(Rotated { token, old_until })
}

/// The keys `rotate` rewrites in the entry, with their new values (`None`: remove the key).
fn rotated_fields(entry: &TokenSpec) -> anyhow::Result<[(&'static str, Option<Value>); 4]> {
    let TokenSource::Sha256(hash) = &entry.source else {
        bail!("a rotated entry holds its hash");
    };
    let (previous_sha256, previous_expires) = match &entry.previous {
        Some(previous) => (
            Some(Value::from(hex::encode(previous.sha256))),
            Some(Value::from(rfc3339(previous.until))),
        ),
        None => (None, None),
    };
    Ok([
        ("sha256", Some(Value::from(hex::encode(hash)))),
        ("hint", entry.hint.as_deref().map(Value::from)),
        ("previous_sha256", previous_sha256),
        ("previous_expires", previous_expires),
    ])
}

/// Rounded up to a whole second (the store keeps seconds), so the overlap is never shorter than
/// asked.
fn ceil_to_second(time: OffsetDateTime) -> Option<OffsetDateTime> {
    if time.nanosecond() == 0 {
        return Some(time);
    }
    time.replace_nanosecond(0)
        .ok()?
        .checked_add(time::Duration::SECOND)
}

#[cfg(test)]
mod tests;
