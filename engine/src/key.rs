//! The per-user artifact key: the secret that authenticates AOT artifacts (`wasce compile`) and
//! compile-cache entries (a keyed BLAKE3 MAC, `wasce_compiler::artifact`).
//!
//! An artifact holds machine code that runs as it is. A checksum would only catch accidents:
//! a guest whose preopen contains an artifact or the cache could rewrite it and recompute any
//! unkeyed hash. With a MAC, only a process that knows this user's key can write an artifact
//! this user's wasce will load.
//!
//! * The key file is `$WASCE_KEY_FILE`, else `$XDG_CONFIG_HOME/wasce/artifact.key` (when
//!   absolute), else `$HOME/.config/wasce/artifact.key`.
//! * It is created on first use: 32 bytes from `getrandom`, mode 0600, in a directory created
//!   0700; written to a temporary file and linked into place, so two processes racing to create
//!   it agree on one key.
//! * It is refused unless it is a regular file of exactly 32 bytes owned by this user, that no
//!   one else may read or write, in a directory no one else may write.
//! * A guest never reaches it: `wasce exec` declares the file host-private to the WASI layer
//!   (`WasiConfig::protect`), so a preopen of `/` or `$HOME` can neither read, replace nor
//!   remove it (nor rename a directory on its path).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasce_compiler::artifact::Key;

/// Why the key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no artifact key location (set WASCE_KEY_FILE, XDG_CONFIG_HOME or HOME)")]
    NoLocation,
    #[error("artifact key {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

const KEY_LEN: usize = 32;

/// Where this user's key lives (it may not exist yet).
pub fn default_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(file) = var("WASCE_KEY_FILE") {
        return Some(file);
    }
    if let Some(xdg) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("wasce").join("artifact.key"));
    }
    var("HOME").map(|home| home.join(".config").join("wasce").join("artifact.key"))
}

/// This user's key (`default_path`), loaded or created once per process.
pub fn user_key() -> Result<&'static Key, KeyError> {
    static KEY: OnceLock<Result<Key, KeyError>> = OnceLock::new();
    KEY.get_or_init(|| load_or_create(&default_path().ok_or(KeyError::NoLocation)?)).as_ref().map_err(Clone::clone)
}

/// Load the key at `path`, creating it (and its directory, private) if it does not exist.
pub fn load_or_create(path: &Path) -> Result<Key, KeyError> {
    let unusable = |reason: String| KeyError::Unusable { path: path.to_path_buf(), reason };
    match read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path).map_err(|e| unusable(e.to_string()))?,
        Err(e) => return Err(unusable(e.to_string())),
        Ok(()) => {}
    }
    check_dir(path).map_err(unusable)?;
    // Never through a symlink: the key is this very file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| unusable(if e.raw_os_error() == Some(libc::ELOOP) { "it is a symbolic link".into() } else { e.to_string() }))?;
    let meta = file.metadata().map_err(|e| unusable(e.to_string()))?;
    check_file(&meta).map_err(unusable)?;
    let mut key = [0u8; KEY_LEN];
    std::io::Read::read_exact(&mut &file, &mut key).map_err(|e| unusable(format!("cannot read it: {e}")))?;
    Ok(Key(key))
}

/// Whether `path` exists (its metadata can be read).
fn read(path: &Path) -> std::io::Result<()> {
    std::fs::symlink_metadata(path).map(drop)
}

/// A regular file of 32 bytes, ours, private.
fn check_file(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err("it belongs to another user".into());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!("others may read or write it (mode {:o}); it must be 0600", meta.mode() & 0o777));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(format!("{} bytes, not {KEY_LEN}", meta.len()));
    }
    Ok(())
}

/// The key's directory is ours and no one else may write it (they could replace the key).
fn check_dir(path: &Path) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| format!("its directory: {e}"))?;
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o022 != 0 {
        return Err(format!("its directory {} belongs to another user or others may write it", dir.display()));
    }
    Ok(())
}

/// Create a fresh key at `path`: random bytes in a private temporary file, linked into place
/// (an existing key, made by a process that raced us, wins).
fn create(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let key = random()?.0;
    let name = path.file_name().map_or("key".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &key).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// A fresh random key (`getrandom`).
pub fn random() -> std::io::Result<Key> {
    let mut key = [0u8; KEY_LEN];
    getrandom(&mut key)?;
    Ok(Key(key))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes into the buffer slice we pass.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr() as *mut _, buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("artifact.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a, b);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        // Another location, another key.
        assert_ne!(a, load_or_create(&dir.path().join("other.key")).unwrap());
    }

    #[test]
    fn refused_when_others_may_read_it_or_it_is_the_wrong_size() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&path).unwrap_err().to_string().contains("0600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), Key([1; 32]));
        std::fs::write(&path, [1u8; 31]).unwrap();
        assert!(load_or_create(&path).unwrap_err().to_string().contains("31 bytes"));
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
        assert!(load_or_create(&dir.path().join("link")).unwrap_err().to_string().contains("symbolic link"));
    }
}
