//! `tokens.toml` text → checked [`TokenSpec`]s. Pure: reads no file, hashes no token.
//!
//! Two stages, like `config`: a serde mirror whose fields are all `toml::Value` (so a wrong type
//! is one collected error, not the end of parsing) read through `serde_ignored` (so an unknown
//! key is reported with its path, `tokens[2].rolez`), then checks that collect every problem.
//! Errors name the file and the key, never a malformed `sha256` value (operators sometimes paste
//! the raw token there).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::token_format::{self, Shape};
use crate::config::collect::Collector;
use crate::config::{ConfigError, ConfigErrors};

/// Longest accepted token id or role name, in characters.
const MAX_NAME_CHARS: usize = 128;

/// `tokens.toml` as written.
#[derive(Deserialize)]
struct StoreFile {
    #[serde(default)]
    tokens: Vec<TokenFile>,
}

/// One `[[tokens]]` table as written. Every field is a raw value so that a wrong type is reported
/// per key and parsing goes on.
#[derive(Deserialize)]
struct TokenFile {
    id: Option<toml::Value>,
    sha256: Option<toml::Value>,
    file: Option<toml::Value>,
    roles: Option<toml::Value>,
    created: Option<toml::Value>,
    expires: Option<toml::Value>,
    hint: Option<toml::Value>,
    disabled: Option<toml::Value>,
    previous_sha256: Option<toml::Value>,
    previous_expires: Option<toml::Value>,
}

/// One validated `[[tokens]]` entry, as written (a `file =` token not read yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Unique id; appears in logs, audit and `x-auth-subject`.
    pub id: String,
    /// Where the token's hash comes from.
    pub source: TokenSource,
    /// Roles granted (may be empty: then only routes without `roles` accept it).
    pub roles: Vec<String>,
    /// When it was created, if recorded.
    pub created: Option<OffsetDateTime>,
    /// When it stops being accepted, if ever.
    pub expires: Option<OffsetDateTime>,
    /// Last characters of the token, for humans.
    pub hint: Option<String>,
    /// Refused while `true`, without removing the entry.
    pub disabled: bool,
    /// The secret this one replaced (`token rotate`), still accepted for a while.
    pub previous: Option<Previous>,
}

/// `previous_sha256` + `previous_expires`: the token an entry had before `token rotate`, accepted
/// as the same identity until `until` (both keys or neither).
#[derive(Clone, PartialEq, Eq)]
pub struct Previous {
    /// SHA-256 of the old token.
    pub sha256: [u8; 32],
    /// When the old token stops being accepted (the end of the overlap).
    pub until: OffsetDateTime,
}

impl fmt::Debug for Previous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like `TokenStore`'s `Debug`: no hash in logs (it only identifies, but it is not needed).
        f.debug_struct("Previous")
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// Where an entry's token hash comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `sha256 = "…"`: the SHA-256 of the token.
    Sha256([u8; 32]),
    /// `file = "…"`: a file holding the raw token, resolved against the store's folder.
    File(PathBuf),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(hash) => write!(f, "Sha256({})", hex::encode(hash)),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Checks a token id: 1 to 128 visible ASCII characters, no spaces (it is sent as the
/// `x-auth-subject` header and printed in logs).
///
/// # Errors
/// What is wrong, naming the rule.
pub(crate) fn validate_id(id: &str) -> Result<(), String> {
    validate_name(id, "id", "")
}

/// Checks a role name: like [`validate_id`], and no commas (`x-auth-roles` is a comma list).
///
/// # Errors
/// What is wrong, naming the rule.
pub(crate) fn validate_role(role: &str) -> Result<(), String> {
    validate_name(role, "role", ",")
}

fn validate_name(name: &str, what: &str, forbidden: &str) -> Result<(), String> {
    let visible = |c: char| c.is_ascii_graphic() && !forbidden.contains(c);
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(visible) {
        let extra = if forbidden.is_empty() {
            String::new()
        } else {
            format!(" other than {forbidden:?}")
        };
        return Err(format!(
            "invalid {what} {name:?}: expected 1 to {MAX_NAME_CHARS} visible ASCII characters{extra}, no spaces"
        ));
    }
    Ok(())
}

/// Parses and checks store `text` as if read from `file` (relative `file =` paths resolve against
/// its folder). Pure: reads nothing.
///
/// # Errors
/// Every problem found, each naming `file` and the key (`tokens[2].sha256`).
pub fn parse(text: &str, file: &Path) -> Result<Vec<TokenSpec>, ConfigErrors> {
    let (raw, unknown) = deserialize(text, file)?;
    let mut check = Collector::new(file);
    for key in unknown {
        check.error(key, "unknown key");
    }
    let base = folder_of(file);
    let mut first_by_id: HashMap<&str, usize> = HashMap::new();
    let mut specs = Vec::with_capacity(raw.tokens.len());
    for (i, entry) in raw.tokens.iter().enumerate() {
        let spec = token(&mut check, &base, i, entry);
        if let Some(first) = first_by_id.get(spec.id.as_str()) {
            check.error(
                format!("tokens[{i}].id"),
                format!("duplicate id {:?}: also tokens[{first}]", spec.id),
            );
        }
        specs.push(spec);
        if let Some(id) = entry.id.as_ref().and_then(toml::Value::as_str) {
            first_by_id.entry(id).or_insert(i);
        }
    }
    check.finish(specs)
}

/// The value as a string, or an error naming `key`.
fn string<'v>(check: &mut Collector, key: &str, value: &'v toml::Value) -> Option<&'v str> {
    let text = value.as_str();
    if text.is_none() {
        check.error(
            key,
            format!("expected a string, found {}", value.type_str()),
        );
    }
    text
}

/// One problem with `file` at `key`.
pub(super) fn error(file: &Path, key: &str, reason: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        key: key.to_owned(),
        reason,
    }
}

/// TOML → mirror, plus every unknown key as `tokens[2].rolez`.
fn deserialize(text: &str, file: &Path) -> Result<(StoreFile, Vec<String>), ConfigErrors> {
    let syntax = |e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let key = line.map(|line| format!("line {line}")).unwrap_or_default();
        ConfigErrors(vec![error(file, &key, e.message().trim().to_owned())])
    };
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
    let raw = serde_ignored::deserialize(deserializer, |path| unknown.push(key_path(&path)))
        .map_err(syntax)?;
    Ok((raw, unknown))
}

/// `tokens[2].rolez` for a `serde_ignored` path (its own `Display` writes `tokens.2.rolez`).
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => match key_path(parent) {
            prefix if prefix.is_empty() => key.clone(),
            prefix => format!("{prefix}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Checks one entry; problems go to `check` (the returned spec is then discarded).
fn token(check: &mut Collector, base: &Path, i: usize, entry: &TokenFile) -> TokenSpec {
    let prefix = format!("tokens[{i}]");
    TokenSpec {
        id: id(check, &prefix, entry.id.as_ref()),
        source: source(check, base, &prefix, entry),
        roles: roles(check, &prefix, entry.roles.as_ref()),
        created: time_field(check, &format!("{prefix}.created"), entry.created.as_ref()),
        expires: time_field(check, &format!("{prefix}.expires"), entry.expires.as_ref()),
        hint: hint(check, &format!("{prefix}.hint"), entry.hint.as_ref()),
        disabled: disabled(
            check,
            &format!("{prefix}.disabled"),
            entry.disabled.as_ref(),
        ),
        previous: previous(check, &prefix, entry),
    }
}

/// `previous_sha256` and `previous_expires`, written by `token rotate`: both or neither.
fn previous(check: &mut Collector, prefix: &str, entry: &TokenFile) -> Option<Previous> {
    let (hash, until) = match (&entry.previous_sha256, &entry.previous_expires) {
        (None, None) => return None,
        (Some(hash), Some(until)) => (hash, until),
        (Some(_), None) | (None, Some(_)) => {
            check.error(
                prefix,
                "previous_sha256 and previous_expires go together: set both or neither",
            );
            return None;
        }
    };
    let key = format!("{prefix}.previous_sha256");
    let sha256 = string(check, &key, hash).and_then(|text| sha256_value(check, &key, text));
    let until = time_field(check, &format!("{prefix}.previous_expires"), Some(until));
    Some(Previous {
        sha256: sha256?,
        until: until?,
    })
}

fn id(check: &mut Collector, prefix: &str, value: Option<&toml::Value>) -> String {
    let key = format!("{prefix}.id");
    let Some(value) = value else {
        check.error(key, "is required");
        return String::new();
    };
    let Some(id) = string(check, &key, value) else {
        return String::new();
    };
    if let Err(reason) = validate_id(id) {
        check.error(key, reason);
    }
    id.to_owned()
}

fn source(check: &mut Collector, base: &Path, prefix: &str, entry: &TokenFile) -> TokenSource {
    let fallback = TokenSource::Sha256([0; 32]);
    match (&entry.sha256, &entry.file) {
        (Some(sha256), None) => {
            let key = format!("{prefix}.sha256");
            string(check, &key, sha256)
                .and_then(|text| sha256_value(check, &key, text))
                .map_or(fallback, TokenSource::Sha256)
        }
        (None, Some(file)) => {
            let key = format!("{prefix}.file");
            match string(check, &key, file) {
                Some("") => {
                    check.error(key, "is empty");
                    fallback
                }
                Some(file) => TokenSource::File(base.join(file)),
                None => fallback,
            }
        }
        (Some(_), Some(_)) => {
            check.error(prefix, "has both sha256 and file: set exactly one");
            fallback
        }
        (None, None) => {
            check.error(prefix, "needs sha256 or file");
            fallback
        }
    }
}

/// Decodes a hex SHA-256. The value is never echoed: it might be a pasted raw token.
fn sha256_value(check: &mut Collector, key: &str, text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut hash).is_ok() {
        return Some(hash);
    }
    let looks_raw = if token_format::shape(text) == Shape::Other {
        ""
    } else {
        " (this looks like a raw token: store the output of `gatehouse token hash` instead)"
    };
    check.error(
        key,
        format!("malformed sha256: expected 64 hex characters{looks_raw}"),
    );
    None
}

fn roles(check: &mut Collector, prefix: &str, value: Option<&toml::Value>) -> Vec<String> {
    let key = format!("{prefix}.roles");
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        check.error(
            key,
            format!("expected a list of strings, found {}", value.type_str()),
        );
        return Vec::new();
    };
    let mut roles = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let key = format!("{key}[{j}]");
        let Some(role) = string(check, &key, item) else {
            continue;
        };
        match validate_role(role) {
            Ok(()) => roles.push(role.to_owned()),
            Err(reason) => check.error(key, reason),
        }
    }
    roles
}

/// An RFC 3339 time, written as a string or as a bare TOML date-time.
fn time_field(
    check: &mut Collector,
    key: &str,
    value: Option<&toml::Value>,
) -> Option<OffsetDateTime> {
    let text = match value? {
        toml::Value::String(text) => text.clone(),
        toml::Value::Datetime(datetime) => datetime.to_string(),
        other => {
            check.error(
                key,
                format!("expected an RFC 3339 time, found {}", other.type_str()),
            );
            return None;
        }
    };
    match OffsetDateTime::parse(&text, &Rfc3339) {
        Ok(time) => Some(time),
        Err(_) => {
            check.error(
                key,
                format!(
                    "invalid time {text:?}: expected RFC 3339 with an offset, like \"2027-02-21T10:00:00Z\""
                ),
            );
            None
        }
    }
}

fn hint(check: &mut Collector, key: &str, value: Option<&toml::Value>) -> Option<String> {
    let hint = string(check, key, value?)?;
    if hint.chars().any(char::is_control) {
        check.error(key, "contains control characters");
        return None;
    }
    Some(hint.to_owned())
}

fn disabled(check: &mut Collector, key: &str, value: Option<&toml::Value>) -> bool {
    match value {
        None => false,
        Some(toml::Value::Boolean(disabled)) => *disabled,
        Some(other) => {
            check.error(
                key,
                format!("expected true or false, found {}", other.type_str()),
            );
            false
        }
    }
}
