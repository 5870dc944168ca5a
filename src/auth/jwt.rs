//! Placeholder for JWT verification (being written): refuses every JWT.

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use super::Identity;
use crate::config::JwtSettings;

/// Why a JWT was refused.
#[derive(Debug)]
pub enum JwtError {
    /// Failed validation; the reason is for logs.
    Invalid(&'static str),
    /// Expired at this time.
    Expired(OffsetDateTime),
}

/// Verifies JWTs.
#[derive(Debug)]
pub struct JwtVerifier;

impl JwtVerifier {
    /// Builds the verifier.
    ///
    /// # Errors
    /// Never, for now.
    pub fn build(_settings: &JwtSettings, _previous: Option<&JwtVerifier>) -> Result<Self, String> {
        Ok(Self)
    }

    /// Files to watch.
    pub fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Starts background refresh.
    pub fn spawn_refresh(self: &Arc<Self>) {}

    /// Verifies a token.
    ///
    /// # Errors
    /// Always, for now.
    pub async fn verify(&self, _token: &str, _now: OffsetDateTime) -> Result<Identity, JwtError> {
        Err(JwtError::Invalid("unsupported"))
    }
}

/// Three dot-separated segments.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
