//! File helpers shared by everything that writes files an operator relies on (generated
//! certificates, the token store): atomic replace, so a reader never sees half a file.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

/// Writes `bytes` to a temp file in the same folder, fsyncs it, sets `mode`, renames it over
/// `path`, then fsyncs the folder so the rename itself survives a crash.
///
/// The temp file is created with `mode` (less the umask) before its first byte is written, so a
/// private key or token store is never readable by others, not even while it is being written
/// (SPEC §8.9); the final `chmod` only restores bits the umask took away. On any error the temp
/// file is removed and `path` is left as it was.
///
/// # Errors
/// A message naming the file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    replace_with(path, mode, |file| file.write_all(bytes))
}

/// [`write_atomically`] with the content written by `write`; an `Err` from it aborts the replace.
fn replace_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), String> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .map_err(|e| format!("{}: cannot create folder: {e}", folder.display()))?;
    let fail = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    // From here on, dropping `temp` (an early return) deletes the temp file.
    let mut temp = temp_file_in(folder, mode).map_err(fail)?;
    write(temp.as_file_mut()).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    set_mode(temp.as_file(), mode).map_err(fail)?;
    // A failed rename hands the temp file back inside the error; dropping it deletes it.
    temp.persist(path).map_err(|e| fail(e.error))?;
    sync_folder(folder).map_err(|e| {
        format!(
            "{}: written, but cannot sync its folder: {e}",
            path.display()
        )
    })
}

/// A temp file in `folder`, named `.gatehouse-*.tmp` (hidden from globs such as `*.pem`), created
/// with `mode` less the umask.
fn temp_file_in(folder: &Path, mode: u32) -> std::io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".gatehouse-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder.tempfile_in(folder)
}

/// `options` creating files with `mode` (less the umask) from the start, on Unix.
pub(crate) fn with_mode(
    options: &mut std::fs::OpenOptions,
    mode: u32,
) -> &mut std::fs::OpenOptions {
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
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Makes a rename in `folder` durable: the new directory entry is on disk, not only the data.
#[cfg(unix)]
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}

/// Elsewhere a folder cannot be opened as a file; the rename is as durable as the OS makes it.
#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> std::io::Result<()> {
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

    /// The names in `folder`, sorted.
    fn names_in(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temp_files_are_private_before_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let temp = temp_file_in(dir.path(), 0o600).unwrap();
        assert_eq!(
            mode_of(temp.path()),
            0o600,
            "created private, not chmod'ed later"
        );
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".gatehouse-") && name.ends_with(".tmp"),
            "{name}"
        );
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
        write_atomically(&cert, b"renewed", 0o644).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), b"renewed");
        assert_eq!(
            names_in(dir.path()),
            ["tls.crt", "tls.key"],
            "no temp file left"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.toml");
        std::fs::write(&store, "old").unwrap();
        let error = replace_with(&store, 0o600, |file| {
            file.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            error.contains("tokens.toml: cannot write: disk full"),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "old");
        assert_eq!(names_in(dir.path()), ["tokens.toml"]);
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty folder where the file should go: the rename over it fails.
        let target = dir.path().join("tokens.toml");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "kept").unwrap();
        let error = write_atomically(&target, b"new", 0o600).unwrap_err();
        assert!(error.contains("cannot write"), "{error}");
        assert_eq!(names_in(dir.path()), ["tokens.toml"]);
        assert_eq!(
            std::fs::read_to_string(target.join("inside")).unwrap(),
            "kept"
        );
    }
}
