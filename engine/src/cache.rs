//! The compile cache of `wasce exec`: compiled modules kept as AOT artifacts (`.cwasm`), so that
//! running the same module again maps its code instead of compiling it.
//!
//! * The key is a keyed BLAKE3 hash (under the user's artifact key, `crate::key`) of the
//!   WebAssembly bytes and of everything else the code depends on: the compiler version, the
//!   artifact format version, the compiler settings and the host's code generator
//!   (`wasce_compiler::isa_description`). Nobody without the key can compute which entry a
//!   module would use, let alone make two modules share one. An entry is the file
//!   `<key>.cwasm` in the cache directory.
//! * The directory is `$WASCE_CACHE_DIR`, else `$XDG_CACHE_HOME/wasce`, else
//!   `~/.cache/wasce`. It is created private (0700) and refused if another user owns it or others
//!   may write to it: an artifact holds native code that runs as it is.
//! * Entries are written to a temporary file and renamed into place, so a reader never sees half
//!   an entry and concurrent writers do not clash.
//! * An entry is never trusted: it is read once and goes through the artifact loader's checks
//!   (the MAC under the user's key, format and compiler version, ISA, every decoded index), and
//!   one that fails them (corrupted, truncated, written by something else, such as a guest
//!   whose preopen contains the cache) is deleted and the module compiled again. Its code is
//!   copied out of the verified bytes (`crate::code`), so rewriting the file later changes
//!   nothing that runs.

use crate::error::Error;
use crate::store::Module;
use crate::code::LoadedModule;
use std::path::{Path, PathBuf};
use wasce_compiler::artifact::{self, Key};
use wasce_compiler::{BoundsChecks, CompiledModule, Settings};

/// A cache directory that has been checked (see the module documentation), and the key its
/// entries are named and authenticated with.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    key: Key,
}

/// What a lookup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The module was loaded from its entry; nothing was compiled.
    Hit,
    /// There was no entry: the module was compiled, and stored unless `store_error` says why not.
    Miss { store_error: Option<String> },
    /// The entry failed the loader's checks (`reason`): it was deleted, the module compiled and
    /// stored again.
    Replaced { reason: String, store_error: Option<String> },
}

impl Outcome {
    pub fn compiled(&self) -> bool {
        !matches!(self, Outcome::Hit)
    }
}

impl Cache {
    /// The directory the cache uses by default: `$WASCE_CACHE_DIR`, `$XDG_CACHE_HOME/wasce`
    /// (when absolute), or `$HOME/.cache/wasce`; `None` when none of them is set.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = var("WASCE_CACHE_DIR") {
            return Some(dir);
        }
        if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
            return Some(xdg.join("wasce"));
        }
        var("HOME").map(|home| home.join(".cache").join("wasce"))
    }

    /// Open the default cache directory (`default_dir`), creating it if needed, with this
    /// user's artifact key.
    pub fn open_default() -> Result<Cache, String> {
        let dir = Self::default_dir().ok_or("no cache directory (set WASCE_CACHE_DIR, XDG_CACHE_HOME or HOME)")?;
        let key = crate::key::user_key().map_err(|e| e.to_string())?;
        Self::open(dir, key.clone())
    }

    /// Open (creating it private if needed) the cache directory `dir`, whose entries are named
    /// and authenticated with `key`. Refused when it is not a directory, another user owns it,
    /// or others may write to it.
    pub fn open(dir: impl Into<PathBuf>, key: Key) -> Result<Cache, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let dir = dir.into();
        let shown = dir.display();
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create the cache directory {shown}: {e}"))?;
        }
        let meta = std::fs::metadata(&dir).map_err(|e| format!("cannot use the cache directory {shown}: {e}"))?;
        if !meta.is_dir() {
            return Err(format!("the cache directory {shown} is not a directory"));
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(format!("the cache directory {shown} belongs to another user"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!("the cache directory {shown} is writable by other users"));
        }
        Ok(Cache { dir, key })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the entry of `wasm` compiled with `settings` by this compiler for this host.
    pub fn entry_name(&self, wasm: &[u8], settings: &Settings) -> Result<String, Error> {
        let isa = artifact::host_isa().map_err(|e| Error::Compile(wasce_compiler::CompileError::Isa(e.to_string())))?;
        let context = format!(
            "wasce-cache-1\0{}\0{}\0{isa}\0{}\0{}\0features {:#x}",
            artifact::COMPILER_VERSION,
            artifact::FORMAT_VERSION,
            match settings.bounds_checks {
                BoundsChecks::GuardPages => "guard-pages",
                BoundsChecks::Explicit => "explicit",
            },
            if settings.consume_fuel { "fuel" } else { "no-fuel" },
            settings.features.bits(),
        );
        // The context's length first, so that no context/module split is ambiguous.
        let mut h = blake3::Hasher::new_keyed(&self.key.0);
        h.update(&(context.len() as u64).to_le_bytes());
        h.update(context.as_bytes());
        h.update(wasm);
        Ok(h.finalize().to_hex().to_string())
    }

    /// The file of the entry for `wasm` and `settings`.
    pub fn entry_path(&self, wasm: &[u8], settings: &Settings) -> Result<PathBuf, Error> {
        Ok(self.dir.join(format!("{}.cwasm", self.entry_name(wasm, settings)?)))
    }

    /// Load `wasm` (a module's bytes: WebAssembly binary, or text when `compile` parses it)
    /// compiled with `settings` from the cache, or compile it with `compile` (e.g.
    /// `crate::compile_confined` with its limits, or `wasce_compiler::compile`) and store it.
    /// Failing to store an entry is not an error (see `Outcome`); failing to compile is.
    pub fn load_or_compile(
        &self,
        wasm: &[u8],
        settings: &Settings,
        compile: impl FnOnce(&[u8], &Settings) -> Result<CompiledModule, Error>,
    ) -> Result<(Module, Outcome), Error> {
        let path = self.entry_path(wasm, settings)?;
        let mut replaced = None;
        if path.exists() {
            match self.load_entry(&path, settings) {
                Ok(module) => return Ok((module, Outcome::Hit)),
                Err(reason) => {
                    // Never trusted, never kept: compile again below.
                    let _ = std::fs::remove_file(&path);
                    replaced = Some(reason);
                }
            }
        }
        let compiled = compile(wasm, settings)?;
        let store_error = match artifact::serialize(&compiled, settings, &self.key) {
            Ok(bytes) => write_atomically(&path, &bytes).err(),
            Err(e) => Some(e.to_string()),
        };
        let module = LoadedModule::new(compiled)?;
        let outcome = match replaced {
            None => Outcome::Miss { store_error },
            Some(reason) => Outcome::Replaced { reason, store_error },
        };
        Ok((module, outcome))
    }

    /// Load a cache entry (read once, then verified), checking besides what the loader checks
    /// that it was compiled with `settings`.
    fn load_entry(&self, path: &Path, settings: &Settings) -> Result<Module, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let header = artifact::header(&bytes, &self.key).map_err(|e| e.to_string())?;
        if header.consume_fuel != settings.consume_fuel || header.bounds_checks != settings.bounds_checks || header.features != settings.features {
            return Err("compiled with other settings".into());
        }
        LoadedModule::from_artifact_bytes(&bytes, &self.key).map_err(|e| e.to_string())
    }
}

/// Write `bytes` to a temporary file beside `path` and rename it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().map_or("entry".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_name_depends_on_bytes_settings_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c"), Key([1; 32])).unwrap();
        let other_key = Cache::open(dir.path().join("c"), Key([2; 32])).unwrap();
        let s = Settings::default();
        let fuel = Settings { consume_fuel: true, ..Settings::default() };
        let k = cache.entry_name(b"\0asm\x01\0\0\0", &s).unwrap();
        assert_eq!(k, cache.entry_name(b"\0asm\x01\0\0\0", &s).unwrap());
        assert_ne!(k, cache.entry_name(b"\0asm\x01\0\0\0", &fuel).unwrap());
        assert_ne!(k, cache.entry_name(b"\0asm\x01\0\0\0\0", &s).unwrap());
        assert_ne!(k, other_key.entry_name(b"\0asm\x01\0\0\0", &s).unwrap());
    }
}
