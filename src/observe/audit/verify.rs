//! `gatehouse audit verify FILE…`: checks the hash chain over the files in the order given, as
//! one chain (oldest first: `audit.log.2 audit.log.1 audit.log`).
//!
//! Every line must be a JSON object with the audit fields, end with a newline, carry as `prev`
//! the SHA-256 of the line before it — across file boundaries too — and as `hash` the SHA-256
//! of its own bytes before `hash`. The first broken record is named as `FILE:LINE: reason`. An
//! edit shows at the edited record (its own hash no longer matches), the last one included; an
//! insertion, deletion or reordering at the first record out of place.
//!
//! Where the chain starts: the first record may carry the genesis value (a fresh chain) or the
//! hash of a record not given (a rotated file verified on its own, its predecessors deleted).
//! The latter is accepted and reported as a note, since verifying the newest file alone is the
//! common case; `--require-genesis` makes it a failure. What a hash chain cannot show is a cut at
//! the end (the newest records removed whole): compare the printed last hash with one kept
//! elsewhere for that.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::chain::{GENESIS, check_own_hash, line_hash};

/// The keys every record has.
const FIELDS: [&str; 11] = [
    "time",
    "request_id",
    "identity",
    "auth_method",
    "client_ip",
    "method",
    "path",
    "route",
    "status",
    "prev",
    "hash",
];

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Records checked.
    pub(crate) records: u64,
    /// Files checked.
    pub(crate) files: usize,
    /// Hash of the last record (the genesis value when there were none).
    pub(crate) last_hash: String,
    /// The first record's `prev` when it is not the genesis value.
    pub(crate) continues_from: Option<String>,
}

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A record breaks the chain or is not a record.
    Broken {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    Unreadable {
        /// The file.
        file: PathBuf,
        /// The IO error.
        error: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Broken { file, line, reason } => {
                write!(f, "{}:{line}: {reason}", file.display())
            }
            Self::Unreadable { file, error } => {
                write!(f, "cannot read {}: {error}", file.display())
            }
        }
    }
}

/// Where the previous record was, for messages.
#[derive(Debug)]
struct Previous {
    hash: String,
    file: PathBuf,
    line: u64,
}

/// Verifies `files` as one chain.
///
/// # Errors
/// The first broken record, or the first file that cannot be read.
pub(crate) fn verify(files: &[PathBuf], require_genesis: bool) -> Result<Summary, Failure> {
    let mut previous: Option<Previous> = None;
    let mut records = 0;
    let mut continues_from = None;
    for file in files {
        let unreadable = |e: std::io::Error| Failure::Unreadable {
            file: file.clone(),
            error: e.to_string(),
        };
        let mut reader = BufReader::new(File::open(file).map_err(unreadable)?);
        let mut buf = Vec::new();
        let mut line_no = 0;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(unreadable)? == 0 {
                break;
            }
            line_no += 1;
            let broken = |reason: String| Failure::Broken {
                file: file.clone(),
                line: line_no,
                reason,
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(broken(
                    "the line is cut short (no newline at its end)".to_owned(),
                ));
            };
            let prev = record_prev(line).map_err(broken)?;
            check_own_hash(line).map_err(broken)?;
            match &previous {
                Some(before) if before.hash != prev => {
                    return Err(broken(format!(
                        "prev does not match the previous record ({}:{})",
                        before.file.display(),
                        before.line
                    )));
                }
                Some(_) => {}
                None if prev == GENESIS => {}
                None if require_genesis => {
                    return Err(broken(
                        "prev is not the genesis value: the chain does not start here".to_owned(),
                    ));
                }
                None => continues_from = Some(prev),
            }
            previous = Some(Previous {
                hash: line_hash(line),
                file: file.clone(),
                line: line_no,
            });
            records += 1;
        }
    }
    Ok(Summary {
        records,
        files: files.len(),
        last_hash: previous.map_or_else(|| GENESIS.to_owned(), |p| p.hash),
        continues_from,
    })
}

/// A line's `prev`, or why the line is not an audit record.
fn record_prev(line: &[u8]) -> Result<String, String> {
    if line.is_empty() {
        return Err("empty line".to_owned());
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|_| "not valid JSON".to_owned())?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON object".to_owned());
    };
    if let Some(missing) = FIELDS.iter().find(|key| !object.contains_key(**key)) {
        return Err(format!("not an audit record: no \"{missing}\""));
    }
    match object.get("prev").and_then(|p| p.as_str()) {
        Some(prev) if is_hash(prev) => Ok(prev.to_owned()),
        _ => Err("not an audit record: \"prev\" is not a SHA-256 hex value".to_owned()),
    }
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The `audit verify` command: a one-line summary and exit 0, or `FILE:LINE: reason` and exit 1.
pub(crate) fn command(files: &[PathBuf], require_genesis: bool) -> ExitCode {
    match verify(files, require_genesis) {
        Ok(summary) => {
            if let (Some(prev), Some(first)) = (&summary.continues_from, first_nonempty(files)) {
                errln!(
                    "note: {}:1 continues an earlier chain (prev {prev}); verified from there",
                    first.display()
                );
            }
            outln!(
                "ok: {} records in {} file{}, chain intact; last hash {}",
                summary.records,
                summary.files,
                if summary.files == 1 { "" } else { "s" },
                summary.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            errln!("{failure}");
            ExitCode::from(1)
        }
    }
}

/// The first file with a record (where a chain that does not start at genesis starts).
fn first_nonempty(files: &[PathBuf]) -> Option<&Path> {
    files
        .iter()
        .find(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
        .map(PathBuf::as_path)
}
