//! [`JsonLine`]: a tiny writer for one flat JSON object into a reused byte buffer, for log lines
//! on the request path. It writes compact JSON (no spaces), escapes every string value, and writes
//! numbers as numbers and absent values as `null`.
//!
//! Why not `serde_json`: a log line is a flat object of strings and integers written once; a
//! `#[derive(Serialize)]` struct costs the same escaping plus the serializer's machinery, and
//! would still need a custom path for header bytes that are not UTF-8. Keys are `&'static str`
//! chosen by the caller, so they are written as given (they never need escaping).

/// Appends one JSON object's fields to a byte buffer. Start with [`JsonLine::open`], add fields,
/// close with [`JsonLine::close`]; [`JsonLine::reopen`] continues an object left open earlier.
#[derive(Debug)]
pub(crate) struct JsonLine<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> JsonLine<'b> {
    /// Starts an object at the end of `buf`.
    pub(crate) fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, first: true }
    }

    /// Continues an object that already has at least one field (its `}` not yet written).
    pub(crate) fn reopen(buf: &'b mut Vec<u8>) -> Self {
        Self { buf, first: false }
    }

    /// Ends the object with `}` and a newline.
    pub(crate) fn close(self) {
        self.buf.extend_from_slice(b"}\n");
    }

    #[inline]
    fn key(&mut self, key: &'static str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// `"key":"value"`, escaped.
    #[inline]
    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        quoted(self.buf, value);
    }

    /// `"key":"value"` for a value that never needs escaping, written as it is: one the gateway
    /// formatted (an address, a timestamp), one from a closed set of labels, or one already
    /// validated to a charset without quotes, backslashes or controls (an HTTP method token, a
    /// request id). Skips the escape scan, which costs more than the copy for short values.
    #[inline]
    pub(crate) fn plain(&mut self, key: &'static str, value: &[u8]) {
        debug_assert!(
            !value.iter().any(|&b| needs_escape(b) || !b.is_ascii()),
            "{value:?} needs escaping"
        );
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(value);
        self.buf.push(b'"');
    }

    /// `"key":"value"` from bytes that may not be UTF-8: invalid sequences become U+FFFD.
    #[inline]
    pub(crate) fn bytes(&mut self, key: &'static str, value: &[u8]) {
        self.key(key);
        self.buf.push(b'"');
        escape_bytes(self.buf, value);
        self.buf.push(b'"');
    }

    /// A string, or `null` when absent.
    #[inline]
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    /// `"key":null`.
    #[inline]
    pub(crate) fn null(&mut self, key: &'static str) {
        self.key(key);
        self.buf.extend_from_slice(b"null");
    }

    /// `"key":123`.
    #[inline]
    pub(crate) fn u64(&mut self, key: &'static str, value: u64) {
        self.key(key);
        push_u64(self.buf, value);
    }

    /// `"key":1.234`: thousandths written as a decimal number with exactly three decimals.
    pub(crate) fn thousandths(&mut self, key: &'static str, thousandths: u64) {
        self.key(key);
        push_u64(self.buf, thousandths / 1000);
        let frac = thousandths % 1000;
        self.buf.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

/// Appends the decimal digits of `value` (what `itoa` does, without a dependency).
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `"value"` with JSON escaping.
fn quoted(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    escape_str(out, value);
    out.push(b'"');
}

/// Whether a byte of a UTF-8 string must be escaped: `"`, `\`, the C0 controls and DEL (DEL is
/// legal JSON, but escaping it keeps terminals that show the log sane).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f
}

/// Appends `value` escaped for the inside of a JSON string. Runs of plain bytes are copied at
/// once, found eight bytes at a time; multi-byte UTF-8 sequences are copied as they are.
pub(crate) fn escape_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        at = next_escape(bytes, at);
        let Some(&byte) = bytes.get(at) else {
            break;
        };
        out.extend_from_slice(&bytes[start..at]);
        push_escaped(out, byte);
        at += 1;
        start = at;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The index of the first byte at or after `from` that [`needs_escape`], or `bytes.len()`.
/// Eight bytes are tested at a time, the last few too (see [`word_from`]), so a short value —
/// a method, an address — costs one word test and no loop over its bytes.
fn next_escape(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        let (start, word) = word_from(bytes, from);
        // The bytes of the word before `from` were tested already (or are the escape just
        // written): they become spaces, so neither they nor a borrow out of them can match.
        let keep = u64::MAX << (8 * (from - start));
        let found = escape_mask(word & keep | SPACES & !keep);
        if found != 0 {
            // Little-endian: the lowest set bit is the first byte in memory that matched.
            return start + (found.trailing_zeros() / 8) as usize;
        }
        from = start + 8;
    }
    bytes.len()
}

/// Eight spaces: bytes that never need escaping, to fill a word.
const SPACES: u64 = u64::from_le_bytes([b' '; 8]);

/// The word to test for the bytes from `from` on, and where it starts: the eight bytes at
/// `from`; when fewer remain, the value's last eight (starting before `from`); and a value
/// shorter than eight bytes, padded with spaces. Built in a register, never through a partial
/// copy to memory (reading that back stalls on store forwarding: it made this slower than a
/// byte loop).
fn word_from(bytes: &[u8], from: usize) -> (usize, u64) {
    let start = from.min(bytes.len().saturating_sub(8));
    match bytes.get(start..start + 8) {
        Some(chunk) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            (start, u64::from_le_bytes(word))
        }
        None => {
            let word = (bytes.iter().rev()).fold(SPACES, |word, &byte| word << 8 | u64::from(byte));
            (0, word)
        }
    }
}

/// The high bit of each byte of `word` that [`needs_escape`]. Exact for the lowest such byte
/// (the borrows of these tests only run towards higher bytes, where they may mark bytes that
/// do not match), which is all [`next_escape`] reads.
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of the word is zero: the classic test.
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    // A byte below 0x20 underflows when 0x20 is taken from it; bytes of 0x80 and up never match.
    let controls = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    controls
        | zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
        | zero_bytes(word ^ (ONES * 0x7f))
}

/// Appends the JSON escape of one byte that [`needs_escape`].
fn push_escaped(out: &mut Vec<u8>, byte: u8) {
    debug_assert!(needs_escape(byte));
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        other => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(other >> 4)],
                HEX[usize::from(other & 0xf)],
            ]);
        }
    }
}

/// Like [`escape_str`] for bytes that may not be UTF-8: each invalid sequence becomes `\ufffd`.
pub(crate) fn escape_bytes(out: &mut Vec<u8>, value: &[u8]) {
    // Valid UTF-8 (nearly always) is checked by std's word-at-a-time validator; only the rest
    // is walked chunk by chunk.
    if let Ok(text) = std::str::from_utf8(value) {
        return escape_str(out, text);
    }
    for chunk in value.utf8_chunks() {
        escape_str(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(fill: impl FnOnce(&mut JsonLine<'_>)) -> String {
        let mut buf = Vec::new();
        let mut line = JsonLine::open(&mut buf);
        fill(&mut line);
        line.close();
        String::from_utf8(buf).expect("the writer emits UTF-8 only")
    }

    #[test]
    fn control_characters_quotes_and_backslashes_are_escaped() {
        let nasty = "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{0}i\u{1f}j\u{7f}k é €";
        let text = object(|line| line.str("s", nasty));
        assert_eq!(
            text,
            "{\"s\":\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0000i\\u001fj\\u007fk é €\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["s"], nasty, "the value round-trips");
    }

    #[test]
    fn every_byte_value_round_trips_through_a_parser() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let text = object(|line| line.str("all", &all));
        assert!(
            !text.trim_end().bytes().any(|b| b < 0x20),
            "no raw control byte survives: {text:?}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["all"], all.as_str());
    }

    /// The byte-by-byte escaper the word-at-a-time one must agree with.
    fn escaped_naively(value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in value.as_bytes() {
            if needs_escape(byte) {
                push_escaped(&mut out, byte);
            } else {
                out.push(byte);
            }
        }
        out
    }

    #[test]
    fn every_special_byte_is_found_at_every_offset_of_a_word() {
        let specials = ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}'];
        // Bytes next to the specials that a word test could confuse with them.
        let neighbours = [' ', '!', '#', '[', ']', '~', '\u{80}', 'é', '€'];
        for len in 0..24 {
            for at in 0..len {
                for special in specials {
                    for neighbour in neighbours {
                        let mut text: String = std::iter::repeat_n(neighbour, len).collect();
                        let offset = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
                        text.insert(offset, special);
                        let mut fast = Vec::new();
                        escape_str(&mut fast, &text);
                        assert_eq!(fast, escaped_naively(&text), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn two_specials_are_both_found_wherever_they_sit() {
        // The second search starts right after the first escape, inside the same word or the
        // overlapping last word: neither the byte just escaped nor its borrow may count.
        for len in 0..20 {
            for first in 0..=len {
                for second in first..=len {
                    for (a, b) in [
                        ('\n', '"'),
                        ('\u{0}', '\u{1}'),
                        ('\\', '\u{7f}'),
                        ('\u{1f}', 'é'),
                    ] {
                        let mut text: Vec<char> = std::iter::repeat_n('a', len).collect();
                        text.insert(second, b);
                        text.insert(first, a);
                        let text: String = text.into_iter().collect();
                        let mut fast = Vec::new();
                        escape_str(&mut fast, &text);
                        assert_eq!(fast, escaped_naively(&text), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let raw = b"curl/8\xff\xfe \"x\"\n\xe2\x82";
        let text = object(|line| line.bytes("ua", raw));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["ua"], "curl/8\u{fffd}\u{fffd} \"x\"\n\u{fffd}");
    }

    #[test]
    fn numbers_nulls_and_decimals_are_typed() {
        let text = object(|line| {
            line.u64("n", 18_446_744_073_709_551_615);
            line.opt_str("absent", None);
            line.thousandths("a", 1_234);
            line.thousandths("b", 5);
            line.thousandths("c", 120_000);
        });
        assert_eq!(
            text,
            "{\"n\":18446744073709551615,\"absent\":null,\"a\":1.234,\"b\":0.005,\"c\":120.000}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(parsed["a"].is_f64() && parsed["absent"].is_null());
    }

    #[test]
    fn a_reopened_object_continues_with_a_comma() {
        let mut buf = Vec::new();
        JsonLine::open(&mut buf).u64("a", 1);
        let mut line = JsonLine::reopen(&mut buf);
        line.u64("b", 2);
        line.close();
        assert_eq!(buf, b"{\"a\":1,\"b\":2}\n");
    }
}
