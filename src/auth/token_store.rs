//! The token store (`tokens.toml`, SPEC §3), in two parts:
//!
//! - [`parse`](parse()) (`parse.rs`): the text → checked [`TokenSpec`]s, every problem
//!   collected with its key (`tokens[2].rolez`). Pure.
//! - the index (`index.rs`): [`TokenStore`], the entries keyed by the SHA-256 of their token,
//!   answering [`lookup`](TokenStore::lookup) in one hash-map probe; built from the specs after
//!   reading every `file =` token.
//!
//! [`load`] joins them: read the store file, parse, build. Writing the store is
//! `crate::token_cmd`'s job; watching it is the reloader's.
//!
//! The store never holds a usable token. `sha256` entries are hashes already; `file =` tokens
//! (raw tokens in mounted Kubernetes Secrets) are read into a `Secret`, hashed, and dropped.
//! Errors name the file, the entry (`tokens[2].file`) and the problem — never a token, and never
//! a malformed `sha256` value either (operators sometimes paste the raw token there).

mod index;
mod parse;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::config::ConfigErrors;

pub use index::{Lookup, TokenStore};
pub(crate) use index::{TokenState, hash_token};
pub use parse::{Previous, TokenSource, TokenSpec, parse};
pub(crate) use parse::{validate_id, validate_role};

/// Reads the store at `path` and every `file =` token it names.
///
/// A missing store file is an empty store (logged as a warning), so a gateway can start before
/// the first `token create`; an unreadable or invalid one is an error.
///
/// # Errors
/// Every problem found: unreadable store, syntax, unknown keys, bad values, duplicate ids, token
/// files that are missing, unreadable or empty, and two entries with the same token.
pub fn load(path: &Path) -> Result<TokenStore, ConfigErrors> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                store = %path.display(),
                "token store not found; starting with no tokens"
            );
            return index::build(path, Vec::new());
        }
        Err(e) => {
            return Err(ConfigErrors(vec![parse::error(
                path,
                "",
                format!("cannot read: {e}"),
            )]));
        }
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigErrors(vec![parse::error(path, "", "not valid UTF-8".to_owned())]))?;
    let specs = parse(text, path)?;
    index::build(path, specs)
}
