//! The token store as an editable TOML document ([`toml_edit`]): the text edits behind `token
//! create | revoke | rotate`. Everything an edit does not touch keeps its bytes: comments, blank
//! lines, key order, quoting, `[[tokens]]` tables or an inline `tokens = [ … ]` array.
//!
//! Only the layout lives here. What the entries mean is `token_store::parse`'s job, and every
//! caller re-parses the edited text and compares it with the entries it expects before writing.

use std::path::Path;

use anyhow::{Context, bail};
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// First lines of a store created by `token create`.
const NEW_STORE_HEADER: &str = "# gatehouse token store: SHA-256 hashes only, never a usable token.\n# Managed by `gatehouse token create | revoke`; hand edits are fine (see `gatehouse token hash`).\n";

/// A parsed store, ready for edits; `to_string()` gives the new text.
pub(super) struct StoreDocument(DocumentMut);

/// The two ways TOML can write the `tokens` array.
enum Tokens<'a> {
    /// `[[tokens]]` headers.
    Tables(&'a mut ArrayOfTables),
    /// `tokens = [{ … }, …]`.
    Inline(&'a mut toml_edit::Array),
}

impl StoreDocument {
    /// `text` as a document. A blank store starts from nothing, so the first `create` writes
    /// the header comment at the top.
    ///
    /// # Errors
    /// The text is not TOML (callers parse it with `token_store::parse` first, which says more).
    pub(super) fn parse(text: &str, store: &Path) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self(DocumentMut::new()));
        }
        let document = text
            .parse()
            .with_context(|| format!("{}: cannot parse", store.display()))?;
        Ok(Self(document))
    }

    /// Appends an entry with `fields` in this order, after everything else in the file (comments
    /// at the end of the file stay above it, one blank line apart).
    ///
    /// # Errors
    /// `tokens` is neither `[[tokens]]` tables nor an inline array of tables.
    pub(super) fn append(&mut self, fields: Vec<(&str, Value)>) -> anyhow::Result<()> {
        match self.0.get("tokens") {
            None => {
                self.0
                    .insert("tokens", Item::ArrayOfTables(ArrayOfTables::new()));
            }
            Some(Item::ArrayOfTables(_)) => {}
            Some(Item::Value(Value::Array(_))) => return self.append_inline(fields),
            Some(_) => bail!("`tokens` is not an array of tables"),
        }
        let mut table = Table::new();
        for (key, value) in fields {
            table.insert(key, Item::Value(value));
        }
        table.decor_mut().set_prefix(self.take_trailing());
        match self.tokens() {
            Some(Tokens::Tables(tables)) => tables.push(table),
            _ => bail!("`tokens` is not an array of tables"),
        }
        Ok(())
    }

    /// [`append`](Self::append) to `tokens = [ … ]`, laid out like the entry before it.
    fn append_inline(&mut self, fields: Vec<(&str, Value)>) -> anyhow::Result<()> {
        let Some(Tokens::Inline(array)) = self.tokens() else {
            bail!("`tokens` is not an array of tables");
        };
        let mut table = InlineTable::new();
        table.extend(fields);
        let mut value = Value::InlineTable(table);
        let Some(last) = array.iter().last().map(|last| last.decor().clone()) else {
            array.push(value);
            return Ok(());
        };
        // On the same line as the last entry, or on a line of its own with the same indent.
        let last_prefix = last.prefix().and_then(|p| p.as_str()).unwrap_or(" ");
        let mut prefix = match last_prefix.rfind('\n') {
            Some(newline) => format!("\n{}", &last_prefix[newline + 1..]),
            None => last_prefix.to_owned(),
        };
        // A comment after the last entry (`{ … }, # bee`) is the array's trailing text: keep it
        // on that entry's line, above the new one.
        let trailing = array.trailing().as_str().unwrap_or_default().to_owned();
        if let Some(newline) = trailing.rfind('\n') {
            prefix = format!(
                "{}{}",
                &trailing[..=newline],
                prefix.trim_start_matches('\n')
            );
            array.set_trailing(format!("\n{}", &trailing[newline + 1..]));
        }
        value.decor_mut().set_prefix(prefix);
        if let Some(suffix) = last.suffix() {
            value.decor_mut().set_suffix(suffix.clone());
        }
        array.push_formatted(value);
        Ok(())
    }

    /// Removes entry `index` together with the comment lines directly above it; comments
    /// separated from it by a blank line belong to what comes before and stay.
    ///
    /// # Errors
    /// There is no entry `index`.
    pub(super) fn remove(&mut self, index: usize) -> anyhow::Result<()> {
        let moved = match self.tokens() {
            Some(Tokens::Tables(tables)) if index < tables.len() => {
                let removed = tables.remove(index);
                let prefix = removed.decor().prefix().and_then(|p| p.as_str());
                let kept = detached(prefix.unwrap_or_default()).to_owned();
                match tables.get_mut(index) {
                    Some(next) => {
                        let own = next.decor().prefix().and_then(|p| p.as_str());
                        let joined = format!("{kept}{}", own.unwrap_or_default());
                        next.decor_mut().set_prefix(joined);
                        None
                    }
                    None => Some(kept),
                }
            }
            Some(Tokens::Inline(array)) if index < array.len() => {
                array.remove(index);
                if index == 0
                    && let Some(next) = array.get_mut(0)
                    && next.decor().prefix().and_then(|p| p.as_str()) == Some(" ")
                {
                    // `[{ a }, { b }]` becomes `[{ b }]`, not `[ { b }]`.
                    next.decor_mut().set_prefix("");
                }
                None
            }
            _ => bail!("tokens[{index}] not found"),
        };
        if let Some(kept) = moved {
            // The last table went: what stood above it now ends the file.
            let trailing = self.trailing().to_owned();
            self.0.set_trailing(format!("{kept}{trailing}"));
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) `key` in entry `index`. A value that is replaced keeps
    /// its place and its surroundings (a comment after it, say); a new key goes last.
    ///
    /// # Errors
    /// There is no entry `index`.
    pub(super) fn set(
        &mut self,
        index: usize,
        key: &str,
        value: Option<Value>,
    ) -> anyhow::Result<()> {
        let Some(entry) = self.entry_mut(index) else {
            bail!("tokens[{index}] not found");
        };
        match (entry.get_mut(key).and_then(Item::as_value_mut), value) {
            (Some(old), Some(mut value)) => {
                *value.decor_mut() = old.decor().clone();
                *old = value;
            }
            (Some(_), None) => {
                entry.remove(key);
            }
            (None, Some(value)) => {
                entry.insert(key, Item::Value(value));
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn tokens(&mut self) -> Option<Tokens<'_>> {
        match self.0.get_mut("tokens")? {
            Item::ArrayOfTables(tables) => Some(Tokens::Tables(tables)),
            Item::Value(Value::Array(array)) => Some(Tokens::Inline(array)),
            _ => None,
        }
    }

    fn entry_mut(&mut self, index: usize) -> Option<&mut dyn TableLike> {
        match self.tokens()? {
            Tokens::Tables(tables) => tables
                .get_mut(index)
                .map(|table| table as &mut dyn TableLike),
            Tokens::Inline(array) => array
                .get_mut(index)?
                .as_inline_table_mut()
                .map(|table| table as &mut dyn TableLike),
        }
    }

    fn trailing(&self) -> &str {
        self.0.trailing().as_str().unwrap_or_default()
    }

    /// Empties the text after the last entry and returns what goes above a new one: that text,
    /// then a blank line (for a new store, the header comment and a blank line).
    fn take_trailing(&mut self) -> String {
        let trailing = self.trailing().to_owned();
        self.0.set_trailing("");
        if self.is_empty_store() && trailing.trim().is_empty() {
            return format!("{NEW_STORE_HEADER}\n");
        }
        let newline = if trailing.is_empty() || trailing.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!("{trailing}{newline}\n")
    }

    fn is_empty_store(&self) -> bool {
        match self.0.get("tokens") {
            Some(Item::ArrayOfTables(tables)) => tables.is_empty(),
            _ => false,
        }
    }
}

impl std::fmt::Display for StoreDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The part of a table's `prefix` (the text between the previous entry and its header) that is
/// not the comment lines directly above the header.
fn detached(prefix: &str) -> &str {
    // The header's own indentation, after the last newline, goes with the header.
    let mut start = prefix.rfind('\n').map_or(0, |newline| newline + 1);
    while start > 0 {
        let line_start = prefix[..start - 1]
            .rfind('\n')
            .map_or(0, |newline| newline + 1);
        if !prefix[line_start..start].trim_start().starts_with('#') {
            break;
        }
        start = line_start;
    }
    &prefix[..start]
}

#[cfg(test)]
mod tests {
    use super::detached;

    #[test]
    fn comment_lines_right_above_a_header_go_with_it() {
        for (prefix, kept) in [
            ("", ""),
            ("\n", "\n"),
            ("# a\n", ""),
            ("\n# a\n# b\n", "\n"),
            ("# header\n\n# a\n", "# header\n\n"),
            ("# header\n\n", "# header\n\n"),
            ("\n  # a\n  ", "\n"),
            ("# header\n  \n", "# header\n  \n"),
        ] {
            assert_eq!(detached(prefix), kept, "{prefix:?}");
        }
    }
}
