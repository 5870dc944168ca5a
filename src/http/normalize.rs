//! Path normalisation before routing (SPEC §4): decode percent-escapes of unreserved characters
//! only, upper-case the hex of the escapes that stay, resolve `.` and `..` segments, and collapse
//! duplicate slashes. So `/public/../admin`, `/public/%2e%2e/admin` and `//admin` all route as
//! `/admin`, while `helm%2Fcarts.tgz` stays one segment and reaches the upstream still escaped.
//!
//! The normalised path is also what goes upstream, so what was authorised is what is served.

use std::borrow::Cow;

/// The path cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (authority-form or asterisk-form request targets).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-escape in path")]
    BadEscape,
}

/// Normalises a request path (no query). Borrows when the path is already normal.
///
/// # Errors
/// [`PathError`] for a path that is not absolute or holds a broken escape.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// True when nothing needs changing: no escapes, no empty or dot segments.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    !bytes.contains(&b'%')
        && !path.contains("//")
        && !bytes
            .windows(2)
            .enumerate()
            .any(|(i, pair)| pair == b"/." && is_dot_segment(&bytes[i + 1..]))
}

/// `.` or `..` up to the next `/` or the end.
fn is_dot_segment(rest: &[u8]) -> bool {
    let segment = rest.split(|b| *b == b'/').next().unwrap_or_default();
    segment == b"." || segment == b".."
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` when it names an unreserved character; other escapes stay, with upper-case hex.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Copy the text up to the next escape whole: pushing byte by byte would re-encode
            // every non-ASCII character as Latin-1 (`//ы` became `/Ñ\u{8b}`; found by fuzzing).
            let end = path[i..].find('%').map_or(path.len(), |at| i + at);
            out.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = high << 4 | low;
        if is_unreserved(decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(high)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(low)]));
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments dropped. `..` never climbs above `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/api",
            "/api/v1/project",
            "/a/.hidden",
            "/a/b.",
            "/a/..b",
            "/x/",
        ] {
            assert!(
                matches!(normalize_path(path), Ok(Cow::Borrowed(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn table() {
        for (input, want) in [
            ("/public/../private", "/private"),
            ("/public/%2e%2e/private", "/private"),
            ("/public/%2E%2E/private", "/private"),
            ("/public/.%2e/private", "/private"),
            ("//api///x", "/api/x"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%61pi", "/api"),
            ("/p/helm%2Fcarts.tgz", "/p/helm%2Fcarts.tgz"),
            ("/p/helm%2fcarts.tgz", "/p/helm%2Fcarts.tgz"),
            ("/a%20b", "/a%20b"),
            ("/a%7Eb", "/a~b"),
            ("/x/%2e", "/x/"),
        ] {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn broken_input_is_refused() {
        assert_eq!(normalize_path("api"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize_path("/a%2"), Err(PathError::BadEscape));
    }

    #[test]
    fn non_ascii_text_is_kept_as_it_is() {
        assert_eq!(normalize_path("//ы").unwrap(), "/ы");
        assert_eq!(
            normalize_path("/caf%C3%A9/./é//x").unwrap(),
            "/caf%C3%A9/é/x"
        );
        assert_eq!(normalize_path("/vq/../plыВx%41").unwrap(), "/plыВxA");
    }

    proptest! {
        #[test]
        fn normalising_twice_changes_nothing(path in "/[a-zыé./%2eEfF]{0,24}") {
            if let Ok(once) = normalize_path(&path) {
                let twice = normalize_path(&once).expect("normal output stays valid");
                prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }

        #[test]
        fn no_dot_segment_survives(path in "/[a-zы./%2eE]{0,24}") {
            if let Ok(normal) = normalize_path(&path) {
                prop_assert!(normal.split('/').all(|s| s != ".." && s != "."), "{}", normal);
                prop_assert!(!normal.contains("//"));
            }
        }
    }
}
