//! File helpers shared by everything that writes files an operator relies on (generated
//! certificates, the token store): atomic replace, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

/// Writes a temp file in the same folder, fsyncs it, sets `mode`, then renames it over `path`.
/// The temp file is created with `mode` (less the umask) before its first byte is written, so a
/// private key or token store is never readable by others, not even while it is being written
/// (SPEC §8.9); the final `chmod` only restores bits the umask took away.
///
/// # Errors
/// A message naming the file.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .map_err(|e| format!("{}: cannot create folder: {e}", folder.display()))?;
    let fail = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    let mut temp = tempfile_in(folder, mode).map_err(fail)?;
    temp.1.write_all(bytes).map_err(fail)?;
    temp.1.sync_all().map_err(fail)?;
    set_mode(&temp.0, mode).map_err(fail)?;
    std::fs::rename(&temp.0, path).map_err(fail)
}

fn tempfile_in(folder: &Path, mode: u32) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let name = format!(".gatehouse-{}.tmp", rand::random::<u64>());
    let path = folder.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let file = with_mode(&mut options, mode).open(&path)?;
    Ok((path, file))
}

/// `options` creating files with `mode` (less the umask) from the start, on Unix.
pub fn with_mode(options: &mut std::fs::OpenOptions, mode: u32) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        options
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn temp_files_are_private_before_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _file) = tempfile_in(dir.path(), 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600, "created private, not chmod'ed later");
    }

    #[test]
    fn atomic_writes_end_with_the_asked_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tls.key");
        write_atomically(&key, b"secret", 0o600).unwrap();
        assert_eq!(mode_of(&key), 0o600);
        let cert = dir.path().join("tls.crt");
        write_atomically(&cert, b"public", 0o644).unwrap();
        assert_eq!(mode_of(&cert), 0o644);
    }
}
