//! `--store` / `--config`: where the token commands and `check` find the token store.

use std::path::PathBuf;

use crate::config::{self, Config};

/// Where the token store is: `--store`, else the store named in the config, else `tokens.toml`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Token store file.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Config whose `[auth] tokens` names the store (used when `--store` is absent).
    #[arg(short, long, default_value = "gateway.toml")]
    config: PathBuf,
}

impl StoreArgs {
    pub(super) fn path(&self) -> PathBuf {
        if let Some(store) = &self.store {
            return store.clone();
        }
        config::load(&self.config)
            .ok()
            .and_then(|c| c.auth.tokens)
            .unwrap_or_else(|| PathBuf::from("tokens.toml"))
    }

    /// The config, when it exists and loads (its warnings are `check`'s to print, not ours).
    pub(super) fn config(&self) -> Option<anyhow::Result<Config>> {
        self.config.exists().then(|| {
            config::load_quiet(&self.config).map_err(|_| {
                anyhow::anyhow!(
                    "{} does not load (see `gatehouse check`)",
                    self.config.display()
                )
            })
        })
    }
}
