//! How gatehouse holds secrets in memory: [`Secret<T>`] prints `<redacted>` under `Debug` and
//! `Display` and has no `Serialize`, so a token, key or password cannot reach a log line, an error
//! body, `/config` or a panic message by accident; reading it takes an explicit
//! [`Secret::expose`]. [`ct_eq`] compares secret bytes in constant time.
//!
//! Hashing secrets at rest is the token store's job; zeroing memory on drop is not attempted
//! (no `unsafe`, no extra crate), so the guarantee here is about where secrets get *printed*.

use std::fmt;

/// What [`Secret`]'s `Debug` and `Display` print instead of the value.
const REDACTED: &str = "<redacted>";

/// A value that must never be printed. `Debug` and `Display` show `<redacted>`; there is no
/// `Serialize`, `Deref` or `PartialEq`, so every read of the value is a visible
/// [`expose`](Secret::expose) call (compare with [`ct_eq`]).
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value. Call it where the value is really needed (hashing, comparing, printing a
    /// freshly generated token once), never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// `true` when `a == b`, in time that depends only on the lengths, never on where the bytes
/// differ: every byte pair is XORed and OR-folded, with no early exit on content. Unequal lengths
/// return `false` at once (a length is not the secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:#?}"), "<redacted>");
    }

    #[test]
    fn redacted_inside_a_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)] // only printed
        struct Holder {
            name: &'static str,
            key: Secret<Vec<u8>>,
        }
        let holder = Holder {
            name: "jwt",
            key: Secret::new(b"top secret".to_vec()),
        };
        let printed = format!("{holder:?}");
        assert!(printed.contains("jwt"));
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("top secret"));
        assert!(!printed.contains("116")); // no byte values either
    }

    #[test]
    fn expose_returns_the_value() {
        let secret = Secret::from(String::from("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret.clone().expose(), "hunter2");
    }

    #[test]
    fn ct_eq_cases() {
        for (a, b, want) in [
            (&b""[..], &b""[..], true),
            (b"abc", b"abc", true),
            (b"abc", b"abd", false),
            (b"abc", b"xbc", false),
            (b"abc", b"ab", false),
            (b"ab", b"abc", false),
            (b"", b"a", false),
        ] {
            assert_eq!(ct_eq(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn ct_eq_agrees_with_eq_on_every_single_bit_flip() {
        let a = [0x5au8; 32];
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq(&a, &b));
            }
        }
        assert!(ct_eq(&a, &a));
    }
}
