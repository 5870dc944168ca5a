//! Reading a config: [`load`] and [`parse`] run the two stages (`file`'s serde mirror, then
//! `validate`) and turn TOML syntax errors into [`ConfigErrors`]. A file of its own so that
//! `config/mod.rs` (the types) and `validate.rs` (which builds them) do not import each other.

use std::path::Path;

use super::{Config, ConfigError, ConfigErrors};
use super::{diagnose, file, validate};

/// Reads and validates `path`, and logs its [`Config::warnings`] (at start and on every reload).
///
/// # Errors
/// Every problem found: unreadable file, TOML syntax, unknown keys, bad values, dangling names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let config = load_quiet(path)?;
    for warning in &config.warnings {
        tracing::warn!(%warning, "config warning");
    }
    Ok(config)
}

/// [`load`] without logging the warnings, for `gatehouse check`, which prints them itself.
///
/// # Errors
/// As [`load`].
pub fn load_quiet(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            key: String::new(),
            reason: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Validates `text` as if read from `path` (relative paths resolve against its folder).
///
/// # Errors
/// Every problem found.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let collected = diagnose::collect::<file::GatewayFile>(path, text)?;
    let built = validate::build(path, collected.raw, collected.unknown);
    diagnose::merge(built, collected.type_errors)
}
