use time::macros::datetime;

use super::*;
use crate::auth::token_store::{self, Lookup};
use crate::token_cmd::{create, hash, revoke};

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
fn keeps_comments_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with(dir.path(), &["a", "ci"]);
    let text: String = std::fs::read_to_string(&store)
        .unwrap()
        .replace(
            "[[tokens]]\nid = \"ci\"",
            "# the CI bot\n[[tokens]] # keep\nid = \"ci\"",
        )
        .lines()
        .map(|line| match line.starts_with("sha256 =") {
            true => format!("{line}  # rotated monthly\n"),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&store, &text).unwrap();
    rotate(&store, "ci", Duration::from_secs(60), NOW).unwrap();
    let after = std::fs::read_to_string(&store).unwrap();

    // The first entry is byte for byte the same.
    let (before_a, before_ci) = text.split_once("# the CI bot").unwrap();
    let (after_a, after_ci) = after.split_once("# the CI bot").unwrap();
    assert_eq!(after_a, before_a);
    // The rotated one keeps every line and comment; only the sha256 and hint values change, and
    // the two previous_* keys come last.
    let before: Vec<&str> = before_ci.lines().collect();
    let after: Vec<&str> = after_ci.lines().collect();
    assert_eq!(after.len(), before.len() + 2, "{after_ci}");
    for (old, new) in before.iter().zip(&after) {
        let key = |line: &str| line.split(" = ").next().unwrap().to_owned();
        assert_eq!(key(old), key(new));
        if key(old) == "sha256" {
            assert_ne!(old, new);
            assert!(new.ends_with("\"  # rotated monthly"), "{new}");
        } else if key(old) != "hint" {
            assert_eq!(old, new);
        }
    }
    assert!(before[1] == "[[tokens]] # keep", "{before_ci}");
    let old_hash = before[3].split('"').nth(1).unwrap();
    assert_eq!(
        after[before.len()],
        format!("previous_sha256 = \"{old_hash}\"")
    );
    assert_eq!(
        after[before.len() + 1],
        "previous_expires = \"2027-01-01T12:01:01Z\""
    );
}

#[test]
fn rotates_inside_inline_tables() {
    let dir = tempfile::tempdir().unwrap();
    let inline = dir.path().join("inline.toml");
    let text = format!(
        "# inline\ntokens = [{{ id = \"a\", sha256 = \"{}\", roles = [\"viewer\"] }}] # one\n",
        hash("old")
    );
    std::fs::write(&inline, &text).unwrap();
    let rotated = rotate(&inline, "a", Duration::from_secs(60), NOW).unwrap();
    let loaded = token_store::load(&inline).unwrap();
    assert!(matches!(loaded.lookup("old", NOW), Lookup::Valid(_)));
    assert!(matches!(
        loaded.lookup(rotated.token.expose(), NOW),
        Lookup::Valid(_)
    ));
    let after = std::fs::read_to_string(&inline).unwrap();
    assert!(
        after.starts_with("# inline\ntokens = [{ id = \"a\", sha256 = \""),
        "{after}"
    );
    assert!(after.ends_with("\" }] # one\n"), "{after}");
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
    let errors = token_store::parse(&text, path).unwrap_err().0;
    assert!(errors[0].reason.contains("go together"), "{errors:?}");
    let text = format!(
        "[[tokens]]\nid = \"a\"\nsha256 = \"{0}\"\nprevious_sha256 = \"{0}\"\nprevious_expires = \"2027-01-01T00:00:00Z\"\n",
        hash("a")
    );
    std::fs::write(path, text).unwrap();
    let errors = token_store::load(path).unwrap_err().0;
    assert!(errors[0].reason.contains("same token"), "{errors:?}");
}
