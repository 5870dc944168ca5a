//! How real tools change the files gatehouse watches: an editor's save (temp file + rename),
//! a Kubernetes Secret/ConfigMap volume update (a `..data` symlink swapped to a new timestamped
//! folder), and a config reached through a symlink into a folder nobody watches (so only
//! `SIGHUP` or `POST /reload` can notice a change to it).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

use super::certs;

/// Saves `contents` to `path` the way editors and `install` do: a temp file in the same
/// folder, flushed, then renamed over `path` (a new inode; the old one is never modified).
pub fn save_atomically(path: &Path, contents: impl AsRef<[u8]>) {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let folder = path.parent().expect("file has a folder");
    let name = path.file_name().expect("file has a name").to_string_lossy();
    let temp = folder.join(format!(
        ".{name}.{}.swp",
        SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file =
        std::fs::File::create(&temp).unwrap_or_else(|e| panic!("creating {}: {e}", temp.display()));
    std::io::Write::write_all(&mut file, contents.as_ref()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::rename(&temp, path)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", temp.display(), path.display()));
}

/// A Kubernetes Secret volume as the kubelet's `AtomicWriter` lays it out:
///
/// ```text
/// dir/..2026_11_23_10_00_01.000000001/tls.crt   the data, one timestamped folder per version
/// dir/..data -> ..2026_11_23_10_00_01.000000001
/// dir/tls.crt -> ..data/tls.crt                 what the config names; never changes
/// ```
///
/// An update writes a new timestamped folder, points `..data_tmp` at it, renames `..data_tmp`
/// over `..data` (the one atomic step) and removes the old folder. The visible files are
/// never written, so a watch on them alone sees nothing.
pub struct K8sVolume {
    dir: PathBuf,
    current: String,
    version: u32,
}

impl K8sVolume {
    /// Creates the volume in `dir` (created if missing) holding `files`.
    pub fn create(dir: &Path, files: &[(&str, &[u8])]) -> K8sVolume {
        std::fs::create_dir_all(dir).unwrap();
        let current = write_version(dir, 1, files);
        symlink(&current, dir.join("..data")).unwrap();
        for (name, _) in files {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        K8sVolume {
            dir: dir.to_owned(),
            current,
            version: 1,
        }
    }

    /// The visible path of `name` (`dir/name`, a symlink through `..data`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Swaps in a new version holding `files` (the same names as before).
    pub fn update(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let next = write_version(&self.dir, self.version, files);
        let tmp = self.dir.join("..data_tmp");
        symlink(&next, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(format!("..data/{name}"), visible).unwrap();
            }
        }
        std::fs::remove_dir_all(self.dir.join(&self.current)).unwrap();
        self.current = next;
    }
}

/// Writes `files` into a new timestamped folder in `dir` and returns the folder's name.
fn write_version(dir: &Path, version: u32, files: &[(&str, &[u8])]) -> String {
    let name = format!("..2026_11_23_10_00_{version:02}.{:09}", version * 7919);
    let folder = dir.join(&name);
    std::fs::create_dir(&folder).unwrap();
    for (file, contents) in files {
        std::fs::write(folder.join(file), contents).unwrap();
    }
    name
}

/// A config reached through a symlink into a folder the gateway does not watch: the gateway
/// is started with `dir/gateway.toml -> hidden/gateway.toml`, so rewriting the real file
/// changes what a reload reads without any event in a watched folder, and the only reloads
/// are the ones the test asks for (`SIGHUP`, `POST /reload`).
pub struct LinkedConfig {
    hidden: TempDir,
    link: PathBuf,
}

impl LinkedConfig {
    /// Returns the gateway folder (the test certificates and the `gateway.toml` symlink) and
    /// the linked config holding `config`.
    pub fn new(config: &str) -> (TempDir, LinkedConfig) {
        let dir = tempfile::tempdir().unwrap();
        certs().write_into(dir.path());
        let linked = LinkedConfig {
            hidden: tempfile::tempdir().unwrap(),
            link: dir.path().join("gateway.toml"),
        };
        std::fs::write(linked.real(), unwatched(config)).unwrap();
        symlink(linked.real(), &linked.link).unwrap();
        (dir, linked)
    }

    /// The path to start the gateway with: `dir/gateway.toml`, the symlink.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// The file the symlink points at, in the unwatched folder.
    pub fn real(&self) -> PathBuf {
        self.hidden.path().join("gateway.toml")
    }

    /// Rewrites the real config in place.
    pub fn write(&self, config: &str) {
        std::fs::write(self.real(), unwatched(config)).unwrap();
    }
}

/// The gateway follows symlinks to their real folder, so a linked config alone would still be
/// watched: `watch_files = false` leaves reloads to SIGHUP and `POST /reload` only.
fn unwatched(config: &str) -> String {
    assert!(
        config.contains("[server]\n"),
        "linked configs need a [server] section"
    );
    config.replacen("[server]\n", "[server]\nwatch_files = false\n", 1)
}
