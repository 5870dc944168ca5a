//! The hash chain both the writer and `gatehouse audit verify` follow.
//!
//! A record is one line: a JSON object whose last two keys are `prev`, the lower-case hex SHA-256
//! of the previous line's bytes (without its newline), and `hash`, the hex SHA-256 of the line's
//! own bytes up to `hash` (so an edit of the last line, which no later `prev` covers, shows
//! too). The first line of a fresh chain carries [`GENESIS`]. The chain runs across files: after a rotation the new file's first line carries
//! the hash of the old file's last line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

/// `prev` of the first record of a fresh chain: 64 zeros.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 of one line's bytes (the newline excluded).
pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Closes a record's `body` (`{"time":…,"status":200`, without `prev` or the closing brace)
/// into its line, chained to `prev`.
pub(crate) fn seal(body: &[u8], prev: &str, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.extend_from_slice(b"\"");
    let own = line_hash(&out[start..]);
    out.extend_from_slice(HASH_KEY);
    out.extend_from_slice(own.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// What precedes a record's own hash, the last key of its line.
const HASH_KEY: &[u8] = b",\"hash\":\"";

/// Checks a line's own `hash` against its bytes: `Err` with the reason when the line was edited
/// after it was written, or has no well-formed `hash` as its last key.
pub(crate) fn check_own_hash(line: &[u8]) -> Result<(), String> {
    let tail_len = HASH_KEY.len() + 64 + 2;
    let split = line
        .len()
        .checked_sub(tail_len)
        .filter(|at| line[*at..].starts_with(HASH_KEY) && line.ends_with(b"\"}"))
        .ok_or_else(|| "not an audit record: no \"hash\" as its last key".to_owned())?;
    let written = &line[split + HASH_KEY.len()..line.len() - 2];
    if line_hash(&line[..split]).as_bytes() == written {
        Ok(())
    } else {
        Err("the record was changed after it was written (its hash does not match)".to_owned())
    }
}

/// How an existing file ends: the hash to continue the chain from and whether a newline must be
/// written first (the last line was cut short, e.g. by a crash or a full disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Hash of the last line, `None` for an empty file.
    pub(crate) last_hash: Option<String>,
    /// The file does not end with a newline.
    pub(crate) needs_newline: bool,
}

/// Block size for reading a file backwards.
const TAIL_BLOCK: u64 = 8192;

/// Reads the end of `file` backwards until the start of its last line; never the whole file.
///
/// # Errors
/// The IO error from seeking or reading.
pub(crate) fn read_tail(file: &mut File) -> io::Result<Tail> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Tail {
            last_hash: None,
            needs_newline: false,
        });
    }
    let mut end = len;
    let mut last_byte = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last_byte)?;
    let needs_newline = last_byte[0] != b'\n';
    if !needs_newline {
        end -= 1;
    }
    // Collect blocks from the end until one holds the newline before the last line.
    let mut line: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 {
        let start = pos.saturating_sub(TAIL_BLOCK);
        let mut block = vec![0u8; usize::try_from(pos - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        if let Some(at) = block.iter().rposition(|b| *b == b'\n') {
            block.drain(..=at);
            block.extend_from_slice(&line);
            line = block;
            break;
        }
        block.extend_from_slice(&line);
        line = block;
        pos = start;
    }
    Ok(Tail {
        last_hash: Some(line_hash(&line)),
        needs_newline,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tail_of(bytes: &[u8]) -> Tail {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        read_tail(&mut file).unwrap()
    }

    #[test]
    fn genesis_is_sixty_four_zeros() {
        assert_eq!(GENESIS.len(), 64);
        assert!(GENESIS.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn sealing_appends_prev_as_the_last_key() {
        let mut out = Vec::new();
        seal(b"{\"status\":200", GENESIS, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["prev"], GENESIS);
        assert_eq!(value["status"], 200);
    }

    #[test]
    fn the_tail_is_the_last_line() {
        assert_eq!(tail_of(b"").last_hash, None);
        let tail = tail_of(b"one\ntwo\n");
        assert_eq!(tail.last_hash, Some(line_hash(b"two")));
        assert!(!tail.needs_newline);
        let cut = tail_of(b"one\ntw");
        assert_eq!(cut.last_hash, Some(line_hash(b"tw")));
        assert!(cut.needs_newline);
        assert_eq!(tail_of(b"single\n").last_hash, Some(line_hash(b"single")));
    }

    #[test]
    fn a_last_line_longer_than_a_block_is_read_whole() {
        let long = vec![b'x'; 3 * TAIL_BLOCK as usize + 17];
        let mut bytes = b"first\n".to_vec();
        bytes.extend_from_slice(&long);
        bytes.push(b'\n');
        assert_eq!(tail_of(&bytes).last_hash, Some(line_hash(&long)));
        assert_eq!(tail_of(&long).last_hash, Some(line_hash(&long)));
    }
}
