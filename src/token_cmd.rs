//! The bodies of `gatehouse token create | list | revoke | rotate | hash` (SPEC §1): everything that
//! *writes* the token store. Parsing and checking the store is [`token_store`]'s job, the token
//! shape is [`token_format`]'s, argument parsing and printing are `cli`'s.
//!
//! Every write holds an exclusive `File::lock()` on a sidecar `<store>.lock` for the whole
//! read–check–write cycle, and replaces the store atomically ([`write_atomically`], mode `0600`),
//! so concurrent `create`s never lose an entry and a watching gateway never sees half a file. The
//! lock file is left in place: deleting it would let two writers lock two different files.
//!
//! The edits go through `toml_edit` (the `edit` module), so comments and layout survive them:
//! `create` appends an entry, `revoke` removes one with the comment lines right above it, `rotate`
//! rewrites a few keys of one. Before anything is written, the new text is parsed again and must
//! give exactly the entries intended; otherwise the store is left alone and the command fails.

mod edit;
mod report;
mod rotate;
mod store_file;

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use toml_edit::Value;

use self::edit::StoreDocument;
use self::store_file::{StoreLock, parse_store, read_store, write_checked};
use crate::auth::token_format;
use crate::auth::token_store::{self, TokenSource, TokenSpec};
use crate::config::units::parse_duration;
use crate::secret::Secret;
use crate::timestamp::rfc3339;

pub use report::hash;
pub(crate) use report::{hash_checked, list_json, unused_role_warnings};
pub(crate) use rotate::rotate;

/// Generates a token for `id` with `roles`, appends its hashed entry to `store` (created if
/// missing) and returns the token, which exists nowhere else: print it once.
///
/// `expires` is a duration from `now` (`"90d"`, `"12h"`) or an RFC 3339 time; it must be in the
/// future. Times are stored in UTC, `created` to the second.
///
/// # Errors
/// An invalid id, role or expiry; a store that does not parse; an id already in it; a lock or
/// write failure. Messages name the store and key, never the token.
pub fn create(
    store: &Path,
    id: &str,
    roles: &[String],
    expires: Option<&str>,
    now: OffsetDateTime,
) -> anyhow::Result<Secret<String>> {
    token_store::validate_id(id).map_err(|reason| anyhow!("--id: {reason}"))?;
    if roles.is_empty() {
        bail!("--role: at least one role is required");
    }
    for role in roles {
        token_store::validate_role(role).map_err(|reason| anyhow!("--role: {reason}"))?;
    }
    let now = now
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .context("current time out of range")?;
    let expires = expires.map(|text| parse_expiry(text, now)).transpose()?;

    let _lock = StoreLock::acquire(store)?;
    let text = read_store(store)?.unwrap_or_default();
    let specs = parse_store(&text, store)?;
    if let Some(index) = specs.iter().position(|spec| spec.id == id) {
        bail!(
            "{}: tokens[{index}].id: id {id:?} already exists (revoke it first)",
            store.display()
        );
    }
    let token = token_format::generate();
    let entry = TokenSpec {
        id: id.to_owned(),
        source: TokenSource::Sha256(token_store::hash_token(token.expose().as_bytes())),
        roles: roles.to_vec(),
        created: Some(now),
        expires,
        hint: Some(token_format::hint(token.expose())),
        disabled: false,
        previous: None,
    };
    let mut document = StoreDocument::parse(&text, store)?;
    document
        .append(new_entry_fields(&entry)?)
        .with_context(|| format!("{}: cannot add a token", store.display()))?;
    let mut expected = specs;
    expected.push(entry);
    write_checked(store, &document, &expected)?;
    Ok(token)
}

/// The `token list` table: id, roles, created, expires, state at `now`, hint; one header line and
/// one line per entry, in file order, columns padded with spaces.
///
/// # Errors
/// A missing, unreadable or invalid store.
pub(crate) fn list(store: &Path, now: OffsetDateTime) -> anyhow::Result<String> {
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let specs = parse_store(&text, store)?;
    let mut rows = vec![["ID", "ROLES", "CREATED", "EXPIRES", "STATE", "HINT"].map(String::from)];
    rows.extend(specs.iter().map(|spec| row(spec, now)));
    Ok(render(&rows))
}

/// Removes the entry `id` from `store` (with the comment lines right above it) by atomic
/// replace. A running gateway stops accepting the token at its next reload (its watcher sees the
/// rename).
///
/// # Errors
/// A missing or invalid store, an unknown id, a lock or write failure.
pub fn revoke(store: &Path, id: &str) -> anyhow::Result<()> {
    let _lock = StoreLock::acquire(store)?;
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let mut expected = parse_store(&text, store)?;
    let index = expected
        .iter()
        .position(|spec| spec.id == id)
        .ok_or_else(|| anyhow!("{}: no token with id {id:?}", store.display()))?;
    expected.remove(index);
    let mut document = StoreDocument::parse(&text, store)?;
    document
        .remove(index)
        .with_context(|| format!("{}: cannot remove tokens[{index}]", store.display()))?;
    write_checked(store, &document, &expected)
}

/// `"90d"` from `now`, or an RFC 3339 time (to the second); either must lie after `now`.
fn parse_expiry(text: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    let expires = match parse_duration(text) {
        Ok(duration) => time::Duration::try_from(duration)
            .ok()
            .and_then(|duration| now.checked_add(duration))
            .ok_or_else(|| anyhow!("--expires: {text:?} is too far in the future"))?,
        Err(_) => OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map_err(|_| {
                anyhow!(
                    "--expires: invalid {text:?}: expected a duration like \"90d\" or \"12h\", or an RFC 3339 time like \"2027-02-21T10:00:00Z\""
                )
            })?
            .to_offset(UtcOffset::UTC),
    };
    // The store keeps whole seconds (`timestamp::rfc3339`); decide on the value it will hold.
    let expires = expires.replace_nanosecond(0).unwrap_or(expires);
    if expires <= now {
        bail!("--expires: {text:?} is not in the future");
    }
    Ok(expires)
}

/// The keys `create` writes for `entry`, in file order (a `sha256` entry, never disabled or
/// rotated).
fn new_entry_fields(entry: &TokenSpec) -> anyhow::Result<Vec<(&'static str, Value)>> {
    let TokenSource::Sha256(hash) = &entry.source else {
        bail!("a new entry holds its hash");
    };
    let roles: toml_edit::Array = entry.roles.iter().map(String::as_str).collect();
    let mut fields = vec![
        ("id", Value::from(entry.id.as_str())),
        ("sha256", Value::from(hex::encode(hash))),
        ("roles", Value::Array(roles)),
    ];
    let times = [("created", entry.created), ("expires", entry.expires)];
    for (key, time) in times {
        if let Some(time) = time {
            fields.push((key, Value::from(rfc3339(time))));
        }
    }
    if let Some(hint) = &entry.hint {
        fields.push(("hint", Value::from(hint.as_str())));
    }
    Ok(fields)
}

fn row(spec: &TokenSpec, now: OffsetDateTime) -> [String; 6] {
    let time = |time: Option<OffsetDateTime>| time.map_or_else(|| "-".to_owned(), rfc3339);
    let hint = match (&spec.hint, &spec.source) {
        (Some(hint), _) => hint.clone(),
        (None, TokenSource::File(_)) => "(file)".to_owned(),
        (None, TokenSource::Sha256(_)) => "-".to_owned(),
    };
    [
        spec.id.clone(),
        if spec.roles.is_empty() {
            "-".to_owned()
        } else {
            spec.roles.join(",")
        },
        time(spec.created),
        time(spec.expires),
        spec.state(now).as_str().to_owned(),
        hint,
    ]
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
fn render(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
