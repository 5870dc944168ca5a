//! The bodies of `gatehouse token create | list | revoke | rotate | hash` (SPEC §1): everything that
//! *writes* the token store. Parsing and checking the store is [`token_store`]'s job, the token
//! shape is [`token_format`]'s, argument parsing and printing are `cli`'s.
//!
//! Every write holds an exclusive `File::lock()` on a sidecar `<store>.lock` for the whole
//! read–check–write cycle, and replaces the store atomically ([`write_atomically`], mode `0600`),
//! so concurrent `create`s never lose an entry and a watching gateway never sees half a file. The
//! lock file is left in place: deleting it would let two writers lock two different files.
//!
//! `create` appends a `[[tokens]]` block to the existing text, so comments and layout survive.
//! `revoke` removes the entry's block textually (with the comment lines right above its header)
//! and checks that the result parses to exactly the other entries; if it does not (a store
//! written with inline tables, say), it re-serialises the remaining entries instead, and then
//! the file's comments are lost (a warning says so).

mod report;
mod rotate;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::auth::token_format;
use crate::auth::token_store::{self, TokenSource, TokenSpec};
use crate::config::ConfigErrors;
use crate::config::units::parse_duration;
use crate::files::write_atomically;
use crate::secret::Secret;
use crate::timestamp::rfc3339;

pub use report::{Hashed, hash_checked, list_json, unused_role_warnings};
pub use rotate::{Rotated, rotate};

/// Permissions of the store file: hashes only, but still nobody else's business.
const STORE_MODE: u32 = 0o600;

/// First lines of a store created by `token create`.
const NEW_STORE_HEADER: &str = "# gatehouse token store: SHA-256 hashes only, never a usable token.\n# Managed by `gatehouse token create | revoke`; hand edits are fine (see `gatehouse token hash`).\n";

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
    let block = token_block(&NewEntry {
        id,
        hash: &hash(token.expose()),
        roles,
        created: now,
        expires,
        hint: &token_format::hint(token.expose()),
    })?;
    let new_text = append_block(&text, &block);
    let after = parse_store(&new_text, store)
        .with_context(|| format!("{}: cannot append a [[tokens]] table", store.display()))?;
    if after.len() != specs.len() + 1 || after.last().map(|spec| spec.id.as_str()) != Some(id) {
        bail!(
            "{}: appending a [[tokens]] table did not add one entry (is `tokens` written as an inline array?)",
            store.display()
        );
    }
    write_store(store, &new_text)?;
    Ok(token)
}

/// The `token list` table: id, roles, created, expires, state at `now`, hint; one header line and
/// one line per entry, in file order, columns padded with spaces.
///
/// # Errors
/// A missing, unreadable or invalid store.
pub fn list(store: &Path, now: OffsetDateTime) -> anyhow::Result<String> {
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let specs = parse_store(&text, store)?;
    let mut rows = vec![["ID", "ROLES", "CREATED", "EXPIRES", "STATE", "HINT"].map(String::from)];
    rows.extend(specs.iter().map(|spec| row(spec, now)));
    Ok(render(&rows))
}

/// Removes the entry `id` from `store` by atomic replace. A running gateway stops accepting the
/// token at its next reload (its watcher sees the rename).
///
/// Comments are kept unless the store's layout forces a re-serialisation (see the module doc).
///
/// # Errors
/// A missing or invalid store, an unknown id, a lock or write failure.
pub fn revoke(store: &Path, id: &str) -> anyhow::Result<()> {
    let _lock = StoreLock::acquire(store)?;
    let text =
        read_store(store)?.ok_or_else(|| anyhow!("{}: no such token store", store.display()))?;
    let specs = parse_store(&text, store)?;
    let index = specs
        .iter()
        .position(|spec| spec.id == id)
        .ok_or_else(|| anyhow!("{}: no token with id {id:?}", store.display()))?;
    let mut expected = specs;
    expected.remove(index);
    let new_text = match remove_block(&text, index) {
        Some(new_text) if parses_to(&new_text, store, &expected) => new_text,
        _ => {
            let new_text = reserialise_without(&text, index, store)?;
            if !parses_to(&new_text, store, &expected) {
                bail!("{}: cannot remove tokens[{index}] safely", store.display());
            }
            tracing::warn!(store = %store.display(), "token store re-serialised; its comments were not kept");
            new_text
        }
    };
    write_store(store, &new_text)
}

/// Hex SHA-256 of `token` with surrounding whitespace trimmed: the store's `sha256` value for a
/// hand-edited entry (`token hash` reads the token on stdin).
pub fn hash(token: &str) -> String {
    hex::encode(token_store::hash_token(token.trim().as_bytes()))
}

/// An exclusive lock on `<store>.lock`, released on drop.
struct StoreLock(File);

impl StoreLock {
    fn acquire(store: &Path) -> anyhow::Result<Self> {
        let path = lock_path(store);
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{}: cannot create folder", folder.display()))?;
        }
        // Private like the store itself (SPEC §8.9): it sits beside it and names it.
        let file = crate::files::with_mode(
            OpenOptions::new().create(true).truncate(false).write(true),
            STORE_MODE,
        )
        .open(&path)
        .with_context(|| format!("{}: cannot open lock file", path.display()))?;
        file.lock()
            .with_context(|| format!("{}: cannot lock", path.display()))?;
        Ok(Self(file))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first just makes it prompt.
        let _ = self.0.unlock();
    }
}

fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The store's text, or `None` when the file does not exist.
fn read_store(store: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(store) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: cannot read: {e}", store.display())),
    }
}

fn parse_store(text: &str, store: &Path) -> anyhow::Result<Vec<TokenSpec>> {
    token_store::parse(text, store).map_err(|errors| anyhow::Error::new(ConfigErrors(errors)))
}

fn parses_to(text: &str, store: &Path, expected: &[TokenSpec]) -> bool {
    token_store::parse(text, store).is_ok_and(|specs| specs == expected)
}

fn write_store(store: &Path, text: &str) -> anyhow::Result<()> {
    write_atomically(store, text.as_bytes(), STORE_MODE).map_err(anyhow::Error::msg)
}

/// `"90d"` from `now`, or an RFC 3339 time; either must lie after `now`.
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
    if expires <= now {
        bail!("--expires: {text:?} is not in the future");
    }
    Ok(expires)
}

/// What `create` writes for one token.
struct NewEntry<'a> {
    id: &'a str,
    hash: &'a str,
    roles: &'a [String],
    created: OffsetDateTime,
    expires: Option<OffsetDateTime>,
    hint: &'a str,
}

/// The `[[tokens]]` block for `entry`, ending in a newline.
fn token_block(entry: &NewEntry<'_>) -> anyhow::Result<String> {
    let roles: Vec<String> = entry.roles.iter().map(|role| quote(role)).collect();
    let mut block = format!(
        "[[tokens]]\nid = {}\nsha256 = {}\nroles = [{}]\ncreated = {}\n",
        quote(entry.id),
        quote(entry.hash),
        roles.join(", "),
        quote(&rfc3339(entry.created)),
    );
    if let Some(expires) = entry.expires {
        block.push_str(&format!("expires = {}\n", quote(&rfc3339(expires))));
    }
    block.push_str(&format!("hint = {}\n", quote(entry.hint)));
    Ok(block)
}

/// A TOML basic string. Ids and roles are visible ASCII (checked), so only `"` and `\` need
/// escaping.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `text` with `block` appended after one blank line (a new store gets a header comment).
fn append_block(text: &str, block: &str) -> String {
    if text.trim().is_empty() {
        return format!("{NEW_STORE_HEADER}\n{block}");
    }
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("{text}{newline}\n{block}")
}

/// `text` without the `index`-th `[[tokens]]` block, or `None` when the headers cannot be found
/// line by line. A block runs from its header (and the comment lines right above it) to the next
/// block; the caller checks the result.
fn remove_block(text: &str, index: usize) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| is_tokens_header(lines[i]))
        .collect();
    let start = attached_start(&lines, *headers.get(index)?);
    let end = headers
        .get(index + 1)
        .map_or(lines.len(), |&next| attached_start(&lines, next));
    Some(lines[..start].concat() + &lines[end..].concat())
}

/// `[[tokens]]`, optionally spaced inside the brackets and followed by a comment.
fn is_tokens_header(line: &str) -> bool {
    let Some(inner) = line.trim().strip_prefix("[[") else {
        return false;
    };
    let Some((name, rest)) = inner.split_once("]]") else {
        return false;
    };
    let rest = rest.trim();
    name.trim() == "tokens" && (rest.is_empty() || rest.starts_with('#'))
}

/// The first of the comment lines directly above `header` (or `header` itself).
fn attached_start(lines: &[&str], header: usize) -> usize {
    let comments = lines[..header]
        .iter()
        .rev()
        .take_while(|line| line.trim_start().starts_with('#'))
        .count();
    header - comments
}

/// The store re-serialised without its `index`-th entry (comments are lost).
fn reserialise_without(text: &str, index: usize, store: &Path) -> anyhow::Result<String> {
    let mut table: toml::Table =
        toml::from_str(text).with_context(|| format!("{}: cannot parse", store.display()))?;
    match table.get_mut("tokens") {
        Some(toml::Value::Array(tokens)) if index < tokens.len() => {
            tokens.remove(index);
        }
        _ => bail!("{}: tokens[{index}] not found", store.display()),
    }
    toml::to_string(&table).with_context(|| format!("{}: cannot write TOML", store.display()))
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
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::auth::token_store::{Lookup, TokenState};

    const NOW: OffsetDateTime = datetime!(2027-01-01 12:00:00.123 UTC);

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn create_then_lookup_finds_it_with_its_roles() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("sub/tokens.toml");
        let token = create(
            &store,
            "ci-bot",
            &roles(&["operator", "viewer"]),
            Some("90d"),
            NOW,
        )
        .unwrap();
        let loaded = token_store::load(&store).unwrap();
        let Lookup::Valid(identity) = loaded.lookup(token.expose(), NOW) else {
            panic!("created token not accepted")
        };
        assert_eq!(&*identity.subject, "ci-bot");
        assert_eq!(&*identity.roles, ["operator", "viewer"]);
        assert_eq!(identity.expires, Some(datetime!(2027-04-01 12:00 UTC)));
        let entry = &loaded.entries()[0];
        assert_eq!(entry.created, Some(datetime!(2027-01-01 12:00 UTC)));
        assert_eq!(entry.hint.as_deref(), Some(&token.expose()[49..]));

        let text = std::fs::read_to_string(&store).unwrap();
        assert!(!text.contains(token.expose().as_str()));
        assert!(text.contains(&hash(token.expose())));
        assert!(text.starts_with("# gatehouse token store"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&store).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let lock = std::fs::metadata(lock_path(&store)).unwrap();
            assert_eq!(
                lock.permissions().mode() & 0o777,
                0o600,
                "the lock file too"
            );
        }
    }

    #[test]
    fn create_keeps_existing_text_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        let original = format!(
            "# hand-written header\n[[tokens]]\nid = \"keptn\"  # the Keptn token\nsha256 = \"{}\"\nroles = [\"admin\"]",
            hash("keptn-token")
        );
        std::fs::write(&store, &original).unwrap();
        create(&store, "new", &roles(&["viewer"]), None, NOW).unwrap();
        let text = std::fs::read_to_string(&store).unwrap();
        assert!(text.starts_with(&original), "{text}");
        let specs = token_store::parse(&text, &store).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].id, "new");
        assert_eq!(specs[1].expires, None);
    }

    #[test]
    fn create_with_an_rfc3339_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        create(
            &store,
            "a",
            &roles(&["viewer"]),
            Some("2027-06-01T12:00:00+02:00"),
            NOW,
        )
        .unwrap();
        let specs = token_store::parse(&std::fs::read_to_string(&store).unwrap(), &store).unwrap();
        assert_eq!(specs[0].expires, Some(datetime!(2027-06-01 10:00 UTC)));
    }

    #[test]
    fn create_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        let viewer = roles(&["viewer"]);
        for (id, roles, expires, part) in [
            ("has space", viewer.clone(), None, "--id: invalid id"),
            ("a", Vec::new(), None, "at least one role"),
            ("a", roles(&["a,b"]), None, "--role: invalid role"),
            (
                "a",
                viewer.clone(),
                Some("soon"),
                "--expires: invalid \"soon\"",
            ),
            ("a", viewer.clone(), Some("0"), "not in the future"),
            (
                "a",
                viewer.clone(),
                Some("2020-01-01T00:00:00Z"),
                "not in the future",
            ),
        ] {
            let error = create(&store, id, &roles, expires, NOW).unwrap_err();
            assert!(error.to_string().contains(part), "{error}");
        }
        assert!(!store.exists());
    }

    #[test]
    fn duplicate_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        create(&store, "ci", &roles(&["viewer"]), None, NOW).unwrap();
        let before = std::fs::read_to_string(&store).unwrap();
        let error = create(&store, "ci", &roles(&["admin"]), None, NOW).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("tokens[0].id: id \"ci\" already exists"),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&store).unwrap(), before);
    }

    #[test]
    fn create_refuses_an_invalid_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        std::fs::write(&store, "[[tokens]]\nid = \"a\"\nsha256 = \"nope\"\n").unwrap();
        let error = create(&store, "b", &roles(&["viewer"]), None, NOW).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("tokens[0].sha256: malformed sha256"),
            "{error}"
        );
    }

    #[test]
    fn revoke_removes_the_entry_and_keeps_other_comments() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        std::fs::write(&store, "# my tokens\n").unwrap();
        let a = create(&store, "a", &roles(&["viewer"]), None, NOW).unwrap();
        let b = create(&store, "b", &roles(&["admin"]), None, NOW).unwrap();
        let c = create(&store, "c", &roles(&["operator"]), None, NOW).unwrap();
        let text = std::fs::read_to_string(&store)
            .unwrap()
            .replace(
                "[[tokens]]\nid = \"b\"",
                "# b is the deploy bot\n[[tokens]]\nid = \"b\"",
            )
            .replace(
                "[[tokens]]\nid = \"c\"",
                "# c stays\n[[tokens]]\nid = \"c\"",
            );
        std::fs::write(&store, text).unwrap();

        revoke(&store, "b").unwrap();
        let text = std::fs::read_to_string(&store).unwrap();
        assert!(text.starts_with("# my tokens\n"));
        assert!(!text.contains("deploy bot"), "{text}");
        assert!(text.contains("# c stays\n[[tokens]]\nid = \"c\""), "{text}");
        let loaded = token_store::load(&store).unwrap();
        assert!(matches!(loaded.lookup(a.expose(), NOW), Lookup::Valid(_)));
        assert_eq!(loaded.lookup(b.expose(), NOW), Lookup::Unknown);
        assert!(matches!(loaded.lookup(c.expose(), NOW), Lookup::Valid(_)));

        revoke(&store, "c").unwrap();
        revoke(&store, "a").unwrap();
        let loaded = token_store::load(&store).unwrap();
        assert!(loaded.entries().is_empty());
    }

    #[test]
    fn revoke_unknown_id_or_missing_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        let error = revoke(&store, "a").unwrap_err();
        assert!(error.to_string().contains("no such token store"), "{error}");
        create(&store, "a", &roles(&["viewer"]), None, NOW).unwrap();
        let error = revoke(&store, "b").unwrap_err();
        assert!(
            error.to_string().contains("no token with id \"b\""),
            "{error}"
        );
    }

    #[test]
    fn revoke_falls_back_to_reserialising_inline_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        std::fs::write(
            &store,
            format!(
                "# inline\ntokens = [\n  {{ id = \"a\", sha256 = \"{}\", roles = [\"viewer\"] }},\n  {{ id = \"b\", sha256 = \"{}\" }},\n]\n",
                hash("ta"),
                hash("tb")
            ),
        )
        .unwrap();
        revoke(&store, "a").unwrap();
        let specs = token_store::parse(&std::fs::read_to_string(&store).unwrap(), &store).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].id, "b");
    }

    #[test]
    fn list_shows_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        let token = create(
            &store,
            "ci-bot",
            &roles(&["operator", "viewer"]),
            Some("1d"),
            NOW,
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&store).unwrap();
        text.push_str(&format!(
            "\n[[tokens]]\nid = \"off\"\nsha256 = \"{}\"\ndisabled = true\n\n[[tokens]]\nid = \"keptn\"\nfile = \"/run/secret/token\"\nroles = [\"admin\"]\n",
            hash("x")
        ));
        std::fs::write(&store, text).unwrap();

        let table = list(&store, NOW).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["ID", "ROLES", "CREATED", "EXPIRES", "STATE", "HINT"]
        );
        let hint = token_format::hint(token.expose());
        let ci: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            ci,
            [
                "ci-bot",
                "operator,viewer",
                "2027-01-01T12:00:00Z",
                "2027-01-02T12:00:00Z",
                "active",
                hint.as_str()
            ]
        );
        let off: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(off, ["off", "-", "-", "-", "disabled", "-"]);
        let keptn: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(keptn, ["keptn", "admin", "-", "-", "active", "(file)"]);
        assert!(!table.contains(token.expose().as_str()));

        let later = list(&store, NOW + time::Duration::days(2)).unwrap();
        assert!(later.lines().nth(1).unwrap().contains("expired"));
        assert_eq!(TokenState::Expired.as_str(), "expired");
    }

    #[test]
    fn list_of_a_missing_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("nope.toml"), NOW).is_err());
    }

    #[test]
    fn hash_trims_and_matches_the_store() {
        assert_eq!(
            hash("abc\n"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash("  abc  "), hash("abc"));
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        std::fs::write(
            &store,
            format!(
                "[[tokens]]\nid = \"hand\"\nsha256 = \"{}\"\n",
                hash("my-token\n")
            ),
        )
        .unwrap();
        let loaded = token_store::load(&store).unwrap();
        assert!(matches!(loaded.lookup("my-token", NOW), Lookup::Valid(_)));
    }

    #[test]
    fn concurrent_creates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(dir.path().join("tokens.toml"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..5)
                        .map(|i| {
                            let id = format!("t{t}-{i}");
                            let token =
                                create(&store, &id, &roles(&["viewer"]), None, NOW).unwrap();
                            (id, token)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let created: Vec<(String, Secret<String>)> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(created.len(), 40);
        let loaded = token_store::load(&store).unwrap();
        assert_eq!(loaded.entries().len(), 40);
        for (id, token) in &created {
            let Lookup::Valid(identity) = loaded.lookup(token.expose(), NOW) else {
                panic!("{id} lost")
            };
            assert_eq!(&*identity.subject, id.as_str());
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            lock_path(Path::new("a/tokens.toml")),
            Path::new("a/tokens.toml.lock")
        );
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        for (line, want) in [
            ("[[tokens]]\n", true),
            ("  [[ tokens ]]  # x\n", true),
            ("[[tokens]] junk\n", false),
            ("[[tokenz]]\n", false),
            ("# [[tokens]]\n", false),
        ] {
            assert_eq!(is_tokens_header(line), want, "{line}");
        }
    }
}
