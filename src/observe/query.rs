//! [`redact_query`]: a request target as logs may show it (SPEC §7): the path as sent and the
//! query with the values of credential-looking keys replaced by `REDACTED`.
//!
//! Clients put credentials in queries (`?access_token=…` for WebSockets, `?api_key=…` from
//! scripts); the key decides, case-insensitively and with `-` treated like `_`, so `Access-Token`
//! and `ACCESS_TOKEN` are caught too. A key that merely contains a credential word
//! (`x_api_key`, `session_id`, `refresh_token`) counts as well: hiding a harmless value costs
//! little, printing a secret cannot be undone.

use std::borrow::Cow;

/// What replaces a hidden value.
pub const REDACTED: &str = "REDACTED";

/// Words that mark a query key as credential-looking when the key is, starts with, or ends with
/// one of them (compared lower-case, `-` read as `_`).
const CREDENTIAL_WORDS: [&str; 16] = [
    "token",
    "access_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "session",
    "sig",
    "signature",
    "jwt",
    "auth",
    "authorization",
];

/// `path_and_query` with the values of credential-looking query keys replaced by [`REDACTED`].
/// Borrows when nothing needs hiding (the common case: no query).
pub fn redact_query(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    if !query.split('&').any(hides) {
        return Cow::Borrowed(path_and_query);
    }
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if hides(pair) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

/// Whether `pair` (`key=value`) has a value and a credential-looking key.
fn hides(pair: &str) -> bool {
    let Some((key, value)) = pair.split_once('=') else {
        return false;
    };
    !value.is_empty() && is_credential_key(key)
}

/// Whether a (possibly percent-encoded) query key looks like it names a credential.
pub fn is_credential_key(key: &str) -> bool {
    let key = percent_decode_lossy(key)
        .to_ascii_lowercase()
        .replace('-', "_");
    CREDENTIAL_WORDS.iter().any(|word| {
        key == *word
            || key
                .strip_prefix(word)
                .is_some_and(|rest| rest.starts_with('_'))
            || key
                .strip_suffix(word)
                .is_some_and(|rest| rest.ends_with('_') || rest.ends_with("api"))
    })
}

/// Decodes `%XX` escapes (so `access%5Ftoken` cannot slip past); invalid escapes stay as written.
fn percent_decode_lossy(text: &str) -> Cow<'_, str> {
    if !text.contains('%') && !text.contains('+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_hidden_and_the_rest_kept() {
        for (target, want) in [
            ("/api/x", "/api/x"),
            ("/api/x?page=2&sort=asc", "/api/x?page=2&sort=asc"),
            ("/ws?access_token=abc", "/ws?access_token=REDACTED"),
            (
                "/x?api_key=k1&page=2&Password=p&TOKEN=t",
                "/x?api_key=REDACTED&page=2&Password=REDACTED&TOKEN=REDACTED",
            ),
            ("/x?x-api-key=k&sig=s", "/x?x-api-key=REDACTED&sig=REDACTED"),
            (
                "/x?session_id=s&id_token=j",
                "/x?session_id=REDACTED&id_token=REDACTED",
            ),
            ("/x?access%5Ftoken=abc", "/x?access%5Ftoken=REDACTED"),
            ("/x?token=&key", "/x?token=&key"),
            ("/x?monkey=1&tokenizer=2", "/x?monkey=1&tokenizer=2"),
            ("/x?a=1&&secret=s=t", "/x?a=1&&secret=REDACTED"),
        ] {
            assert_eq!(redact_query(target), want, "{target}");
        }
    }

    #[test]
    fn nothing_to_hide_borrows() {
        assert!(matches!(redact_query("/a?b=c"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        #[test]
        fn a_marked_credential_never_survives(
            key in proptest::sample::select(vec!["token", "Access-Token", "api_key", "apikey",
                "password", "client_secret", "session", "signature", "jwt", "auth", "key"]),
            value in "[A-Za-z0-9._~-]{4,20}",
            before in "[a-z]{1,5}=[a-z0-9]{0,5}",
        ) {
            let marked = format!("SECRET{value}");
            let target = format!("/p?{before}&{key}={marked}&z=1");
            proptest::prop_assert!(!redact_query(&target).contains(&marked));
        }
    }
}
