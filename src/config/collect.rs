//! One collector for configuration problems, shared by every stage that reads configuration:
//! config validation (`validate.rs`), the token store's checks (`auth::token_store`) and the
//! runtime build (`runtime.rs`: certificates, key files, client URLs, the audit file).
//!
//! Every problem is a [`ConfigError`]: the file it is in, its key path (`tls.sni[1].key`,
//! `tokens[2].sha256`) and the reason. A stage records each problem and goes on, so one run
//! reports all of them (linkerd's `parse_config`), and nobody splits a message string back into
//! lines.
//!
//! Builders below the runtime do not know which file their settings came from, so a builder tied
//! to one setting returns a [`KeyError`] (key and reason) and the [`Collector`], which knows the
//! file, turns it into a [`ConfigError`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigErrors};

/// A problem with one key of the configuration, before the file is attached: what a builder of
/// one concern (JWT keys, the external auth client, an upstream) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Full key path, like `auth.jwt.jwks_file`.
    pub key: String,
    /// What is wrong, never containing a secret value (a file's path, never its content).
    pub reason: String,
}

impl KeyError {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same problem with its key put under `prefix` (`targets[1]` under `upstreams[2]`), for
    /// a builder that does not know where its settings sit in the file.
    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        Self {
            key: format!("{prefix}.{}", self.key),
            reason: self.reason,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for KeyError {}

/// An optional part after [`Collector::keyed`]: `Some(None)` when the part is not configured,
/// `Some(Some(part))` when it built, `None` when it failed (its error is in the collector).
pub fn optional<T>(part: Option<Option<T>>) -> Option<Option<T>> {
    part.map_or(Some(None), |built| built.map(Some))
}

/// Collects the errors and warnings found in one file, in the order found.
#[derive(Debug)]
pub struct Collector {
    file: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Collector {
    /// A collector for problems in `file`.
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a problem at `key` that fails the load.
    pub fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let error = self.at(key.into(), reason.into());
        self.errors.push(error);
    }

    /// Records a problem that does not stop loading but that an operator should see.
    pub fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let warning = self.at(key.into(), reason.into());
        self.warnings.push(warning);
    }

    /// The value of a builder tied to one key, or `None` with its error recorded.
    pub fn keyed<T>(&mut self, result: Result<T, KeyError>) -> Option<T> {
        result
            .map_err(|KeyError { key, reason }| self.error(key, reason))
            .ok()
    }

    /// The value of a stage that reads a file of its own (the token store), or `None` with every
    /// error recorded as that stage named it (its file, its keys).
    pub fn nested<T>(&mut self, result: Result<T, ConfigErrors>) -> Option<T> {
        result
            .map_err(|ConfigErrors(errors)| self.errors.extend(errors))
            .ok()
    }

    /// True once any error was recorded (warnings do not count).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `value` if no error was recorded, else every error.
    ///
    /// # Errors
    /// Every error recorded, in the order found.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Every error recorded (for a stage whose parts already said they failed).
    pub fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }

    /// The errors and the warnings, for a stage that keeps the warnings with its result.
    pub fn into_parts(self) -> (Vec<ConfigError>, Vec<ConfigError>) {
        (self.errors, self.warnings)
    }

    fn at(&self, key: String, reason: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error_with_its_file_and_key_in_order() {
        let mut check = Collector::new(Path::new("gateway.toml"));
        assert_eq!(check.keyed(Ok::<_, KeyError>(7)), Some(7));
        check.error("tls.cert", "cannot read");
        check.warn("server.trusted_proxies[0]", "trusts every address");
        assert_eq!(
            check.keyed::<()>(Err(KeyError::new("audit.path", "cannot append"))),
            None
        );
        let nested = ConfigErrors(vec![ConfigError {
            file: PathBuf::from("tokens.toml"),
            key: "tokens[2].sha256".into(),
            reason: "malformed sha256".into(),
        }]);
        assert_eq!(check.nested::<()>(Err(nested)), None);
        assert!(check.has_errors());
        let lines: Vec<String> = check
            .finish(())
            .unwrap_err()
            .errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "gateway.toml: tls.cert: cannot read",
                "gateway.toml: audit.path: cannot append",
                "tokens.toml: tokens[2].sha256: malformed sha256",
            ]
        );
    }

    #[test]
    fn warnings_alone_do_not_fail() {
        let mut check = Collector::new(Path::new("gateway.toml"));
        check.warn("server.hsts", "short");
        assert!(!check.has_errors());
        let (errors, warnings) = check.into_parts();
        assert!(errors.is_empty());
        assert_eq!(warnings.len(), 1);
    }
}
