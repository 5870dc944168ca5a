//! Credentials in and identity out: reading the caller's credential (`Authorization: Bearer` or
//! a configured token header), removing client-sent identity headers before anything else sees
//! the request, and writing the verified identity for upstreams.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::Identity;
use crate::http::added::AddedHeaders;

/// `x-auth-subject`
pub(crate) const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// `x-auth-roles`
pub(crate) const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
/// `x-auth-method`
pub(crate) const X_AUTH_METHOD: HeaderName = HeaderName::from_static("x-auth-method");

/// The credential a request presents, borrowed from its headers.
pub(crate) fn credential<'a>(
    headers: &'a HeaderMap,
    token_headers: &[HeaderName],
) -> Option<&'a str> {
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(bearer) {
        return Some(token);
    }
    token_headers
        .iter()
        .filter_map(|name| headers.get(name))
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .find(|t| !t.is_empty())
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Header names compared the way SPEC §4 says: case-insensitive, `_` and `-` equal.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

fn is_identity_header(name: &str, copy_headers: &[HeaderName]) -> bool {
    let prefix = name.get(..7).is_some_and(|p| same_name(p, "x-auth-"));
    prefix
        || copy_headers
            .iter()
            .any(|copy| same_name(name, copy.as_str()))
}

/// Removes every client-sent `x-auth-*` header and every `copy_headers` name, in any spelling
/// (`X-Auth-Subject`, `x_auth_subject`), so nothing but gatehouse can claim an identity upstream.
pub fn strip_identity_headers(headers: &mut HeaderMap, copy_headers: &[HeaderName]) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name.as_str(), copy_headers))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Adds `x-auth-subject`, `x-auth-roles` (comma list) and `x-auth-method` to the upstream
/// request. [`strip_identity_headers`] removed every client-sent `x-auth-*` on arrival, so the
/// request's map holds none of them.
pub fn set_identity_headers(added: &mut AddedHeaders, identity: &Identity) {
    if let Some(subject) = &identity.headers.subject {
        added.push(X_AUTH_SUBJECT, subject.clone());
    }
    if let Some(roles) = &identity.headers.roles {
        added.push(X_AUTH_ROLES, roles.clone());
    }
    added.push(
        X_AUTH_METHOD,
        HeaderValue::from_static(identity.method.as_str()),
    );
}

/// Removes `Authorization` and the token headers (`forward_credentials = false`).
pub(crate) fn remove_credentials(headers: &mut HeaderMap, token_headers: &[HeaderName]) {
    headers.remove(header::AUTHORIZATION);
    for name in token_headers {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_then_token_headers() {
        let x_token = HeaderName::from_static("x-token");
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_static("from-header"));
        assert_eq!(
            credential(&headers, std::slice::from_ref(&x_token)),
            Some("from-header")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(
            credential(&headers, std::slice::from_ref(&x_token)),
            Some("abc")
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(credential(&headers, &[]), None);
    }

    #[test]
    fn spoofed_identity_headers_are_removed_in_any_spelling() {
        let mut headers = HeaderMap::new();
        for name in [
            "x-auth-subject",
            "x_auth_subject",
            "X-AUTH-ROLES",
            "x_user",
            "x-kept",
        ] {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("admin"),
            );
        }
        strip_identity_headers(&mut headers, &[HeaderName::from_static("x-user")]);
        assert_eq!(
            headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }

    #[test]
    fn identity_headers_are_built_with_the_identity() {
        use super::super::{AuthMethod, IdentityHeaders};
        use std::sync::Arc;
        let roles: Arc<[String]> = vec!["viewer".to_owned(), "operator".to_owned()].into();
        let identity = Identity::new(Arc::from("ci-bot"), roles, AuthMethod::Token, None);
        let mut added = AddedHeaders::default();
        set_identity_headers(&mut added, &identity);
        assert_eq!(added.get(&X_AUTH_SUBJECT).unwrap(), "ci-bot");
        assert_eq!(added.get(&X_AUTH_ROLES).unwrap(), "viewer,operator");
        assert_eq!(added.get(&X_AUTH_METHOD).unwrap(), "token");
        // Not a header value, or nothing to say: the header is left out, as before.
        let odd = IdentityHeaders::of("line\nbreak", &[]);
        assert_eq!(odd, IdentityHeaders::default());
    }
}
