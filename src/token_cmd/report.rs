//! What the token commands tell the operator beyond doing the job: `token list --json`, the
//! checks on `token hash` input, and the warning `token create` gives for a role nothing uses.

use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{hash, parse_store, read_store};
use crate::auth::token_format::{self, Shape};
use crate::auth::token_store::{TokenSource, TokenSpec};
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
mod tests {
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
}
