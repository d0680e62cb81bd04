//! Shared helpers of the red-team suite.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with its own compile cache and artifact key, so that a test never
/// touches the user's.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    /// `WASCE_KEY_FILE` for every `wasce` run, when set.
    pub key: Option<PathBuf>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap(), key: None }
    }

    /// A scratch whose `wasce` runs use the artifact key at `name` (relative to the scratch).
    pub fn with_key(name: &str) -> Scratch {
        let mut s = Scratch::new();
        s.key = Some(s.path(name));
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `wasce` with this scratch's cache (`cache/`) and the real KVM device.
    pub fn wasce(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wasce"));
        c.env("WASCE_CACHE_DIR", self.path("cache"))
            .env_remove("WASCE_KVM_DEVICE")
            .env_remove("WASCE_WASI_TRACE");
        if let Some(key) = &self.key {
            c.env("WASCE_KEY_FILE", key);
        }
        c
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(o: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

pub fn kvm_required() {
    assert!(Path::new("/dev/kvm").exists(), "KVM is not available: /dev/kvm is missing (these tests never pass silently)");
}
