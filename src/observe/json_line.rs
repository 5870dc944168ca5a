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
    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        quoted(self.buf, value);
    }

    /// `"key":"value"` from bytes that may not be UTF-8: invalid sequences become U+FFFD.
    pub(crate) fn bytes(&mut self, key: &'static str, value: &[u8]) {
        self.key(key);
        self.buf.push(b'"');
        escape_bytes(self.buf, value);
        self.buf.push(b'"');
    }

    /// A string, or `null` when absent.
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    /// `"key":null`.
    pub(crate) fn null(&mut self, key: &'static str) {
        self.key(key);
        self.buf.extend_from_slice(b"null");
    }

    /// `"key":123`.
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
/// once; multi-byte UTF-8 sequences are copied as they are.
pub(crate) fn escape_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        out.extend_from_slice(&bytes[start..at]);
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
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Like [`escape_str`] for bytes that may not be UTF-8: each invalid sequence becomes `\ufffd`.
pub(crate) fn escape_bytes(out: &mut Vec<u8>, value: &[u8]) {
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
