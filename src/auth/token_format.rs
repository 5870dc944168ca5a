//! The shape of tokens gatehouse generates: `gth_` + 43 base62 characters + a 6-character
//! checksum (SPEC §3). Owns generating them ([`generate`]), telling a mistyped one apart before
//! any lookup ([`shape`]) and the human hint ([`hint`]). Storing and looking tokens up is
//! [`super::token_store`]'s job.
//!
//! The checksum is CRC32/IEEE (reflected polynomial `0xEDB88320`, the zlib/PNG one) of the 43
//! body characters, written in base62 (`0-9A-Za-z`), most significant digit first, left-padded
//! with `0` to 6 characters (62^6 > 2^32). It lets a typo be refused without touching the store
//! and lets secret scanners recognise a leaked token; it is not a security feature (the 43 random
//! characters, about 256 bits, are). The CRC is hand-written (a `const` table) to avoid a crate
//! for fifteen lines.

use rand::Rng;

use crate::secret::Secret;

/// Every generated token starts with this.
pub(crate) const PREFIX: &str = "gth_";
/// Random base62 characters after the prefix.
const BODY_LEN: usize = 43;
/// Checksum characters after the body.
const CHECKSUM_LEN: usize = 6;
/// Length of a generated token in bytes (all ASCII).
pub(crate) const TOKEN_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// Characters shown by [`hint`].
const HINT_CHARS: usize = 4;

/// The base62 alphabet, in digit order.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC32/IEEE lookup table, built at compile time.
const CRC_TABLE: [u32; 256] = crc_table();

/// What a presented token string looks like, decided without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A well-formed gatehouse token (prefix, length, alphabet and checksum all right).
    Gatehouse,
    /// Starts with `gth_` but the length, alphabet or checksum is wrong: refuse it unlooked-up.
    BadChecksum,
    /// Anything else (for example a Keptn token): still looked up by hash.
    Other,
}

/// Generates a new token from rand's OS-seeded CSPRNG (`rand::rng()`). Each body character is
/// drawn uniformly (no modulo bias) from the 62-character alphabet.
pub fn generate() -> Secret<String> {
    let mut rng = rand::rng();
    let body: Vec<u8> = (0..BODY_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect();
    let mut token = String::with_capacity(TOKEN_LEN);
    token.push_str(PREFIX);
    token.extend(body.iter().map(|&b| char::from(b)));
    token.extend(checksum(&body).iter().map(|&b| char::from(b)));
    Secret::new(token)
}

/// Classifies `token` (see [`Shape`]). Allocation-free; meant for the request path.
pub fn shape(token: &str) -> Shape {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return Shape::Other;
    };
    let rest = rest.as_bytes();
    if rest.len() != BODY_LEN + CHECKSUM_LEN {
        return Shape::BadChecksum;
    }
    let (body, sum) = rest.split_at(BODY_LEN);
    if body.iter().all(u8::is_ascii_alphanumeric) && sum == checksum(body) {
        Shape::Gatehouse
    } else {
        Shape::BadChecksum
    }
}

/// The last 4 characters of `token` (all of it when shorter), for humans to tell tokens apart.
pub(crate) fn hint(token: &str) -> String {
    let start = token
        .char_indices()
        .rev()
        .nth(HINT_CHARS - 1)
        .map_or(0, |(i, _)| i);
    token[start..].to_owned()
}

/// The 6 checksum characters for `body`.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32(body);
    let mut digits = [ALPHABET[0]; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits
}

/// CRC32/IEEE (init `!0`, reflected, final XOR `!0`): `crc32(b"123456789") == 0xCBF43926`.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        CRC_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8)
    })
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Computed independently with Python's `zlib.crc32` and a base62 encoder.
    const KNOWN: [(&str, u32, &str); 3] = [
        (
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
            0xaa86_6f5c,
            "37cCQ0",
        ),
        (
            "0000000000000000000000000000000000000000000",
            0x7849_568f,
            "2CZclj",
        ),
        (
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            0x1b32_9c2e,
            "0UsatS",
        ),
    ];

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn known_vectors() {
        for (body, crc, sum) in KNOWN {
            assert_eq!(body.len(), BODY_LEN);
            assert_eq!(crc32(body.as_bytes()), crc, "{body}");
            assert_eq!(&checksum(body.as_bytes()), sum.as_bytes(), "{body}");
            assert_eq!(shape(&format!("gth_{body}{sum}")), Shape::Gatehouse);
        }
    }

    #[test]
    fn checksum_is_left_padded() {
        // 0x1b329c2e = 456_334_382 < 62^5, so the leading digit is the pad.
        assert_eq!(&checksum(KNOWN[2].0.as_bytes()), b"0UsatS");
    }

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        for token in [&a, &b] {
            let token = token.expose();
            assert_eq!(token.len(), TOKEN_LEN);
            assert!(token.starts_with(PREFIX));
            assert!(
                token[PREFIX.len()..]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric())
            );
            assert_eq!(shape(token), Shape::Gatehouse);
        }
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn shapes() {
        let good = format!("gth_{}{}", KNOWN[0].0, KNOWN[0].2);
        let mut wrong_sum = good.clone();
        wrong_sum.replace_range(good.len() - 1.., "1");
        let mut typo = good.clone();
        typo.replace_range(10..11, "X");
        let bad_char = format!("gth_{}-{}", &KNOWN[0].0[1..], KNOWN[0].2);
        for (token, want) in [
            (good.as_str(), Shape::Gatehouse),
            (wrong_sum.as_str(), Shape::BadChecksum),
            (typo.as_str(), Shape::BadChecksum),
            (bad_char.as_str(), Shape::BadChecksum),
            (&good[..good.len() - 1], Shape::BadChecksum),
            ("gth_", Shape::BadChecksum),
            ("gth_short", Shape::BadChecksum),
            ("", Shape::Other),
            ("keptn-plain-random-token", Shape::Other),
            ("GTH_whatever", Shape::Other),
            ("gth", Shape::Other),
        ] {
            assert_eq!(shape(token), want, "{token}");
        }
    }

    #[test]
    fn non_ascii_after_the_prefix_is_bad_not_a_panic() {
        let token = format!("gth_{}é{}", &KNOWN[0].0[..41], KNOWN[0].2);
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(shape(&token), Shape::BadChecksum);
    }

    #[test]
    fn hints() {
        for (token, want) in [
            ("gth_abcdefWXYZ", "WXYZ"),
            ("abcd", "abcd"),
            ("abc", "abc"),
            ("", ""),
            ("xxééé€", "ééé€"),
        ] {
            assert_eq!(hint(token), want, "{token}");
        }
    }

    proptest! {
        #[test]
        fn any_wrong_checksum_is_bad(
            body in "[0-9A-Za-z]{43}",
            sum in "\\PC{0,8}",
        ) {
            let right = checksum(body.as_bytes());
            prop_assume!(sum.as_bytes() != right);
            prop_assert_eq!(shape(&format!("gth_{body}{sum}")), Shape::BadChecksum);
        }

        #[test]
        fn any_wrong_base62_checksum_is_bad(
            body in "[0-9A-Za-z]{43}",
            sum in "[0-9A-Za-z]{6}",
        ) {
            prop_assume!(sum.as_bytes() != checksum(body.as_bytes()));
            prop_assert_eq!(shape(&format!("gth_{body}{sum}")), Shape::BadChecksum);
        }

        #[test]
        fn any_gth_string_is_gatehouse_only_with_its_checksum(rest in "\\PC{0,60}") {
            let token = format!("gth_{rest}");
            let valid = rest.len() == BODY_LEN + CHECKSUM_LEN
                && rest.is_char_boundary(BODY_LEN)
                && rest[..BODY_LEN].bytes().all(|b| b.is_ascii_alphanumeric())
                && rest.as_bytes()[BODY_LEN..] == checksum(&rest.as_bytes()[..BODY_LEN]);
            let want = if valid { Shape::Gatehouse } else { Shape::BadChecksum };
            prop_assert_eq!(shape(&token), want);
        }

        #[test]
        fn without_the_prefix_is_other(token in "\\PC{0,60}") {
            prop_assume!(!token.starts_with(PREFIX));
            prop_assert_eq!(shape(&token), Shape::Other);
        }
    }
}
