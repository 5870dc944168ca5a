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

use std::sync::Arc;

use super::{AuthMethod, Authenticated, Identity};
use crate::config::AuthKind;
use crate::config::file::MtlsFile;
use crate::error::GatewayError;
use crate::tls::client_auth::ClientCert;

/// A subject glob from `[[auth.mtls.roles]] subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Bytes that must appear as written.
    Literal(String),
    /// `*`: any run without `/`.
    Segment,
    /// `**`: any run.
    Any,
}

impl SubjectPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// Empty, not printable ASCII, or three `*` in a row.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!(
                "{text:?} is not printable ASCII (certificate subjects are)"
            ));
        }
        if text.contains("***") {
            return Err(format!(
                "{text:?}: use * (within a segment) or ** (across /), not ***"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("**") {
                parts.push(Part::Any);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                parts.push(Part::Segment);
                rest = after;
            } else {
                let end = rest.find('*').unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `subject` matches. O(pattern × subject), no backtracking blow-up.
    pub fn matches(&self, subject: &str) -> bool {
        let subject = subject.as_bytes();
        // reachable[i]: the parts so far can end exactly before subject[i].
        let mut reachable = vec![false; subject.len() + 1];
        reachable[0] = true;
        for part in &self.parts {
            let mut next = vec![false; subject.len() + 1];
            match part {
                Part::Literal(literal) => {
                    let literal = literal.as_bytes();
                    for start in (0..=subject.len()).filter(|&i| reachable[i]) {
                        if subject[start..].starts_with(literal) {
                            next[start + literal.len()] = true;
                        }
                    }
                }
                Part::Segment | Part::Any => {
                    let crosses = matches!(part, Part::Any);
                    let mut open = false;
                    for i in 0..=subject.len() {
                        open |= reachable[i];
                        next[i] = open;
                        if i < subject.len() && subject[i] == b'/' && !crosses {
                            open = false;
                        }
                    }
                }
            }
            reachable = next;
        }
        reachable[subject.len()]
    }
}

/// One `[[auth.mtls.roles]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsRule {
    /// Which subjects it applies to.
    pub subject: SubjectPattern,
    /// Roles it grants.
    pub roles: Vec<String>,
}

/// Client-certificate settings: present exactly when `[tls] client_ca` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsSettings {
    /// `[[auth.mtls.roles]]`, in file order.
    pub roles: Vec<MtlsRule>,
}

impl MtlsSettings {
    /// The roles of every rule matching `subject`, in rule order, without duplicates.
    pub fn roles_for(&self, subject: &str) -> Arc<[String]> {
        let mut roles: Vec<String> = Vec::new();
        for rule in self.roles.iter().filter(|r| r.subject.matches(subject)) {
            for role in &rule.roles {
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
        }
        roles.into()
    }
}

/// Validates `[auth.mtls]` given whether `[tls] client_ca` is set. Returns the settings (present
/// exactly when `client_ca` is) and every problem as `(key, reason)`.
pub fn settings(
    raw: Option<&MtlsFile>,
    client_ca: bool,
) -> (Option<MtlsSettings>, Vec<(String, String)>) {
    let mut problems = Vec::new();
    if raw.is_some() && !client_ca {
        problems.push((
            "auth.mtls".to_owned(),
            "needs [tls] client_ca (the CA bundle client certificates are verified against)"
                .to_owned(),
        ));
    }
    let mut rules = Vec::new();
    for (i, rule) in raw.iter().flat_map(|r| r.roles.iter()).enumerate() {
        let key = format!("auth.mtls.roles[{i}]");
        let subject = SubjectPattern::parse(&rule.subject)
            .map_err(|reason| problems.push((format!("{key}.subject"), reason)));
        if rule.roles.is_empty() {
            problems.push((
                format!("{key}.roles"),
                "is empty: name the roles this rule grants".into(),
            ));
        }
        for (j, role) in rule.roles.iter().enumerate() {
            if role.trim().is_empty() || role.contains(',') {
                problems.push((
                    format!("{key}.roles[{j}]"),
                    format!("invalid role name {role:?}"),
                ));
            }
        }
        if let Ok(subject) = subject {
            rules.push(MtlsRule {
                subject,
                roles: rule.roles.clone(),
            });
        }
    }
    (client_ca.then_some(MtlsSettings { roles: rules }), problems)
}

/// The `"mtls"` step of a route accepting `kinds`: `Some(Ok)` with the certificate's identity,
/// `Some(Err)` 401 when the route accepts only `"mtls"` and the connection has no certificate,
/// `None` to go on with the route's other kinds.
pub fn authenticate(
    kinds: &[AuthKind],
    cert: Option<&ClientCert>,
    settings: Option<&MtlsSettings>,
) -> Option<Result<Authenticated, GatewayError>> {
    if !kinds.contains(&AuthKind::Mtls) {
        return None;
    }
    match (cert, settings) {
        (Some(cert), Some(settings)) => Some(Ok(Authenticated {
            identity: Identity {
                subject: cert.subject.clone(),
                roles: settings.roles_for(&cert.subject),
                method: AuthMethod::Mtls,
                expires: cert.not_after,
            },
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
    use crate::config::file::MtlsRoleFile;
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
        let (settings, problems) = settings(Some(&raw), true);
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
        let (settings, problems) = settings(Some(&raw), false);
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
        let (defaults, problems) = super::settings(None, true);
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
