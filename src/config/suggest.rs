//! "Did you mean" for unknown keys: `routes[0].strip_prefx: unknown key (did you mean
//! "strip_prefix"?)`.
//!
//! The known keys at a path come from the serde mirror itself ([`fields_of`] asks each `*File`
//! struct's derived `Deserialize` for its field list), so a key added to [`super::file`] is
//! suggested without touching this file; only a new *section* needs a line in [`section_fields`].

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::file;

/// The closest of `candidates` to `word`, if one is close enough to be a typo: an edit distance
/// (with transpositions) of at most a third of the word, and at least 1.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The reason for an unknown key at `path` in `gateway.toml` (`routes[2].strip_prefx`).
pub(super) fn unknown_key(path: &str) -> String {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    unknown_key_among(key, section_fields(section))
}

/// The reason for an unknown `key` among `known` keys.
pub(super) fn unknown_key_among(key: &str, known: &[&str]) -> String {
    match did_you_mean(key, known.iter().copied()) {
        Some(close) => format!("unknown key (did you mean {close:?}?)"),
        None => "unknown key".to_owned(),
    }
}

/// The keys of the table at `section` (`""` is the top level; indices are ignored).
fn section_fields(section: &str) -> &'static [&'static str] {
    let section: String = strip_indices(section);
    match section.as_str() {
        "" => fields_of::<file::GatewayFile>(),
        "server" => fields_of::<file::ServerFile>(),
        "limits" => fields_of::<file::LimitsFile>(),
        "tls" => fields_of::<file::TlsFile>(),
        "tls.sni" => fields_of::<file::SniFile>(),
        "auth" => fields_of::<file::AuthFile>(),
        "auth.jwt" => fields_of::<file::JwtFile>(),
        "auth.external" => fields_of::<file::ExternalFile>(),
        "auth.session" => fields_of::<file::SessionFile>(),
        "audit" => fields_of::<file::AuditFile>(),
        "upstreams" => fields_of::<file::UpstreamFile>(),
        "routes" => fields_of::<file::RouteFile>(),
        "routes.respond" => fields_of::<file::RespondFile>(),
        _ => &[],
    }
}

/// `routes[2].respond` → `routes.respond`.
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The field names `T`'s derived `Deserialize` passes to `deserialize_struct` (empty for
/// anything that is not a struct).
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that records the struct's field list and then fails.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// The (expected) failure of [`FieldNames`].
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(
            unknown_key("routes[0].strip_prefx"),
            "unknown key (did you mean \"strip_prefix\"?)"
        );
        assert_eq!(
            unknown_key("server.lisen"),
            "unknown key (did you mean \"listen\"?)"
        );
        assert_eq!(
            unknown_key("routes[3].respond.stauts"),
            "unknown key (did you mean \"status\"?)"
        );
        assert_eq!(
            unknown_key("upstream"),
            "unknown key (did you mean \"upstreams\"?)"
        );
        assert_eq!(unknown_key("routes[0].colour"), "unknown key");
        assert_eq!(unknown_key("nowhere.x.listen"), "unknown key");
    }

    #[test]
    fn field_lists_come_from_serde() {
        let route = fields_of::<file::RouteFile>();
        assert!(route.contains(&"strip_prefix") && route.contains(&"write_roles"));
        assert!(fields_of::<file::SizeFile>().is_empty());
        assert_eq!(did_you_mean("viewr", ["viewer", "admin"]), Some("viewer"));
        assert_eq!(did_you_mean("ab", ["xy"]), None);
    }
}
