//! Error reporting that serde alone does not give: every *type* error (serde stops at the first)
//! with its key path, and the `line:column` of any key path for `gatehouse check`.
//!
//! Type errors are collected in passes: deserialize; on an error, find the key whose value span
//! holds the error's span (toml's spanned [`DeTable`]), record `key: reason`, drop that key from
//! the document, write the document out again and deserialize once more. Every `*File` struct is
//! `#[serde(default)]`, so a dropped key simply takes its default and the next pass finds the next
//! error. A dozen passes over a config-sized file cost well under a millisecond, and only a broken
//! file pays them. Checks that then fail *because* a key was dropped (a required key now empty)
//! are filtered out by the caller ([`is_under`]).

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{ConfigError, ConfigErrors};

/// Most type errors reported in one run.
const MAX_PASSES: usize = 64;

/// A deserialized document, the unknown keys seen, and the type errors found on the way (their
/// keys were dropped, so the value holds defaults there).
pub(super) struct Collected<T> {
    /// The file as far as it deserialized.
    pub(crate) raw: T,
    /// Unknown keys, as `routes[2].strip_prefx`.
    pub(crate) unknown: Vec<String>,
    /// One per dropped key.
    pub(crate) type_errors: Vec<ConfigError>,
}

/// Deserializes `text` (already known to be valid TOML syntax) into `T`, collecting every type
/// error instead of stopping at the first.
///
/// # Errors
/// A syntax error, or an error that cannot be tied to a key (then nothing more can be said).
pub(super) fn collect<T: DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<Collected<T>, ConfigErrors> {
    let mut current = text.to_owned();
    let mut document: Option<toml::Table> = None;
    let mut type_errors = Vec::new();
    for _ in 0..MAX_PASSES {
        let mut unknown = Vec::new();
        let deserializer =
            toml::Deserializer::parse(&current).map_err(|e| syntax_error(file, text, &e))?;
        let error = match serde_ignored::deserialize(deserializer, |key| {
            unknown.push(key_path(&key));
        }) {
            Ok(raw) => {
                // In file order (serde's visiting order is not the file's).
                type_errors.sort_by_cached_key(|e: &ConfigError| locate(text, &e.key));
                return Ok(Collected {
                    raw,
                    unknown,
                    type_errors,
                });
            }
            Err(error) => error,
        };
        let key = error.span().and_then(|span| key_at(&current, &span));
        let reason = redact_value(error.message().trim());
        let Some(key) = key.filter(|key| !key.is_empty()) else {
            // Not tied to a key: report what is known, with the line when the span gives one.
            type_errors.push(match error.span() {
                Some(span) if current == text => ConfigError {
                    file: file.to_owned(),
                    key: format!("line {}", line_col(text, span.start).0),
                    reason,
                },
                _ => ConfigError {
                    file: file.to_owned(),
                    key: String::new(),
                    reason,
                },
            });
            return Err(ConfigErrors(type_errors));
        };
        type_errors.push(ConfigError {
            file: file.to_owned(),
            key: key.clone(),
            reason,
        });
        let document = match &mut document {
            Some(document) => document,
            None => {
                document.insert(toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?)
            }
        };
        if !remove(document, &key) {
            return Err(ConfigErrors(type_errors));
        }
        current = toml::to_string(document).map_err(|_| ConfigErrors(type_errors.clone()))?;
    }
    Err(ConfigErrors(type_errors))
}

/// `built` with the type errors in front; a check that failed only because a mistyped key was
/// dropped (its key lies under a type error's) is not reported twice.
pub(super) fn merge<T>(
    built: Result<T, ConfigErrors>,
    type_errors: Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    if type_errors.is_empty() {
        return built;
    }
    let mut errors = type_errors;
    if let Err(ConfigErrors(others)) = built {
        let dropped: Vec<String> = errors.iter().map(|e| e.key.clone()).collect();
        errors.extend(
            others
                .into_iter()
                .filter(|e| !dropped.iter().any(|key| is_under(&e.key, key))),
        );
    }
    Err(ConfigErrors(errors))
}

/// True when `key` is `prefix` or lies under it (`routes[1].path` is under `routes[1]`).
pub(super) fn is_under(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// 1-based `(line, column)` of `key` (`routes[2].strip_prefx`) in `text`: where the key is
/// written, or for a list element where the element is. `None` when the text does not parse or
/// has no such key.
pub(crate) fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let document = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = document.get_ref();
    let mut value: Option<&DeValue<'_>> = None;
    let mut at: Option<usize> = None;
    for segment in segments(key)? {
        match segment {
            Segment::Key(name) => {
                let current = match value {
                    None => table,
                    Some(DeValue::Table(inner)) => inner,
                    Some(_) => return None,
                };
                let (k, v) = current.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
                at = Some(k.span().start);
                table = current;
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let Some(DeValue::Array(items)) = value else {
                    return None;
                };
                let item = items.get(i)?;
                // An `[[array]]` element's own span is its header; an inline one's, its value.
                at = Some(item.span().start);
                value = Some(item.get_ref());
            }
        }
    }
    at.map(|offset| line_col(text, offset))
}

/// One step of a key path.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `routes[2].respond.status` → `routes`, `2`, `respond`, `status`.
fn segments(key: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Segment::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The key path whose value holds `span`: the smallest enclosing value wins.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    visit_table(document.get_ref(), "", span, &mut best);
    best.map(|(_, key)| key)
}

fn visit_table(
    table: &DeTable<'_>,
    prefix: &str,
    span: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        visit_value(value, path, span, best);
    }
}

fn visit_value(
    value: &toml::Spanned<DeValue<'_>>,
    path: String,
    span: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    let own = value.span();
    if own.start <= span.start && span.end <= own.end {
        let size = own.end - own.start;
        if best
            .as_ref()
            .is_none_or(|(best_size, _)| size <= *best_size)
        {
            *best = Some((size, path.clone()));
        }
    }
    match value.get_ref() {
        DeValue::Table(table) => visit_table(table, &path, span, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                visit_value(item, format!("{path}[{i}]"), span, best);
            }
        }
        _ => {}
    }
}

/// Drops `key` from `document`; false when it is not there.
fn remove(document: &mut toml::Table, key: &str) -> bool {
    segments(key).is_some_and(|segments| remove_in_table(document, &segments))
}

fn remove_in_table(table: &mut toml::Table, segments: &[Segment<'_>]) -> bool {
    match segments {
        [Segment::Key(name)] => table.remove(*name).is_some(),
        [Segment::Key(name), rest @ ..] => table
            .get_mut(*name)
            .is_some_and(|value| remove_in_value(value, rest)),
        _ => false,
    }
}

fn remove_in_value(value: &mut toml::Value, segments: &[Segment<'_>]) -> bool {
    match (value, segments) {
        (toml::Value::Table(table), segments) => remove_in_table(table, segments),
        // A bad list element: the whole list goes (its other elements' errors, if any, show
        // on the next run), since removing one element would renumber the rest.
        (toml::Value::Array(items), [Segment::Index(i)]) if *i < items.len() => {
            items.clear();
            true
        }
        (toml::Value::Array(items), [Segment::Index(i), rest @ ..]) => items
            .get_mut(*i)
            .is_some_and(|value| remove_in_value(value, rest)),
        _ => false,
    }
}

/// `invalid type: string "…", expected …` without the value: a mistyped key may hold a secret.
fn redact_value(message: &str) -> String {
    let Some(start) = message.find("string \"") else {
        return message.to_owned();
    };
    let quoted = start + "string ".len();
    match message[quoted + 1..]
        .find("\", ")
        .or_else(|| message[quoted + 1..].rfind('"'))
    {
        Some(end) => format!(
            "{}string{}",
            &message[..start],
            &message[quoted + 1 + end + 1..]
        ),
        None => message.to_owned(),
    }
}

/// A TOML syntax error as one config error, with its line when the parser knows it.
pub(super) fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigErrors {
    let location = error.span().map(|span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!("line {line}")
    });
    let message = error.message().trim().to_owned();
    ConfigErrors(vec![ConfigError {
        file: path.to_owned(),
        key: location.unwrap_or_default(),
        reason: message,
    }])
}

/// `routes[2].strip_prefx`, the way an operator would write the key (serde_ignored says
/// `routes.2.strip_prefx`).
pub(crate) fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::GatewayFile;

    const TEXT: &str = "[server]\nlisten = 8443\n\n[limits]\nmax_connections = \"many\"\n\n[[routes]]\npath = \"/a\"\n\n[[routes]]\npath = \"/b\"\nexact = \"yes\"\nmethods = [\"GET\", 7]\nstrip_prefx = true\n";

    #[test]
    fn every_type_error_is_reported_with_its_key() {
        let collected =
            collect::<GatewayFile>(Path::new("g.toml"), TEXT).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<&str> = collected
            .type_errors
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "limits.max_connections",
                "routes[1].exact",
                "routes[1].methods[1]"
            ]
        );
        assert_eq!(collected.unknown, ["routes[1].strip_prefx"]);
        let reason = &collected.type_errors[1].reason;
        assert!(
            reason.contains("invalid type: string, expected"),
            "{reason}"
        );
        assert!(!reason.contains("many"), "{reason}");
        assert_eq!(collected.raw.routes[1].path, "/b");
    }

    #[test]
    fn locates_keys_and_elements() {
        assert_eq!(locate(TEXT, "server.listen"), Some((2, 1)));
        assert_eq!(locate(TEXT, "limits.max_connections"), Some((5, 1)));
        assert_eq!(locate(TEXT, "routes[1].strip_prefx"), Some((14, 1)));
        assert_eq!(locate(TEXT, "routes[1].methods[1]"), Some((13, 19)));
        assert_eq!(locate(TEXT, "routes[1]").map(|(line, _)| line), Some(10));
        assert_eq!(locate(TEXT, "routes[5].path"), None);
        assert_eq!(locate(TEXT, "nothing"), None);
        assert_eq!(locate("not [toml", "x"), None);
    }

    #[test]
    fn helpers() {
        assert!(is_under("routes[1].path", "routes[1]"));
        assert!(is_under("routes[1]", "routes[1]"));
        assert!(!is_under("routes[10].path", "routes[1]"));
        assert_eq!(
            redact_value("invalid type: string \"hunter2\", expected u64"),
            "invalid type: string, expected u64"
        );
        assert_eq!(
            redact_value("invalid type: integer `5`, expected a string"),
            "invalid type: integer `5`, expected a string"
        );
    }
}
