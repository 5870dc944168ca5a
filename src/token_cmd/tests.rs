use std::sync::Arc;

use time::macros::datetime;

use super::store_file::lock_path;
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
    // The store keeps whole seconds: a fraction is dropped, not refused by the re-parse check.
    create(
        &store,
        "b",
        &roles(&["viewer"]),
        Some("2027-06-01T12:00:00.75+02:00"),
        NOW,
    )
    .unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(
        text.contains("expires = \"2027-06-01T10:00:00Z\"\nhint"),
        "{text}"
    );
    // Within the second that is `now`, an expiry is not in the future.
    let error = create(
        &store,
        "c",
        &roles(&["viewer"]),
        Some("2027-01-01T12:00:00.9Z"),
        NOW,
    )
    .unwrap_err();
    assert!(error.to_string().contains("not in the future"), "{error}");
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
fn revoke_and_create_edit_inline_tables_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.toml");
    std::fs::write(
        &store,
        format!(
            "# inline\ntokens = [\n  {{ id = \"a\", sha256 = \"{}\", roles = [\"viewer\"] }},\n  {{ id = \"b\", sha256 = \"{}\" }}, # bee\n]\n",
            hash("ta"),
            hash("tb")
        ),
    )
    .unwrap();
    revoke(&store, "a").unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert_eq!(
        text,
        format!(
            "# inline\ntokens = [\n  {{ id = \"b\", sha256 = \"{}\" }}, # bee\n]\n",
            hash("tb")
        )
    );

    let token = create(&store, "c", &roles(&["admin"]), None, NOW).unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(
        text.starts_with("# inline\ntokens = [\n  { id = \"b\""),
        "{text}"
    );
    assert!(
        text.contains(" # bee\n  { id = \"c\", sha256 = \""),
        "{text}"
    );
    let loaded = token_store::load(&store).unwrap();
    assert!(matches!(loaded.lookup("tb", NOW), Lookup::Valid(_)));
    assert!(matches!(
        loaded.lookup(token.expose(), NOW),
        Lookup::Valid(_)
    ));
    assert_eq!(loaded.entries().len(), 2);
}

#[test]
fn revoking_the_first_entry_keeps_the_store_header() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.toml");
    create(&store, "a", &roles(&["viewer"]), None, NOW).unwrap();
    let b = create(&store, "b", &roles(&["viewer"]), None, NOW).unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    let text = text.replace(
        "[[tokens]]\nid = \"a\"",
        "# a is the old bot\n[[tokens]]\nid = \"a\"",
    );
    std::fs::write(&store, &text).unwrap();
    revoke(&store, "a").unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(
        text.starts_with("# gatehouse token store: SHA-256 hashes only, never a usable token.\n"),
        "{text}"
    );
    assert!(!text.contains("old bot"), "{text}");
    assert!(!text.contains("id = \"a\""), "{text}");
    revoke(&store, "b").unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(text.starts_with("# gatehouse token store"), "{text}");
    assert!(!text.contains("[[tokens]]"), "{text}");
    let loaded = token_store::load(&store).unwrap();
    assert_eq!(loaded.lookup(b.expose(), NOW), Lookup::Unknown);
    // A store of comments only takes new entries below them.
    create(&store, "c", &roles(&["viewer"]), None, NOW).unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert_eq!(text.matches("# gatehouse token store").count(), 1, "{text}");
    assert!(text.find("# gatehouse").unwrap() < text.find("[[tokens]]").unwrap());
}

#[test]
fn a_new_store_has_the_expected_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.toml");
    let token = create(
        &store,
        "ci",
        &roles(&["operator", "viewer"]),
        Some("1d"),
        NOW,
    )
    .unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert_eq!(
        text,
        format!(
            "# gatehouse token store: SHA-256 hashes only, never a usable token.\n# Managed by `gatehouse token create | revoke`; hand edits are fine (see `gatehouse token hash`).\n\n[[tokens]]\nid = \"ci\"\nsha256 = \"{}\"\nroles = [\"operator\", \"viewer\"]\ncreated = \"2027-01-01T12:00:00Z\"\nexpires = \"2027-01-02T12:00:00Z\"\nhint = \"{}\"\n",
            hash(token.expose()),
            token_format::hint(token.expose())
        )
    );
    create(&store, "b", &roles(&["viewer"]), None, NOW).unwrap();
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(
        text.contains("\"\n\n[[tokens]]\nid = \"b\"\n"),
        "one blank line between entries: {text}"
    );
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
                        let token = create(&store, &id, &roles(&["viewer"]), None, NOW).unwrap();
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
fn lock_file_sits_beside_the_store() {
    assert_eq!(
        lock_path(Path::new("a/tokens.toml")),
        Path::new("a/tokens.toml.lock")
    );
}
