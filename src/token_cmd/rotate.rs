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
//! Like `create` and `revoke`, the edit is textual (comments and layout survive) under the store
//! lock, checked by re-parsing, and falls back to re-serialising when the text cannot be edited
//! line by line.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use time::{OffsetDateTime, UtcOffset};

use super::{
    StoreLock, hash, is_tokens_header, parse_store, parses_to, quote, read_store, write_store,
};
use crate::auth::token_format;
use crate::auth::token_store::{Previous, TokenSource, TokenSpec, TokenState, hash_token};
use crate::secret::Secret;

/// Keys `rotate` rewrites inside the entry's block.
const ROTATED_KEYS: [&str; 4] = ["sha256", "hint", "previous_sha256", "previous_expires"];

/// What `rotate` did.
#[derive(Debug)]
pub struct Rotated {
    /// The new token: print it once, it exists nowhere else.
    pub token: Secret<String>,
    /// Until when the old token is still accepted; `None` when the overlap was zero.
    pub old_until: Option<OffsetDateTime>,
}

/// Gives the entry `id` a new token; the old one stays valid until `now + overlap`.
///
/// # Errors
/// A missing or invalid store, an unknown id, a `file =` entry (its token lives in a Secret: rotate
/// that), a disabled or expired entry, a lock or write failure. Never names a token or hash.
pub fn rotate(
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
    let new_hash = hash(token.expose());
    let mut expected = specs.clone();
    expected[index] = TokenSpec {
        source: TokenSource::Sha256(hash_token(token.expose().as_bytes())),
        hint: Some(token_format::hint(token.expose())),
        previous: old_until.map(|until| Previous {
            sha256: old_hash,
            until,
        }),
        ..old.clone()
    };
    let mut lines = vec![
        format!("sha256 = {}\n", quote(&new_hash)),
        format!("hint = {}\n", quote(&token_format::hint(token.expose()))),
    ];
    if let Some(until) = old_until {
        lines.push(format!(
            "previous_sha256 = {}\n",
            quote(&hex::encode(old_hash))
        ));
        lines.push(format!(
            "previous_expires = {}\n",
            quote(&crate::timestamp::rfc3339(until))
        ));
    }
    let new_text = match edit_block(&text, index, &lines) {
        Some(new_text) if parses_to(&new_text, store, &expected) => new_text,
        _ => {
            let new_text = reserialise_rotated(&text, index, &lines, store)?;
            if !parses_to(&new_text, store, &expected) {
                bail!("{where_}: cannot rewrite the entry safely");
            }
            tracing::warn!(store = %store.display(), "token store re-serialised; its comments were not kept");
            new_text
        }
    };
    write_store(store, &new_text)?;
    Ok(Rotated { token, old_until })
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

/// `text` with the `index`-th `[[tokens]]` block's [`ROTATED_KEYS`] lines replaced by `lines`
/// (placed where its `sha256` line was), or `None` when the block cannot be found line by line.
fn edit_block(text: &str, index: usize, lines: &[String]) -> Option<String> {
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    let headers: Vec<usize> = (0..all.len())
        .filter(|&i| is_tokens_header(all[i]))
        .collect();
    let start = *headers.get(index)?;
    let end = headers.get(index + 1).copied().unwrap_or(all.len());
    let at = (start + 1..end).find(|&i| key_of(all[i]) == Some("sha256"))?;
    let mut out = String::with_capacity(text.len() + 200);
    for (i, line) in all.iter().enumerate() {
        if i == at {
            lines.iter().for_each(|line| out.push_str(line));
        }
        let rotated = key_of(line).is_some_and(|key| ROTATED_KEYS.contains(&key));
        if !(start < i && i < end && rotated) {
            out.push_str(line);
            if i + 1 == all.len() && !line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Some(out)
}

/// The bare key a `key = value` line sets, if it is one.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    bare.then_some(key)
}

/// The store re-serialised with the entry's rotated keys set from `lines` (comments are lost).
fn reserialise_rotated(
    text: &str,
    index: usize,
    lines: &[String],
    store: &Path,
) -> anyhow::Result<String> {
    let mut table: toml::Table =
        toml::from_str(text).with_context(|| format!("{}: cannot parse", store.display()))?;
    let keys: toml::Table = toml::from_str(&lines.concat())
        .with_context(|| format!("{}: cannot write TOML", store.display()))?;
    let Some(toml::Value::Table(entry)) = table
        .get_mut("tokens")
        .and_then(toml::Value::as_array_mut)
        .and_then(|tokens| tokens.get_mut(index))
    else {
        bail!("{}: tokens[{index}] not found", store.display());
    };
    for key in ROTATED_KEYS {
        entry.remove(key);
    }
    entry.extend(keys);
    toml::to_string(&table).with_context(|| format!("{}: cannot write TOML", store.display()))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::auth::token_store::{self, Lookup};
    use crate::token_cmd::{create, revoke};

    const NOW: OffsetDateTime = datetime!(2027-01-01 12:00:00.5 UTC);

    fn store_with(dir: &Path, ids: &[&str]) -> (std::path::PathBuf, Vec<Secret<String>>) {
        let store = dir.join("tokens.toml");
        let tokens = ids
            .iter()
            .map(|id| create(&store, id, &["operator".to_owned()], Some("30d"), NOW).unwrap())
            .collect();
        (store, tokens)
    }

    #[test]
    fn both_tokens_are_the_same_identity_until_the_overlap_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tokens) = store_with(dir.path(), &["a", "ci", "z"]);
        let old = &tokens[1];
        let rotated = rotate(&store, "ci", Duration::from_secs(3600), NOW).unwrap();
        assert_eq!(rotated.old_until, Some(datetime!(2027-01-01 13:00:01 UTC)));

        let loaded = token_store::load(&store).unwrap();
        for token in [old, &rotated.token] {
            let Lookup::Valid(identity) = loaded.lookup(token.expose(), NOW) else {
                panic!("not accepted during the overlap")
            };
            assert_eq!(&*identity.subject, "ci");
            assert_eq!(&*identity.roles, ["operator"]);
            assert_eq!(identity.expires, Some(datetime!(2027-01-31 12:00 UTC)));
        }
        let end = datetime!(2027-01-01 13:00:01 UTC);
        assert!(matches!(
            loaded.lookup(old.expose(), end - time::Duration::NANOSECOND),
            Lookup::Valid(_)
        ));
        assert_eq!(loaded.lookup(old.expose(), end), Lookup::Expired(end));
        assert!(matches!(
            loaded.lookup(rotated.token.expose(), end),
            Lookup::Valid(_)
        ));
        // The neighbours are untouched; the store never holds the new token.
        for token in [&tokens[0], &tokens[2]] {
            assert!(matches!(
                loaded.lookup(token.expose(), end),
                Lookup::Valid(_)
            ));
        }
        let text = std::fs::read_to_string(&store).unwrap();
        assert!(!text.contains(rotated.token.expose().as_str()));
        assert!(!text.contains(old.expose().as_str()));
        assert_eq!(loaded.entries().len(), 3);
    }

    #[test]
    fn zero_overlap_refuses_the_old_token_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tokens) = store_with(dir.path(), &["ci"]);
        let rotated = rotate(&store, "ci", Duration::ZERO, NOW).unwrap();
        assert_eq!(rotated.old_until, None);
        let loaded = token_store::load(&store).unwrap();
        assert_eq!(loaded.lookup(tokens[0].expose(), NOW), Lookup::Unknown);
        assert!(
            !std::fs::read_to_string(&store)
                .unwrap()
                .contains("previous")
        );
    }

    #[test]
    fn rotating_twice_keeps_only_the_last_previous() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tokens) = store_with(dir.path(), &["ci"]);
        let second = rotate(&store, "ci", Duration::from_secs(60), NOW).unwrap();
        let third = rotate(&store, "ci", Duration::from_secs(60), NOW).unwrap();
        let loaded = token_store::load(&store).unwrap();
        assert_eq!(loaded.lookup(tokens[0].expose(), NOW), Lookup::Unknown);
        assert!(matches!(
            loaded.lookup(second.token.expose(), NOW),
            Lookup::Valid(_)
        ));
        assert!(matches!(
            loaded.lookup(third.token.expose(), NOW),
            Lookup::Valid(_)
        ));
        let text = std::fs::read_to_string(&store).unwrap();
        assert_eq!(text.matches("previous_sha256").count(), 1, "{text}");
    }

    #[test]
    fn revoke_and_disable_refuse_the_previous_token_too() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tokens) = store_with(dir.path(), &["ci"]);
        let rotated = rotate(&store, "ci", Duration::from_secs(3600), NOW).unwrap();

        let text = std::fs::read_to_string(&store).unwrap();
        std::fs::write(&store, text.replace("hint =", "disabled = true\nhint =")).unwrap();
        let loaded = token_store::load(&store).unwrap();
        assert_eq!(loaded.lookup(tokens[0].expose(), NOW), Lookup::Disabled);
        assert_eq!(loaded.lookup(rotated.token.expose(), NOW), Lookup::Disabled);

        revoke(&store, "ci").unwrap();
        let loaded = token_store::load(&store).unwrap();
        assert_eq!(loaded.lookup(tokens[0].expose(), NOW), Lookup::Unknown);
        assert_eq!(loaded.lookup(rotated.token.expose(), NOW), Lookup::Unknown);
    }

    #[test]
    fn keeps_comments_and_falls_back_for_inline_tables() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), &["ci"]);
        let text = std::fs::read_to_string(&store)
            .unwrap()
            .replace("[[tokens]]", "# the CI bot\n[[tokens]] # keep");
        std::fs::write(&store, &text).unwrap();
        rotate(&store, "ci", Duration::from_secs(60), NOW).unwrap();
        let after = std::fs::read_to_string(&store).unwrap();
        assert!(
            after.contains("# the CI bot\n[[tokens]] # keep\n"),
            "{after}"
        );

        let inline = dir.path().join("inline.toml");
        std::fs::write(
            &inline,
            format!(
                "tokens = [{{ id = \"a\", sha256 = \"{}\", roles = [\"viewer\"] }}]\n",
                hash("old")
            ),
        )
        .unwrap();
        let rotated = rotate(&inline, "a", Duration::from_secs(60), NOW).unwrap();
        let loaded = token_store::load(&inline).unwrap();
        assert!(matches!(loaded.lookup("old", NOW), Lookup::Valid(_)));
        assert!(matches!(
            loaded.lookup(rotated.token.expose(), NOW),
            Lookup::Valid(_)
        ));
    }

    #[test]
    fn refuses_what_it_cannot_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), &["ci"]);
        let mut text = std::fs::read_to_string(&store).unwrap();
        text.push_str(&format!(
            "\n[[tokens]]\nid = \"off\"\nsha256 = \"{}\"\ndisabled = true\n\n[[tokens]]\nid = \"keptn\"\nfile = \"keptn-token\"\n",
            hash("x")
        ));
        std::fs::write(&store, &text).unwrap();
        for (id, part) in [
            ("nope", "no token with id \"nope\""),
            ("off", "is disabled"),
            ("keptn", "rotate that Secret instead"),
        ] {
            let error = rotate(&store, id, Duration::from_secs(60), NOW).unwrap_err();
            assert!(error.to_string().contains(part), "{error}");
        }
        let later = NOW + time::Duration::days(31);
        let error = rotate(&store, "ci", Duration::from_secs(60), later).unwrap_err();
        assert!(error.to_string().contains("has expired"), "{error}");
        assert_eq!(std::fs::read_to_string(&store).unwrap(), text);
    }

    #[test]
    fn store_keys_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = &dir.path().join("tokens.toml");
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\nprevious_sha256 = \"{}\"\n",
            hash("a"),
            hash("b")
        );
        let errors = token_store::parse(&text, path).unwrap_err();
        assert!(errors[0].reason.contains("go together"), "{errors:?}");
        let text = format!(
            "[[tokens]]\nid = \"a\"\nsha256 = \"{0}\"\nprevious_sha256 = \"{0}\"\nprevious_expires = \"2027-01-01T00:00:00Z\"\n",
            hash("a")
        );
        std::fs::write(path, text).unwrap();
        let errors = token_store::load(path).unwrap_err();
        assert!(errors[0].reason.contains("same token"), "{errors:?}");
    }
}
