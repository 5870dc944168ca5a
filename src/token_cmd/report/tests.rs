use time::macros::datetime;

use super::*;
use crate::token_cmd::{create, rotate};

const NOW: OffsetDateTime = datetime!(2027-01-01 12:00 UTC);

#[test]
fn json_has_every_field_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.toml");
    let token = create(&store, "ci", &["operator".to_owned()], Some("1d"), NOW).unwrap();
    let rotated = rotate(&store, "ci", std::time::Duration::from_secs(60), NOW).unwrap();
    let mut text = std::fs::read_to_string(&store).unwrap();
    text.push_str("\n[[tokens]]\nid = \"keptn\"\nfile = \"keptn-token\"\nroles = [\"admin\"]\ndisabled = true\n");
    std::fs::write(&store, text).unwrap();

    let out = list_json(&store, NOW).unwrap();
    let list: Value = serde_json::from_str(&out).unwrap();
    let [ci, keptn] = list.as_array().unwrap().as_slice() else {
        panic!("two entries: {out}")
    };
    assert_eq!(
        *ci,
        json!({
            "id": "ci", "roles": ["operator"], "created": "2027-01-01T12:00:00Z",
            "expires": "2027-01-02T12:00:00Z", "state": "active", "disabled": false,
            "hint": token_format::hint(rotated.token.expose()), "source": "store",
            "file": null, "previous_expires": "2027-01-01T12:01:00Z",
        })
    );
    assert_eq!(keptn["source"], "file");
    assert_eq!(keptn["state"], "disabled");
    assert_eq!(
        keptn["file"],
        dir.path().join("keptn-token").display().to_string()
    );
    for secret in [token.expose(), rotated.token.expose()] {
        assert!(!out.contains(secret.as_str()));
        assert!(!out.contains(&hash(secret)), "no hash in the listing");
    }
}

#[test]
fn hash_refuses_empty_and_warns_on_a_bad_checksum() {
    for empty in ["", "\n", "  \t\n"] {
        assert!(hash_checked(empty).is_err(), "{empty:?}");
    }
    let good = token_format::generate();
    let checked = hash_checked(&format!("{}\n", good.expose())).unwrap();
    assert_eq!(checked.hash, hash(good.expose()));
    assert!(checked.warning.is_none());
    assert!(hash_checked("keptn-plain-token").unwrap().warning.is_none());
    let typo = format!("gth_{}000000", "0".repeat(43));
    let checked = hash_checked(&typo).unwrap();
    assert!(checked.warning.is_some_and(|w| w.contains("checksum")));
    assert_eq!(
        checked.hash,
        hash(&typo),
        "still printed: the operator decides"
    );
}
