//! [`redact_url`]: a URL as it may appear in `/config`, a log line or an error message (SPEC §8.12).
//!
//! URLs in the config may carry secrets: a password in the userinfo (`redis://:pw@host`,
//! `http://user:pw@auth`) or an API key in the query (`?key=...`). Everything that prints a URL
//! goes through this one function, so a secret cannot leak through a message that forgot it.

/// What replaces a hidden part.
const HIDDEN: &str = "***";

/// `url` with its password, query and fragment replaced by `***`.
///
/// A userinfo with a `:` keeps its user name (`redis://admin:***@host`); one without (a bare
/// `token@host`, where the user name itself is the credential) is hidden whole. Works on text
/// that is not a valid URL too, since the error that names a bad URL must not echo it either.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                None => out.push_str(HIDDEN),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, after) = tail.split_at(path_end);
    out.push_str(path);
    if after.starts_with('?') {
        out.push('?');
        out.push_str(HIDDEN);
    }
    if after.contains('#') {
        out.push('#');
        out.push_str(HIDDEN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_queries_and_fragments_are_hidden() {
        for (url, want) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:s3cret@redis.internal:6379/0",
                "redis://:***@redis.internal:6379/0",
            ),
            (
                "rediss://admin:s3cret@redis:6380",
                "rediss://admin:***@redis:6380",
            ),
            (
                "http://user:pw@auth:8081/v1/auth?key=k3y#frag",
                "http://user:***@auth:8081/v1/auth?***#***",
            ),
            ("https://t0ken@host/x", "https://***@host/x"),
            (
                "https://login.example.com/jwks.json?api_key=abc",
                "https://login.example.com/jwks.json?***",
            ),
            ("user:pw@host/path", "user:***@host/path"),
            ("not a url", "not a url"),
            ("", ""),
            ("http://a@b@host/", "http://***@host/"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_password_never_survives(
            user in "[a-z]{0,6}",
            password in "[A-Za-z0-9]{8,16}",
            host in "[a-z]{1,8}",
            query in "[a-z0-9=&]{0,12}",
        ) {
            let marked = format!("PW{password}");
            let url = format!("redis://{user}:{marked}@{host}:6379/0?{query}&k={marked}");
            proptest::prop_assert!(!redact_url(&url).contains(&marked));
        }
    }
}
