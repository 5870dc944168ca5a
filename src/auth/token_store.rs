//! The token store (`tokens.toml`, SPEC §3): a pure [`parse`]r, a thin [`load`]er that reads the
//! store and every `file =` token, and [`TokenStore`], a SHA-256 index answering [`lookup`]
//! without allocating beyond the [`Identity`] it returns.
//!
//! The store never holds a usable token. `sha256` entries are hashes already; `file =` tokens
//! (raw tokens in mounted Kubernetes Secrets) are read into a [`Secret`], hashed, and dropped.
//! Errors name the file, the entry (`tokens[2].file`) and the problem — never a token, and never
//! a malformed `sha256` value either (operators sometimes paste the raw token there).
//!
//! Parsing is two stages, like `config`: a serde mirror whose fields are all `toml::Value` (so a
//! wrong type is one collected error, not the end of parsing) read through `serde_ignored` (so an
//! unknown key is reported with its path, `tokens[2].rolez`), then checks that collect every
//! problem. Writing the store is `crate::token_cmd`'s job; watching it is the reloader's.
//!
//! Lookup hashes the presented token and finds the hash in a `HashMap`. Comparing hashes with
//! `==` is not constant time, but what an attacker could learn is the hash of their own guess,
//! which says nothing about a stored token.
//!
//! [`lookup`]: TokenStore::lookup

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::token_format::{self, Shape};
use super::{AuthMethod, Identity};
use crate::config::ConfigError;
use crate::secret::Secret;

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
}

impl TokenSpec {
    /// The entry's state at `now`.
    pub fn state(&self, now: OffsetDateTime) -> TokenState {
        TokenState::of(self.disabled, self.expires, now)
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

/// Whether an entry is accepted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenState {
    /// Accepted.
    Active,
    /// Past its `expires`.
    Expired,
    /// `disabled = true` (reported even when also expired).
    Disabled,
}

impl TokenState {
    /// Disabled beats expired; a token expires at the instant `expires` (not one tick later).
    pub fn of(disabled: bool, expires: Option<OffsetDateTime>, now: OffsetDateTime) -> Self {
        match (disabled, expires) {
            (true, _) => Self::Disabled,
            (false, Some(expires)) if expires <= now => Self::Expired,
            (false, _) => Self::Active,
        }
    }

    /// `active`, `expired` or `disabled` (the `token list` column and the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Disabled => "disabled",
        }
    }
}

/// A loaded entry: everything about a token except the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Unique id; becomes [`Identity::subject`].
    pub id: Arc<str>,
    /// Roles; shared with every [`Identity`] this entry produces.
    pub roles: Arc<[String]>,
    /// When it was created, if recorded.
    pub created: Option<OffsetDateTime>,
    /// When it stops being accepted, if ever.
    pub expires: Option<OffsetDateTime>,
    /// Last characters of the token, for humans.
    pub hint: Option<String>,
    /// Refused while `true`.
    pub disabled: bool,
    /// The `file =` the token was read from, if any.
    pub from_file: Option<PathBuf>,
}

impl TokenEntry {
    /// The entry's state at `now`.
    pub fn state(&self, now: OffsetDateTime) -> TokenState {
        TokenState::of(self.disabled, self.expires, now)
    }

    fn identity(&self) -> Identity {
        Identity {
            subject: self.id.clone(),
            roles: self.roles.clone(),
            method: AuthMethod::Token,
            expires: self.expires,
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

/// The loaded store: entries indexed by the SHA-256 of their token. Immutable; a reload builds a
/// new one. `Debug` shows the path and the entries, never a hash or a token.
#[derive(Default)]
pub struct TokenStore {
    path: PathBuf,
    by_hash: HashMap<[u8; 32], Arc<TokenEntry>>,
    entries: Vec<Arc<TokenEntry>>,
    files: Vec<PathBuf>,
    content_hash: [u8; 32],
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
    /// hashed; disabled beats expired. Allocates nothing: the [`Identity`] shares the entry's
    /// strings.
    pub fn lookup(&self, token: &str, now: OffsetDateTime) -> Lookup {
        if token_format::shape(token) == Shape::BadChecksum {
            return Lookup::BadChecksum;
        }
        let Some(entry) = self.by_hash.get(&hash_token(token.as_bytes())) else {
            return Lookup::Unknown;
        };
        match entry.state(now) {
            TokenState::Disabled => Lookup::Disabled,
            TokenState::Expired => Lookup::Expired(entry.expires.unwrap_or(now)),
            TokenState::Active => Lookup::Valid(entry.identity()),
        }
    }

    /// The entry whose token hashes to `hash`: how a session rechecks its token on every
    /// request, in O(1), without ever holding the token.
    pub fn entry_by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<TokenEntry>> {
        self.by_hash.get(hash)
    }

    /// The store file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries in file order.
    pub fn entries(&self) -> &[Arc<TokenEntry>] {
        &self.entries
    }

    /// The store file and every `file =` token file, for the reload watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    /// SHA-256 over the store's bytes and each `file =` token's hash: equal hashes mean equal
    /// stores, so a reload can skip an unchanged one (including a rotated Secret file).
    pub fn content_hash(&self) -> [u8; 32] {
        self.content_hash
    }

    /// `(active, expired, disabled)` entry counts at `now`, for `gatehouse_tokens{state}`.
    pub fn counts(&self, now: OffsetDateTime) -> (usize, usize, usize) {
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
pub fn hash_token(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Checks a token id: 1 to 128 visible ASCII characters, no spaces (it is sent as the
/// `x-auth-subject` header and printed in logs).
///
/// # Errors
/// What is wrong, naming the rule.
pub fn validate_id(id: &str) -> Result<(), String> {
    validate_name(id, "id", "")
}

/// Checks a role name: like [`validate_id`], and no commas (`x-auth-roles` is a comma list).
///
/// # Errors
/// What is wrong, naming the rule.
pub fn validate_role(role: &str) -> Result<(), String> {
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

/// Reads the store at `path` and every `file =` token it names.
///
/// A missing store file is an empty store (logged as a warning), so a gateway can start before
/// the first `token create`; an unreadable or invalid one is an error.
///
/// # Errors
/// Every problem found: unreadable store, syntax, unknown keys, bad values, duplicate ids, token
/// files that are missing, unreadable or empty, and two entries with the same token.
pub fn load(path: &Path) -> Result<TokenStore, Vec<ConfigError>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                store = %path.display(),
                "token store not found; starting with no tokens"
            );
            return build(path, b"", Vec::new());
        }
        Err(e) => return Err(vec![error(path, "", format!("cannot read: {e}"))]),
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| vec![error(path, "", "not valid UTF-8".to_owned())])?;
    let specs = parse(text, path)?;
    build(path, &bytes, specs)
}

/// Parses and checks store `text` as if read from `file` (relative `file =` paths resolve against
/// its folder). Pure: reads nothing.
///
/// # Errors
/// Every problem found, each naming `file` and the key (`tokens[2].sha256`).
pub fn parse(text: &str, file: &Path) -> Result<Vec<TokenSpec>, Vec<ConfigError>> {
    let (raw, unknown) = deserialize(text, file)?;
    let mut check = Checker {
        file: file.to_owned(),
        errors: Vec::new(),
    };
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
    if check.errors.is_empty() {
        Ok(specs)
    } else {
        Err(check.errors)
    }
}

/// Collects problems for one file.
struct Checker {
    file: PathBuf,
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// The value as a string, or an error naming `key`.
    fn string<'v>(&mut self, key: &str, value: &'v toml::Value) -> Option<&'v str> {
        let text = value.as_str();
        if text.is_none() {
            self.error(
                key,
                format!("expected a string, found {}", value.type_str()),
            );
        }
        text
    }
}

fn error(file: &Path, key: &str, reason: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        key: key.to_owned(),
        reason,
    }
}

/// TOML → mirror, plus every unknown key as `tokens[2].rolez`.
fn deserialize(text: &str, file: &Path) -> Result<(StoreFile, Vec<String>), Vec<ConfigError>> {
    let syntax = |e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let key = line.map(|line| format!("line {line}")).unwrap_or_default();
        vec![error(file, &key, e.message().trim().to_owned())]
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
fn token(check: &mut Checker, base: &Path, i: usize, entry: &TokenFile) -> TokenSpec {
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
    }
}

fn id(check: &mut Checker, prefix: &str, value: Option<&toml::Value>) -> String {
    let key = format!("{prefix}.id");
    let Some(value) = value else {
        check.error(key, "is required");
        return String::new();
    };
    let Some(id) = check.string(&key, value) else {
        return String::new();
    };
    if let Err(reason) = validate_id(id) {
        check.error(key, reason);
    }
    id.to_owned()
}

fn source(check: &mut Checker, base: &Path, prefix: &str, entry: &TokenFile) -> TokenSource {
    let fallback = TokenSource::Sha256([0; 32]);
    match (&entry.sha256, &entry.file) {
        (Some(sha256), None) => {
            let key = format!("{prefix}.sha256");
            check
                .string(&key, sha256)
                .and_then(|text| sha256_value(check, &key, text))
                .map_or(fallback, TokenSource::Sha256)
        }
        (None, Some(file)) => {
            let key = format!("{prefix}.file");
            match check.string(&key, file) {
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
fn sha256_value(check: &mut Checker, key: &str, text: &str) -> Option<[u8; 32]> {
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

fn roles(check: &mut Checker, prefix: &str, value: Option<&toml::Value>) -> Vec<String> {
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
        let Some(role) = check.string(&key, item) else {
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
    check: &mut Checker,
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

fn hint(check: &mut Checker, key: &str, value: Option<&toml::Value>) -> Option<String> {
    let hint = check.string(key, value?)?;
    if hint.chars().any(char::is_control) {
        check.error(key, "contains control characters");
        return None;
    }
    Some(hint.to_owned())
}

fn disabled(check: &mut Checker, key: &str, value: Option<&toml::Value>) -> bool {
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

/// Reads `file =` tokens, hashes everything and builds the index.
fn build(path: &Path, bytes: &[u8], specs: Vec<TokenSpec>) -> Result<TokenStore, Vec<ConfigError>> {
    let mut check = Checker {
        file: path.to_owned(),
        errors: Vec::new(),
    };
    let mut content = Sha256::new();
    content.update(Sha256::digest(bytes));
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
        content.update(hash);
        if let Some(first) = first_by_hash.insert(hash, i) {
            check.error(
                format!("tokens[{i}]"),
                format!("same token as tokens[{first}]: each token needs its own entry"),
            );
            continue;
        }
        let entry = Arc::new(entry(spec));
        by_hash.insert(hash, entry.clone());
        entries.push(entry);
    }
    if !check.errors.is_empty() {
        return Err(check.errors);
    }
    Ok(TokenStore {
        path: path.to_owned(),
        by_hash,
        entries,
        files,
        content_hash: content.finalize().into(),
    })
}

fn entry(spec: TokenSpec) -> TokenEntry {
    let from_file = match spec.source {
        TokenSource::File(file) => Some(file),
        TokenSource::Sha256(_) => None,
    };
    TokenEntry {
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2027-01-01 00:00 UTC);

    fn sha(token: &str) -> String {
        hex::encode(hash_token(token.as_bytes()))
    }

    fn parse_ok(text: &str) -> Vec<TokenSpec> {
        parse(text, Path::new("/etc/gatehouse/tokens.toml")).unwrap()
    }

    /// `(key, reason)` of every error.
    fn parse_err(text: &str) -> Vec<(String, String)> {
        let errors = parse(text, Path::new("/etc/gatehouse/tokens.toml")).unwrap_err();
        for e in &errors {
            assert_eq!(e.file, Path::new("/etc/gatehouse/tokens.toml"));
        }
        errors.into_iter().map(|e| (e.key, e.reason)).collect()
    }

    fn has(errors: &[(String, String)], key: &str, reason_part: &str) -> bool {
        errors
            .iter()
            .any(|(k, r)| k == key && r.contains(reason_part))
    }

    /// A store from `text` without touching the disk (only `sha256` entries).
    fn store(text: &str) -> TokenStore {
        let path = Path::new("/etc/gatehouse/tokens.toml");
        build(path, text.as_bytes(), parse(text, path).unwrap()).unwrap()
    }

    #[test]
    fn parses_the_spec_example() {
        let text = format!(
            r#"
[[tokens]]
id = "ci-bot"                      # unique
sha256 = "{}"
roles = ["operator"]
created = "2026-11-23T10:00:00Z"
expires = "2027-02-21T10:00:00Z"   # optional
hint = "x7Qa"                      # optional
disabled = false                   # optional

[[tokens]]
id = "keptn"
file = "/var/run/secrets/keptn-api-token/keptn-api-token"
roles = ["admin"]
"#,
            sha("t1")
        );
        let specs = parse_ok(&text);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id, "ci-bot");
        assert_eq!(specs[0].source, TokenSource::Sha256(hash_token(b"t1")));
        assert_eq!(specs[0].roles, ["operator"]);
        assert_eq!(specs[0].created, Some(datetime!(2026-11-23 10:00 UTC)));
        assert_eq!(specs[0].expires, Some(datetime!(2027-02-21 10:00 UTC)));
        assert_eq!(specs[0].hint.as_deref(), Some("x7Qa"));
        assert!(!specs[0].disabled);
        assert_eq!(
            specs[1].source,
            TokenSource::File("/var/run/secrets/keptn-api-token/keptn-api-token".into())
        );
        assert_eq!(specs[1].created, None);
        assert_eq!(specs[1].hint, None);
    }

    #[test]
    fn empty_store_is_no_tokens() {
        assert!(parse_ok("").is_empty());
        assert!(parse_ok("# nothing yet\n").is_empty());
    }

    #[test]
    fn relative_file_resolves_against_the_store_folder() {
        let specs = parse_ok("[[tokens]]\nid = \"k\"\nfile = \"secrets/k.token\"\n");
        assert_eq!(
            specs[0].source,
            TokenSource::File("/etc/gatehouse/secrets/k.token".into())
        );
        let specs = parse(
            "[[tokens]]\nid = \"k\"\nfile = \"k.token\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(specs[0].source, TokenSource::File("./k.token".into()));
    }

    #[test]
    fn bare_toml_datetimes_are_accepted() {
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\ncreated = 2026-11-23T10:00:00Z\nexpires = 2027-02-21T11:00:00+01:00\n",
            sha("t")
        );
        let specs = parse_ok(&text);
        assert_eq!(specs[0].created, Some(datetime!(2026-11-23 10:00 UTC)));
        assert_eq!(specs[0].expires, Some(datetime!(2027-02-21 10:00 UTC)));
    }

    #[test]
    fn unknown_keys_are_named_with_their_index() {
        let text = format!(
            "extra = 1\n[[tokens]]\nid = \"a\"\nsha256 = \"{0}\"\n[[tokens]]\nid = \"b\"\nsha256 = \"{1}\"\n[[tokens]]\nid = \"c\"\nsha256 = \"{2}\"\nrolez = [\"admin\"]\n",
            sha("1"),
            sha("2"),
            sha("3")
        );
        let errors = parse_err(&text);
        assert!(has(&errors, "tokens[2].rolez", "unknown key"), "{errors:?}");
        assert!(has(&errors, "extra", "unknown key"), "{errors:?}");
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn missing_id_and_source() {
        let errors = parse_err("[[tokens]]\nroles = [\"admin\"]\n");
        assert!(has(&errors, "tokens[0].id", "is required"), "{errors:?}");
        assert!(
            has(&errors, "tokens[0]", "needs sha256 or file"),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_id_names_both_entries() {
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\n[[tokens]]\nid = \"b\"\nsha256 = \"{}\"\n[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\n",
            sha("1"),
            sha("2"),
            sha("3")
        );
        let errors = parse_err(&text);
        assert_eq!(errors.len(), 1);
        assert!(
            has(
                &errors,
                "tokens[2].id",
                "duplicate id \"a\": also tokens[0]"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn both_sources_is_an_error() {
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\nfile = \"a.token\"\n",
            sha("1")
        );
        assert!(has(&parse_err(&text), "tokens[0]", "both sha256 and file"));
    }

    #[test]
    fn malformed_sha256_is_named_but_not_echoed() {
        let raw = token_format::generate();
        for (value, extra) in [
            ("abc123".to_owned(), false),
            ("z".repeat(64), false),
            (format!("{}0", sha("x")), false),
            (raw.expose().clone(), true),
        ] {
            let text = format!("[[tokens]]\nid = \"a\"\nsha256 = \"{value}\"\n");
            let errors = parse_err(&text);
            assert!(
                has(&errors, "tokens[0].sha256", "malformed sha256"),
                "{errors:?}"
            );
            assert_eq!(has(&errors, "tokens[0].sha256", "raw token"), extra);
            assert!(errors.iter().all(|(_, r)| !r.contains(value.as_str())));
        }
    }

    #[test]
    fn wrong_types_are_collected_per_key() {
        let text = "[[tokens]]\nid = 7\nsha256 = 1\nroles = \"admin\"\ncreated = 5\nhint = false\ndisabled = \"no\"\n[[tokens]]\nid = \"b\"\nfile = 3\nroles = [\"ok\", 2, \"bad role\", \"a,b\"]\n";
        let errors = parse_err(text);
        for (key, part) in [
            ("tokens[0].id", "expected a string, found integer"),
            ("tokens[0].sha256", "expected a string"),
            ("tokens[0].roles", "expected a list of strings"),
            ("tokens[0].created", "expected an RFC 3339 time"),
            ("tokens[0].hint", "expected a string"),
            ("tokens[0].disabled", "expected true or false"),
            ("tokens[1].file", "expected a string"),
            ("tokens[1].roles[1]", "expected a string"),
            ("tokens[1].roles[2]", "invalid role \"bad role\""),
            ("tokens[1].roles[3]", "invalid role \"a,b\""),
        ] {
            assert!(has(&errors, key, part), "{key}: {errors:?}");
        }
        assert_eq!(errors.len(), 10, "{errors:?}");
    }

    #[test]
    fn bad_times_ids_and_empty_file() {
        let text = format!(
            "[[tokens]]\nid = \"has space\"\nsha256 = \"{}\"\ncreated = \"yesterday\"\nexpires = 2027-02-21T10:00:00\n[[tokens]]\nid = \"\"\nfile = \"\"\n",
            sha("1")
        );
        let errors = parse_err(&text);
        assert!(has(&errors, "tokens[0].id", "invalid id \"has space\""));
        assert!(has(
            &errors,
            "tokens[0].created",
            "invalid time \"yesterday\""
        ));
        assert!(has(&errors, "tokens[0].expires", "RFC 3339 with an offset"));
        assert!(has(&errors, "tokens[1].id", "invalid id \"\""));
        assert!(has(&errors, "tokens[1].file", "is empty"));
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let errors = parse_err("[[tokens]]\nid = \"a\"\nsha256 = \n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "line 3");
    }

    #[test]
    fn lookup_outcomes() {
        let good = token_format::generate();
        let good = good.expose();
        let text = format!(
            r#"
[[tokens]]
id = "ci-bot"
sha256 = "{}"
roles = ["operator", "viewer"]
expires = "2027-02-21T10:00:00Z"

[[tokens]]
id = "old"
sha256 = "{}"
roles = ["admin"]
expires = "2026-12-31T23:59:59Z"

[[tokens]]
id = "off"
sha256 = "{}"
disabled = true
expires = "2020-01-01T00:00:00Z"

[[tokens]]
id = "keptn"
sha256 = "{}"
roles = ["admin"]
"#,
            sha(good),
            sha("old-token"),
            sha("off-token"),
            sha("plain-keptn-token")
        );
        let store = store(&text);
        let Lookup::Valid(identity) = store.lookup(good, NOW) else {
            panic!("not valid")
        };
        assert_eq!(&*identity.subject, "ci-bot");
        assert_eq!(&*identity.roles, ["operator", "viewer"]);
        assert_eq!(identity.method, AuthMethod::Token);
        assert_eq!(identity.expires, Some(datetime!(2027-02-21 10:00 UTC)));
        assert!(Arc::ptr_eq(&identity.roles, &store.entries()[0].roles));

        assert_eq!(
            store.lookup("old-token", NOW),
            Lookup::Expired(datetime!(2026-12-31 23:59:59 UTC))
        );
        assert_eq!(store.lookup("off-token", NOW), Lookup::Disabled);
        assert_eq!(store.lookup("nope", NOW), Lookup::Unknown);
        assert_eq!(store.lookup("", NOW), Lookup::Unknown);
        let Lookup::Valid(keptn) = store.lookup("plain-keptn-token", NOW) else {
            panic!("not valid")
        };
        assert_eq!(keptn.expires, None);

        let mut typo = good.clone();
        typo.replace_range(5..6, if &good[5..6] == "a" { "b" } else { "a" });
        assert_eq!(store.lookup(&typo, NOW), Lookup::BadChecksum);
        assert_eq!(store.lookup("gth_short", NOW), Lookup::BadChecksum);
        assert_eq!(store.counts(NOW), (2, 1, 1));
    }

    #[test]
    fn expiry_is_exclusive_of_the_instant() {
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\nexpires = \"2027-01-01T00:00:00Z\"\n",
            sha("t")
        );
        let store = store(&text);
        assert!(matches!(
            store.lookup("t", NOW - time::Duration::SECOND),
            Lookup::Valid(_)
        ));
        assert_eq!(store.lookup("t", NOW), Lookup::Expired(NOW));
    }

    #[test]
    fn a_bad_checksum_token_is_refused_even_if_its_hash_is_stored() {
        let bad = format!("gth_{}", "A".repeat(49));
        let text = format!("[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\n", sha(&bad));
        assert_eq!(store(&text).lookup(&bad, NOW), Lookup::BadChecksum);
    }

    #[test]
    fn same_token_twice_is_an_error() {
        let path = Path::new("/x/tokens.toml");
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{0}\"\n[[tokens]]\nid = \"b\"\nsha256 = \"{0}\"\n",
            sha("t")
        );
        let errors = build(path, text.as_bytes(), parse(&text, path).unwrap()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "tokens[1]");
        assert!(errors[0].reason.contains("same token as tokens[0]"));
    }

    #[test]
    fn file_tokens_are_hashed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let token = "keptn-secret-value-4711";
        std::fs::create_dir(dir.path().join("secret")).unwrap();
        std::fs::write(dir.path().join("secret/token"), format!("{token}\n")).unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[tokens]]\nid = \"keptn\"\nfile = \"secret/token\"\nroles = [\"admin\"]\n",
        )
        .unwrap();
        let store = load(&path).unwrap();
        let Lookup::Valid(identity) = store.lookup(token, NOW) else {
            panic!("file token not accepted")
        };
        assert_eq!(&*identity.subject, "keptn");
        assert_eq!(store.lookup(&format!("{token}\n"), NOW), Lookup::Unknown);
        assert_eq!(
            store.entries()[0].from_file.as_deref(),
            Some(dir.path().join("secret/token").as_path())
        );
        assert_eq!(
            store.files(),
            [path.clone(), dir.path().join("secret/token")]
        );
        for printed in [format!("{store:?}"), format!("{store:#?}")] {
            assert!(printed.contains("keptn"));
            assert!(!printed.contains(token), "{printed}");
            assert!(!printed.contains(&sha(token)), "{printed}");
        }
    }

    #[test]
    fn content_hash_follows_token_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "one").unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[tokens]]\nid = \"k\"\nfile = \"token\"\n").unwrap();
        let first = load(&path).unwrap().content_hash();
        assert_eq!(load(&path).unwrap().content_hash(), first);
        std::fs::write(&file, "two").unwrap();
        let second = load(&path).unwrap();
        assert_ne!(second.content_hash(), first);
        assert!(matches!(second.lookup("two", NOW), Lookup::Valid(_)));
        assert_eq!(second.lookup("one", NOW), Lookup::Unknown);
    }

    #[test]
    fn token_file_problems_name_the_entry_not_the_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), " \n").unwrap();
        let bad = format!("gth_{}", "A".repeat(49));
        std::fs::write(dir.path().join("bad"), &bad).unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[tokens]]\nid = \"a\"\nfile = \"missing\"\n[[tokens]]\nid = \"b\"\nfile = \"empty\"\n[[tokens]]\nid = \"c\"\nfile = \"bad\"\n",
        )
        .unwrap();
        let errors = load(&path).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tokens[0].file", "tokens[1].file", "tokens[2].file"]);
        assert!(errors[0].reason.contains("cannot read token file"));
        assert!(errors[1].reason.contains("is empty"));
        assert!(errors[2].reason.contains("bad checksum"));
        assert!(errors.iter().all(|e| !e.to_string().contains(&bad)));
    }

    #[test]
    fn missing_store_is_empty_but_unreadable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let store = load(&path).unwrap();
        assert!(store.entries().is_empty());
        assert_eq!(store.files(), std::slice::from_ref(&path));
        assert_eq!(store.lookup("anything", NOW), Lookup::Unknown);
        // A folder in place of the file cannot be read.
        std::fs::create_dir(&path).unwrap();
        let errors = load(&path).unwrap_err();
        assert_eq!(errors[0].key, "");
        assert!(errors[0].reason.contains("cannot read"));
    }

    #[test]
    fn states() {
        let past = Some(NOW - time::Duration::DAY);
        let future = Some(NOW + time::Duration::DAY);
        for (disabled, expires, want) in [
            (false, None, TokenState::Active),
            (false, future, TokenState::Active),
            (false, past, TokenState::Expired),
            (true, None, TokenState::Disabled),
            (true, past, TokenState::Disabled),
        ] {
            assert_eq!(TokenState::of(disabled, expires, NOW), want);
        }
        assert_eq!(TokenState::Expired.as_str(), "expired");
    }

    #[test]
    fn names() {
        assert!(validate_id("ci-bot").is_ok());
        assert!(validate_id("alice@example.com").is_ok());
        assert!(validate_id("a,b").is_ok());
        assert!(validate_role("a,b").is_err());
        assert!(validate_id(&"x".repeat(129)).is_err());
        assert!(validate_id("tab\there").is_err());
        assert!(validate_id("é").is_err());
    }
}
