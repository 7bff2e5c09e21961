//! The on-disk cache of compiled policies.
//!
//! A cache entry is native code that the daemon maps and runs, so whoever
//! can write the cache folder can run code as the daemon. The cache is
//! therefore used only in a folder that is the daemon user's own:
//!
//! - owned by the daemon's user, mode 0700 (created so if missing, and
//!   closed to 0700 if others could only read it); a folder that is
//!   anything else (another owner, group- or world-writable, a symlink) is
//!   refused with a warning, and modules are compiled in memory instead;
//! - never a shared default such as `/tmp`: without `policies.cache_dir`,
//!   `$XDG_CACHE_HOME` or `$HOME`, there is no cache;
//! - entries are read only if they are regular files owned by the daemon's
//!   user and writable by nobody else, opened without following links;
//! - entries are written to a new file with a random name (`O_EXCL`,
//!   `O_NOFOLLOW`, mode 0600) and renamed into place, so a planted link is
//!   never written through and a reader never sees half an entry;
//! - an entry that fails wasmtime's checks is deleted and compiled anew.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A cache folder checked to be the daemon user's own.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache at `dir`, created with mode 0700 if missing; `None` (with a
    /// warning) when the folder is not safe to load native code from.
    pub fn open(dir: &Path) -> Option<Cache> {
        match prepare(dir) {
            Ok(()) => Some(Cache {
                dir: dir.to_path_buf(),
            }),
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "not using the compiled-policy cache, modules are compiled in memory: {e:#}"
                );
                None
            }
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bytes of entry `name`, if there is a trustworthy one.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring cache entry: {e}");
                return None;
            }
        };
        if let Err(e) = check_entry(&file) {
            tracing::warn!(path = %path.display(), "ignoring cache entry: {e:#}");
            return None;
        }
        let mut bytes = Vec::new();
        let mut file = file;
        match file.read_to_end(&mut bytes) {
            Ok(_) => Some(bytes),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring cache entry: {e}");
                None
            }
        }
    }

    /// Writes entry `name` atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no random name: {e}"))?;
        let tmp = self
            .dir
            .join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            file.write_all(bytes)?;
            file.sync_data()?;
            std::fs::rename(&tmp, self.dir.join(name))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Deletes entry `name` (it failed its checks).
    pub fn remove(&self, name: &str) {
        let path = self.dir.join(name);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), "cannot delete a bad cache entry: {e}");
        }
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/pointsman/components`, else
/// `$HOME/.cache/pointsman/components`; none without either.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("pointsman").join("components"))
}

fn prepare(dir: &Path) -> anyhow::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        bail!("it is a symbolic link");
    }
    if !meta.is_dir() {
        bail!("it is not a folder");
    }
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "it belongs to user {}, not to this daemon's user {me}",
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!("its mode is {mode:o}: others may write it; it must be 700");
    }
    if mode & 0o077 != 0 {
        // Ours, and only readable by others (as earlier versions made it):
        // nothing can have been planted, so close it and use it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 700 on {}", dir.display()))?;
    }
    Ok(())
}

fn check_entry(file: &File) -> anyhow::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "it belongs to user {}, not to this daemon's user",
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o022 != 0 {
        bail!("others may write it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_folder_is_used_and_entries_round_trip() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("cache");
        let cache = Cache::open(&dir).expect("a new folder is made private");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        cache.write("a.cwasm", b"compiled").unwrap();
        assert_eq!(cache.read("a.cwasm").unwrap(), b"compiled");
        assert!(cache.read("missing.cwasm").is_none());
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Cache::open(&dir).is_none());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(Cache::open(&dir).is_none());
        // Only readable by others (as earlier versions left it): closed and
        // used.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Cache::open(&dir).is_some());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_symlinked_folder_or_entry_is_refused_and_never_written_through() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        let cache = Cache::open(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(Cache::open(&link).is_none());

        // A planted link as an entry: not read, and writing the entry
        // replaces the link instead of writing to its target.
        let target = base.path().join("victim");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, real.join("x.cwasm")).unwrap();
        assert!(cache.read("x.cwasm").is_none());
        cache.write("x.cwasm", b"compiled").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(cache.read("x.cwasm").unwrap(), b"compiled");
    }

    #[test]
    fn an_entry_others_can_write_is_not_read() {
        let base = tempfile::tempdir().unwrap();
        let cache = Cache::open(&base.path().join("c")).unwrap();
        cache.write("y.cwasm", b"compiled").unwrap();
        let path = cache.dir().join("y.cwasm");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cache.read("y.cwasm").is_none());
    }
}
