//! Authorization: the role order (`viewer` < `operator` < `admin`, custom roles match exactly),
//! read vs write roles per route, and the global write gate.

use http::Method;

use super::{AuthMethod, Identity};
use crate::error::GatewayError;

/// Rank of a built-in role; custom roles have none.
fn rank(role: &str) -> Option<u8> {
    match role {
        "viewer" => Some(1),
        "operator" => Some(2),
        "admin" => Some(3),
        _ => None,
    }
}

/// True if holding `held` satisfies a requirement for `required`: equal names, or a higher
/// built-in role.
pub(crate) fn satisfies(held: &str, required: &str) -> bool {
    held == required || matches!((rank(held), rank(required)), (Some(h), Some(r)) if h >= r)
}

/// POST, PUT, PATCH and DELETE (anything but GET/HEAD/OPTIONS/TRACE) change state.
pub(crate) fn is_write(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// What a route requires of a caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirement<'a> {
    /// Any of these may read; empty = any authenticated caller.
    pub(crate) roles: &'a [String],
    /// Any of these may write; empty = any authenticated caller.
    pub(crate) write_roles: &'a [String],
    /// The global write gate (`[auth] write_actions`).
    pub(crate) writes_enabled: bool,
}

/// Checks the write gate and the caller's roles for `method`.
///
/// An identity from external auth carries no roles: the auth service already decided, so role
/// lists do not apply to it (the write gate still does).
///
/// # Errors
/// 403 `write actions are disabled`, or 403 `role X required` naming the lowest role that would do.
pub(crate) fn authorize(
    identity: Option<&Identity>,
    method: &Method,
    need: &Requirement<'_>,
) -> Result<(), GatewayError> {
    let write = is_write(method);
    if write && !need.writes_enabled {
        return Err(GatewayError::WritesDisabled);
    }
    let Some(identity) = identity else {
        return Ok(());
    };
    if identity.method == AuthMethod::External {
        return Ok(());
    }
    let required = if write { need.write_roles } else { need.roles };
    if required.is_empty()
        || required
            .iter()
            .any(|r| identity.roles.iter().any(|held| satisfies(held, r)))
    {
        return Ok(());
    }
    Err(GatewayError::RoleRequired(lowest(required).to_owned()))
}

/// The role to name in the error: the lowest built-in role listed, else the first.
fn lowest(required: &[String]) -> &str {
    required
        .iter()
        .filter(|r| rank(r).is_some())
        .min_by_key(|r| rank(r))
        .or_else(|| required.first())
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn identity(roles: &[&str]) -> Identity {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        Identity::new(Arc::from("ci-bot"), roles.into(), AuthMethod::Token, None)
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn role_order_and_custom_roles() {
        for (held, required, ok) in [
            ("admin", "viewer", true),
            ("admin", "operator", true),
            ("operator", "viewer", true),
            ("viewer", "operator", false),
            ("operator", "admin", false),
            ("auditor", "auditor", true),
            ("admin", "auditor", false),
            ("auditor", "viewer", false),
        ] {
            assert_eq!(satisfies(held, required), ok, "{held} for {required}");
        }
    }

    #[test]
    fn reads_use_roles_and_writes_use_write_roles() {
        let roles = strings(&["viewer"]);
        let write_roles = strings(&["operator"]);
        let need = Requirement {
            roles: &roles,
            write_roles: &write_roles,
            writes_enabled: true,
        };
        assert!(authorize(Some(&identity(&["viewer"])), &Method::GET, &need).is_ok());
        let err = authorize(Some(&identity(&["viewer"])), &Method::POST, &need).unwrap_err();
        assert_eq!(err.to_string(), "role operator required");
        assert!(authorize(Some(&identity(&["admin"])), &Method::DELETE, &need).is_ok());
    }

    #[test]
    fn write_gate_refuses_every_write() {
        let need = Requirement {
            roles: &[],
            write_roles: &[],
            writes_enabled: false,
        };
        let err = authorize(Some(&identity(&["admin"])), &Method::PUT, &need).unwrap_err();
        assert_eq!(err.to_string(), "write actions are disabled");
        assert!(authorize(None, &Method::GET, &need).is_ok());
    }
}
