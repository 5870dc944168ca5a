//! What the token commands tell the operator beyond doing the job: `token list --json`, the
//! checks on `token hash` input, and the warning `token create` gives for a role nothing uses.

use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::store_file::{parse_store, read_store};
use crate::auth::token_format::{self, Shape};
use crate::auth::token_store::{self, TokenSource, TokenSpec};
use crate::config::Config;

/// Roles that rank (`viewer` < `operator` < `admin`): always meaningful, used by a route or not.
const BUILT_IN_ROLES: [&str; 3] = ["viewer", "operator", "admin"];

/// `token list --json`: a JSON array, one object per entry in file order, with the `token list`
/// columns plus `disabled`, `source` (`"store"` for a `sha256` entry, `"file"` for a `file =` one,
/// with its `file` path) and `previous_expires` (the end of a rotation overlap, or `null`). No
/// hash is shown: it is not the token, but nobody needs it and it links log lines to entries.
///
/// # Errors
/// A missing, unreadable or invalid store.
pub(crate) fn list_json(store: &Path, now: OffsetDateTime) -> anyhow::Result<String> {
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let specs = parse_store(&text, store)?;
    let entries: Vec<Value> = specs.iter().map(|spec| entry_json(spec, now)).collect();
    Ok(serde_json::to_string_pretty(&Value::Array(entries))? + "\n")
}

fn entry_json(spec: &TokenSpec, now: OffsetDateTime) -> Value {
    let time = |time: Option<OffsetDateTime>| time.and_then(|time| time.format(&Rfc3339).ok());
    let (source, file) = match &spec.source {
        TokenSource::Sha256(_) => ("store", None),
        TokenSource::File(file) => ("file", Some(file.display().to_string())),
    };
    json!({
        "id": spec.id,
        "roles": spec.roles,
        "created": time(spec.created),
        "expires": time(spec.expires),
        "state": spec.state(now).as_str(),
        "disabled": spec.disabled,
        "hint": spec.hint,
        "source": source,
        "file": file,
        "previous_expires": time(spec.previous.as_ref().map(|previous| previous.until)),
    })
}

/// Hex SHA-256 of `token` with surrounding whitespace trimmed: the store's `sha256` value for a
/// hand-edited entry (`token hash` reads the token on stdin).
pub fn hash(token: &str) -> String {
    hex::encode(token_store::hash_token(token.trim().as_bytes()))
}

/// A checked `token hash` result: the hash, and a warning when the input cannot be a token the
/// gateway would accept.
#[derive(Debug)]
pub(crate) struct Hashed {
    /// Hex SHA-256 of the trimmed input.
    pub(crate) hash: String,
    /// Set when the input is a `gth_` token whose checksum (or length) is wrong.
    pub(crate) warning: Option<&'static str>,
}

/// [`hash`] for `token hash`, refusing empty input (its hash would be a valid-looking entry no
/// client can ever present).
///
/// # Errors
/// The input is empty or only whitespace.
pub(crate) fn hash_checked(input: &str) -> anyhow::Result<Hashed> {
    let token = input.trim();
    if token.is_empty() {
        bail!(
            "no token on stdin: pipe the token in, e.g. `printf %s \"$TOKEN\" | gatehouse token hash`"
        );
    }
    let warning = (token_format::shape(token) == Shape::BadChecksum).then_some(
        "this gth_ token fails its checksum (mistyped or truncated?): the gateway refuses it before any lookup",
    );
    Ok(Hashed {
        hash: hash(token),
        warning,
    })
}

/// One warning per role in `roles` that is not built in and that no route of `config` names in
/// `roles` or `write_roles`: such a token can never pass a role check that needs it. A close
/// match among the known roles is suggested.
pub(crate) fn unused_role_warnings(roles: &[String], config: &Config) -> Vec<String> {
    let mut known: Vec<&str> = BUILT_IN_ROLES.to_vec();
    for route in &config.routes {
        known.extend(route.roles.iter().map(String::as_str));
        known.extend(route.write_roles.iter().map(String::as_str));
    }
    roles
        .iter()
        .filter(|role| !known.contains(&role.as_str()))
        .map(|role| {
            let hint = crate::config::did_you_mean(role, known.iter().copied())
                .map(|close| format!(" (did you mean {close:?}?)"))
                .unwrap_or_default();
            format!(
                "role {role:?} is not built in and no route in {} requires it{hint}",
                config.path.display()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
