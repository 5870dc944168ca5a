//! `[auth.mtls]`: the role mapping for client-certificate subjects, validated with the rest of
//! the config. [`crate::auth::mtls`] applies it to the certificate a connection proved.
//!
//! - **Patterns.** `*` matches any run of characters except `/` (one path segment of a SPIFFE ID
//!   or URI, or any part of a DNS name); `**` matches any run, `/` included; every other character
//!   matches itself, case-sensitively. A pattern must match the whole subject.
//! - **Every matching rule adds its roles** (union, in rule order, without duplicates).

use std::sync::Arc;

use super::file::MtlsFile;

/// A subject glob from `[[auth.mtls.roles]] subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubjectPattern {
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
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
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

    /// Whether the whole of `subject` matches. O(pattern × subject), no backtracking blow-up.
    pub(crate) fn matches(&self, subject: &str) -> bool {
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
    pub(crate) subject: SubjectPattern,
    /// Roles it grants.
    pub(crate) roles: Vec<String>,
}

/// Client-certificate settings: present exactly when `[tls] client_ca` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsSettings {
    /// `[[auth.mtls.roles]]`, in file order.
    pub roles: Vec<MtlsRule>,
}

impl MtlsSettings {
    /// The roles of every rule matching `subject`, in rule order, without duplicates.
    pub(crate) fn roles_for(&self, subject: &str) -> Arc<[String]> {
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
pub(crate) fn settings(
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
