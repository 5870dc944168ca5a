//! Client-certificate identity (route kind `"mtls"`): the certificate the connection proved at
//! its TLS handshake ([`ClientCert`], see [`crate::tls::client_auth`]) becomes an [`Identity`],
//! with roles from the `[auth.mtls]` mapping.
//!
//! ```toml
//! [[auth.mtls.roles]]
//! subject = "spiffe://mesh/ns/*/sa/deployer"   # glob on the certificate subject
//! roles = ["operator"]
//! ```
//!
//! - **Patterns.** `*` matches any run of characters except `/` (one path segment of a SPIFFE ID
//!   or URI, or any part of a DNS name); `**` matches any run, `/` included; every other character
//!   matches itself, case-sensitively. A pattern must match the whole subject.
//! - **Every matching rule adds its roles** (union, in rule order, without duplicates), so a broad
//!   rule can grant `viewer` and a narrow one `operator`. A subject no rule matches has no roles:
//!   it passes routes without `roles`, and gets 403 on routes with them.
//! - **Order against other kinds.** On a route that accepts `"mtls"`, a verified certificate is
//!   the caller's identity and the request's own credentials are not looked at (as
//!   kube-apiserver tries client certificates before tokens): the certificate was proved at the
//!   handshake, so there is nothing to guess and nothing counts towards `failure_limit`.
//!   Without a certificate the route's other kinds are tried as usual; on a route that accepts
//!   only `"mtls"` the answer is 401 `client certificate required`, with no `WWW-Authenticate`
//!   challenge (HTTP has no scheme for "present a certificate"; a client must reconnect with one).

use super::{AuthMethod, Authenticated, Identity};
use crate::config::AuthKind;
use crate::config::mtls::MtlsSettings;
use crate::error::GatewayError;
use crate::tls::client_auth::ClientCert;

/// The `"mtls"` step of a route accepting `kinds`: `Some(Ok)` with the certificate's identity,
/// `Some(Err)` 401 when the route accepts only `"mtls"` and the connection has no certificate,
/// `None` to go on with the route's other kinds.
pub(crate) fn authenticate(
    kinds: &[AuthKind],
    cert: Option<&ClientCert>,
    settings: Option<&MtlsSettings>,
) -> Option<Result<Authenticated, GatewayError>> {
    if !kinds.contains(&AuthKind::Mtls) {
        return None;
    }
    match (cert, settings) {
        (Some(cert), Some(settings)) => Some(Ok(Authenticated {
            identity: Identity::new(
                cert.subject.clone(),
                settings.roles_for(&cert.subject),
                AuthMethod::Mtls,
                cert.not_after,
            ),
            copy: None,
            anonymous: false,
        })),
        _ if kinds.iter().all(|k| *k == AuthKind::Mtls) => {
            Some(Err(GatewayError::ClientCertRequired))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::config::file::MtlsFile;
    use crate::config::file::MtlsRoleFile;
    use crate::config::mtls::{self, SubjectPattern};
    use crate::tls::client_auth::SubjectSource;

    fn pattern(text: &str) -> SubjectPattern {
        SubjectPattern::parse(text).unwrap()
    }

    #[test]
    fn star_stays_within_a_segment_and_double_star_crosses() {
        for (pat, subject, want) in [
            (
                "spiffe://mesh/ns/*/sa/deployer",
                "spiffe://mesh/ns/prod/sa/deployer",
                true,
            ),
            (
                "spiffe://mesh/ns/*/sa/deployer",
                "spiffe://mesh/ns/a/b/sa/deployer",
                false,
            ),
            (
                "spiffe://mesh/ns/*/sa/deployer",
                "spiffe://mesh/ns//sa/deployer",
                true,
            ),
            ("spiffe://mesh/*", "spiffe://mesh/ns/prod/sa/x", false),
            ("spiffe://mesh/**", "spiffe://mesh/ns/prod/sa/x", true),
            ("spiffe://mesh/**", "spiffe://other/ns", false),
            ("*.mesh.local", "a.b.mesh.local", true),
            ("*.mesh.local", "mesh.local", false),
            ("deploy-bot", "deploy-bot", true),
            ("deploy-bot", "Deploy-bot", false),
            ("deploy-bot", "deploy-bot2", false),
            ("*", "", true),
            ("*", "a/b", false),
            ("**", "a/b", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**/sa/*", "spiffe://m/ns/x/sa/y", true),
        ] {
            assert_eq!(pattern(pat).matches(subject), want, "{pat} vs {subject}");
        }
    }

    #[test]
    fn long_subjects_match_in_bounded_time() {
        let subject = "a".repeat(1024);
        let pat = pattern(&format!("{}b", "*a".repeat(40)));
        assert!(!pat.matches(&subject));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(SubjectPattern::parse("").is_err());
        assert!(SubjectPattern::parse("a***b").is_err());
        assert!(SubjectPattern::parse("caf\u{e9}").is_err());
        assert!(SubjectPattern::parse("tab\there").is_err());
    }

    fn rule(subject: &str, roles: &[&str]) -> MtlsRoleFile {
        MtlsRoleFile {
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn every_matching_rule_adds_its_roles() {
        let raw = MtlsFile {
            roles: vec![
                rule("spiffe://mesh/**", &["viewer"]),
                rule("spiffe://mesh/ns/*/sa/deployer", &["operator", "viewer"]),
            ],
        };
        let (settings, problems) = mtls::settings(Some(&raw), true);
        assert!(problems.is_empty(), "{problems:?}");
        let settings = settings.unwrap();
        assert_eq!(
            &*settings.roles_for("spiffe://mesh/ns/prod/sa/deployer"),
            ["viewer", "operator"]
        );
        assert_eq!(
            &*settings.roles_for("spiffe://mesh/ns/prod/sa/web"),
            ["viewer"]
        );
        assert!(settings.roles_for("spiffe://other/x").is_empty());
    }

    #[test]
    fn problems_carry_key_paths() {
        let raw = MtlsFile {
            roles: vec![rule("ok", &["viewer"]), rule("", &[]), rule("x", &["a,b"])],
        };
        let (settings, problems) = mtls::settings(Some(&raw), false);
        assert!(settings.is_none());
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.mtls",
                "auth.mtls.roles[1].subject",
                "auth.mtls.roles[1].roles",
                "auth.mtls.roles[2].roles[0]"
            ]
        );
        let (defaults, problems) = mtls::settings(None, true);
        assert_eq!(defaults, Some(MtlsSettings::default()));
        assert!(problems.is_empty());
    }

    #[test]
    fn certificate_identity_or_401_or_next_kind() {
        let cert = ClientCert {
            subject: Arc::from("spiffe://mesh/a"),
            source: SubjectSource::Uri,
            not_after: None,
        };
        let settings = MtlsSettings::default();
        let only = [AuthKind::Mtls];
        let mixed = [AuthKind::Token, AuthKind::Mtls];
        let caller = authenticate(&only, Some(&cert), Some(&settings))
            .unwrap()
            .unwrap();
        assert_eq!(caller.identity.method, AuthMethod::Mtls);
        assert_eq!(&*caller.identity.subject, "spiffe://mesh/a");
        assert!(caller.identity.roles.is_empty());
        assert!(matches!(
            authenticate(&only, None, Some(&settings)),
            Some(Err(GatewayError::ClientCertRequired))
        ));
        assert!(authenticate(&mixed, None, Some(&settings)).is_none());
        assert!(authenticate(&[AuthKind::Token], Some(&cert), Some(&settings)).is_none());
    }
}
