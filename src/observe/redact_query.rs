//! [`redact_query`]: a request's query string as it may appear in a log line (SPEC §7). The value
//! of every parameter whose name looks like a credential (`token`, `access_token`, `api_key`,
//! `password`, `sig`, …) becomes `REDACTED`; everything else is kept as sent, so a log line still
//! shows which page or filter was asked for.
//!
//! Names are matched after percent-decoding and lower-casing (`Access%5FToken` is `access_token`),
//! and generously: a name *containing* `token`, `secret`, `passw`, `session`, `auth`, … counts.
//! Redacting a harmless `author=` costs nothing; logging one real token costs the token.
//! Both `&` and `;` separate parameters, as some servers split on either.

use std::borrow::Cow;

/// What replaces a credential-looking value.
pub(crate) const REDACTED: &str = "REDACTED";

/// Names that are credentials on their own but too short to search for inside other names.
const EXACT: [&str; 7] = ["key", "sig", "pass", "pwd", "pw", "sid", "code_verifier"];

/// Name fragments that mark a credential wherever they appear in a name.
const CONTAINS: [&str; 11] = [
    "token",
    "passw",
    "secret",
    "session",
    "signature",
    "jwt",
    "auth",
    "credential",
    "apikey",
    "api_key",
    "api-key",
];

/// Name endings that mark a credential (`private_key`, `x-api-key`, `url_sig`).
const SUFFIXES: [&str; 3] = ["key", "_sig", "-sig"];

/// Whether a query parameter name looks like it carries a credential. `name` is raw (as sent):
/// it is percent-decoded and lower-cased here.
pub(crate) fn is_credential_name(name: &str) -> bool {
    let name = normalized(name);
    let name = name.as_bytes();
    EXACT.iter().any(|exact| name == exact.as_bytes())
        || CONTAINS.iter().any(|part| contains(name, part.as_bytes()))
        || SUFFIXES.iter().any(|end| name.ends_with(end.as_bytes()))
}

/// Substring search for short names: a byte-window scan beats `str::contains`, whose searcher
/// costs more to set up than a query name takes to scan.
fn contains(name: &[u8], part: &[u8]) -> bool {
    name.len() >= part.len() && name.windows(part.len()).any(|window| window == part)
}

/// `query` with the values of credential-looking parameters replaced by [`REDACTED`]. Borrows
/// when there is nothing to redact, which is the common case.
pub(crate) fn redact_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(name, value)| !value.is_empty() && is_credential_name(name))
    };
    if !query.split(['&', ';']).any(secret) {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
        let mut chars = tail.chars();
        match chars.next() {
            Some(separator) => out.push(separator),
            None => break,
        }
        rest = chars.as_str();
    }
    Cow::Owned(out)
}

/// `name` percent-decoded (with `+` as a space) and ASCII-lower-cased; borrowed when already so.
fn normalized(name: &str) -> Cow<'_, str> {
    if !name
        .bytes()
        .any(|b| b == b'%' || b == b'+' || b.is_ascii_uppercase())
    {
        return Cow::Borrowed(name);
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let decoded = match bytes[at] {
            b'%' => bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                out.push(byte.to_ascii_lowercase());
                at += 3;
            }
            None => {
                let byte = if bytes[at] == b'+' { b' ' } else { bytes[at] };
                out.push(byte.to_ascii_lowercase());
                at += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_redacted_and_the_rest_kept() {
        for (query, want) in [
            ("page=2&sort=name", "page=2&sort=name"),
            (
                "access_token=abc&api_key=def&x=1",
                "access_token=REDACTED&api_key=REDACTED&x=1",
            ),
            ("token=t1;page=3", "token=REDACTED;page=3"),
            (
                "ID_TOKEN=x&Password=y",
                "ID_TOKEN=REDACTED&Password=REDACTED",
            ),
            ("Access%5FToken=x", "Access%5FToken=REDACTED"),
            (
                "key=k&sig=s&signature=g",
                "key=REDACTED&sig=REDACTED&signature=REDACTED",
            ),
            (
                "apikey=a&x-api-key=b&private_key=c",
                "apikey=REDACTED&x-api-key=REDACTED&private_key=REDACTED",
            ),
            (
                "jwt=j&session=s&passwd=p&secret=q&auth=a",
                "jwt=REDACTED&session=REDACTED&passwd=REDACTED&secret=REDACTED&auth=REDACTED",
            ),
            (
                "client_secret=s&refresh_token=r",
                "client_secret=REDACTED&refresh_token=REDACTED",
            ),
            (
                "X-Amz-Credential=c&X-Amz-Signature=s&b=1",
                "X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&b=1",
            ),
            ("token=a=b=c", "token=REDACTED"),
            ("token=&token", "token=&token"),
            ("&&token=x&", "&&token=REDACTED&"),
            ("é=1&tökén=2&token=ü", "é=1&tökén=2&token=REDACTED"),
            ("keyword=rust&monkey=1", "keyword=rust&monkey=REDACTED"),
        ] {
            assert_eq!(redact_query(query), want, "query {query:?}");
        }
    }

    #[test]
    fn a_query_without_credentials_is_borrowed() {
        assert!(matches!(redact_query("a=1&b=2"), Cow::Borrowed("a=1&b=2")));
        assert!(matches!(redact_query(""), Cow::Borrowed("")));
    }

    #[test]
    fn names_are_decoded_before_matching() {
        assert!(is_credential_name("%74oken"));
        assert!(is_credential_name("API%2DKEY"));
        assert!(is_credential_name("api+key"));
        assert!(!is_credential_name("page"));
        assert!(!is_credential_name("%zz"));
    }
}
