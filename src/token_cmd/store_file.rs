//! The store file itself, shared by every token command: the lock around a read–check–write
//! cycle, reading and parsing the text, and the checked atomic write.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::edit::StoreDocument;
use crate::auth::token_store::{self, TokenSpec};
use crate::files::write_atomically;

/// Permissions of the store file: hashes only, but still nobody else's business.
const STORE_MODE: u32 = 0o600;

/// An exclusive lock on `<store>.lock`, released on drop.
pub(super) struct StoreLock(File);

impl StoreLock {
    pub(super) fn acquire(store: &Path) -> anyhow::Result<Self> {
        let path = lock_path(store);
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{}: cannot create folder", folder.display()))?;
        }
        // Private like the store itself (SPEC §8.9): it sits beside it and names it.
        let file = crate::files::with_mode(
            OpenOptions::new().create(true).truncate(false).write(true),
            STORE_MODE,
        )
        .open(&path)
        .with_context(|| format!("{}: cannot open lock file", path.display()))?;
        file.lock()
            .with_context(|| format!("{}: cannot lock", path.display()))?;
        Ok(Self(file))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first just makes it prompt.
        let _ = self.0.unlock();
    }
}

pub(super) fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The store's text, or `None` when the file does not exist.
pub(super) fn read_store(store: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(store) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: cannot read: {e}", store.display())),
    }
}

pub(super) fn parse_store(text: &str, store: &Path) -> anyhow::Result<Vec<TokenSpec>> {
    token_store::parse(text, store).map_err(anyhow::Error::new)
}

/// Writes the edited `document` to `store` if it parses to exactly `expected`: an edit that
/// would change any other entry (or fail to make its own) writes nothing.
pub(super) fn write_checked(
    store: &Path,
    document: &StoreDocument,
    expected: &[TokenSpec],
) -> anyhow::Result<()> {
    let text = document.to_string();
    if !token_store::parse(&text, store).is_ok_and(|specs| specs == expected) {
        bail!(
            "{}: the edited store would not hold the expected entries; nothing written",
            store.display()
        );
    }
    write_atomically(store, text.as_bytes(), STORE_MODE).map_err(anyhow::Error::msg)
}
