//! [`SessionKeys`]: the HMAC key read from `secret_file`, and the key it replaced. Rebuilt on
//! every reload from the file and from the previous runtime's keys: when the file's key changed,
//! the old key is kept as `previous` with the moment it was replaced, and cookies it signed are
//! accepted for one `ttl` after that — by then every session it signed has ended anyway.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::collect::KeyError;
use crate::secret::{Secret, ct_eq};

/// Shortest accepted key (after trimming trailing whitespace): 256 bits, HMAC-SHA256's strength.
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// The signing key and, after a rotation, the one before it.
#[derive(Debug, Clone)]
pub(super) struct SessionKeys {
    current: Secret<Vec<u8>>,
    previous: Option<(Secret<Vec<u8>>, Instant)>,
}

impl SessionKeys {
    /// Reads the key from `file`, carrying over `before`'s keys: an unchanged key keeps the
    /// previous rotation; a changed one makes `before`'s current key the previous one, as of now.
    ///
    /// # Errors
    /// The file is unreadable or holds fewer than [`MIN_KEY_BYTES`] bytes; the message names the
    /// file, never its content.
    pub(super) fn load(file: &Path, before: Option<&SessionKeys>) -> Result<Self, KeyError> {
        const KEY: &str = "auth.session.secret_file";
        let bytes = std::fs::read(file)
            .map_err(|e| KeyError::new(KEY, format!("{}: cannot read: {e}", file.display())))?;
        Self::from_bytes(bytes, before, Instant::now())
            .map_err(|reason| KeyError::new(KEY, format!("{}: {reason}", file.display())))
    }

    fn from_bytes(
        mut bytes: Vec<u8>,
        before: Option<&SessionKeys>,
        now: Instant,
    ) -> Result<Self, String> {
        // A key written with `echo` ends in a newline that the operator does not think of as key.
        let trimmed = bytes.trim_ascii_end().len();
        bytes.truncate(trimmed);
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "holds {} bytes; a session key needs at least {MIN_KEY_BYTES} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
                bytes.len()
            ));
        }
        let current = Secret::new(bytes);
        let previous = match before {
            Some(before) if ct_eq(before.current.expose(), current.expose()) => {
                before.previous.clone()
            }
            Some(before) => Some((before.current.clone(), now)),
            None => None,
        };
        Ok(Self { current, previous })
    }

    /// The key new cookies are signed with.
    pub(crate) fn current(&self) -> &[u8] {
        self.current.expose()
    }

    /// Keys a presented cookie may be signed with at `now`: the current one, and the previous
    /// one until `ttl` after it was replaced.
    pub(crate) fn accepted(&self, now: Instant, ttl: Duration) -> impl Iterator<Item = &[u8]> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, replaced)| now.saturating_duration_since(*replaced) < ttl)
            .map(|(key, _)| key.expose().as_slice());
        std::iter::once(self.current.expose().as_slice()).chain(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn key(byte: u8) -> Vec<u8> {
        vec![byte; MIN_KEY_BYTES]
    }

    #[test]
    fn short_keys_are_refused_and_trailing_newlines_trimmed() {
        let error = SessionKeys::from_bytes(b"short\n".to_vec(), None, Instant::now()).unwrap_err();
        assert!(error.contains("holds 5 bytes"), "{error}");
        assert!(!error.contains("short"), "never echoes the key: {error}");
        let mut with_newline = key(b'a');
        with_newline.push(b'\n');
        let keys = SessionKeys::from_bytes(with_newline, None, Instant::now()).unwrap();
        assert_eq!(keys.current(), key(b'a').as_slice());
    }

    #[test]
    fn a_rotation_keeps_the_old_key_for_one_ttl() {
        let start = Instant::now();
        let first = SessionKeys::from_bytes(key(1), None, start).unwrap();
        assert_eq!(first.accepted(start, TTL).count(), 1);
        let rotated = SessionKeys::from_bytes(key(2), Some(&first), start).unwrap();
        let accepted: Vec<&[u8]> = rotated.accepted(start, TTL).collect();
        assert_eq!(accepted, [key(2).as_slice(), key(1).as_slice()]);
        // A reload with the same key keeps the rotation and its clock.
        let reloaded = SessionKeys::from_bytes(key(2), Some(&rotated), start + TTL / 2).unwrap();
        assert_eq!(reloaded.accepted(start + TTL / 2, TTL).count(), 2);
        assert_eq!(
            reloaded.accepted(start + TTL, TTL).count(),
            1,
            "gone after one ttl"
        );
    }
}
