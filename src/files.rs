//! File helpers shared by everything that writes files an operator relies on (generated
//! certificates, the token store): atomic replace, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

/// Writes a temp file in the same folder, fsyncs it, sets `mode`, then renames it over `path`.
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
    let mut temp = tempfile_in(folder).map_err(fail)?;
    temp.1.write_all(bytes).map_err(fail)?;
    temp.1.sync_all().map_err(fail)?;
    set_mode(&temp.0, mode).map_err(fail)?;
    std::fs::rename(&temp.0, path).map_err(fail)
}

fn tempfile_in(folder: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let name = format!(".gatehouse-{}.tmp", rand::random::<u64>());
    let path = folder.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
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
