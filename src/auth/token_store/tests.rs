use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use super::index::build;
use super::*;
use crate::auth::AuthMethod;
use crate::auth::token_format;

const NOW: OffsetDateTime = datetime!(2027-01-01 00:00 UTC);

fn sha(token: &str) -> String {
    hex::encode(hash_token(token.as_bytes()))
}

fn parse_ok(text: &str) -> Vec<TokenSpec> {
    parse(text, Path::new("/etc/gatehouse/tokens.toml")).unwrap()
}

/// `(key, reason)` of every error.
fn parse_err(text: &str) -> Vec<(String, String)> {
    let errors = parse(text, Path::new("/etc/gatehouse/tokens.toml"))
        .unwrap_err()
        .0;
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
    build(path, parse(text, path).unwrap()).unwrap()
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
    let errors = build(path, parse(&text, path).unwrap()).unwrap_err().0;
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
fn a_changed_token_file_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "one").unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, "[[tokens]]\nid = \"k\"\nfile = \"token\"\n").unwrap();
    assert!(matches!(
        load(&path).unwrap().lookup("one", NOW),
        Lookup::Valid(_)
    ));
    std::fs::write(&file, "two").unwrap();
    let second = load(&path).unwrap();
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
    let errors = load(&path).unwrap_err().0;
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
    let errors = load(&path).unwrap_err().0;
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
