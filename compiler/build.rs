//! The compiler's build id: a hash of the sources that decide what compiled code looks like
//! (this crate and the guest ABI in `hypercall/`) and of the locked dependency versions
//! (Cranelift, wasmparser). Artifacts and cache entries record it, so code compiled by one
//! build never runs under another build of the same version number.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs" || x == "toml") {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the workspace").to_path_buf();
    let mut inputs = Vec::new();
    files(&manifest.join("src"), &mut inputs);
    files(&root.join("hypercall/src"), &mut inputs);
    inputs.push(manifest.join("Cargo.toml"));
    inputs.push(root.join("Cargo.lock"));
    inputs.sort();
    let mut h = blake3::Hasher::new();
    for p in &inputs {
        println!("cargo:rerun-if-changed={}", p.display());
        h.update(p.strip_prefix(&root).unwrap_or(p).to_string_lossy().as_bytes());
        h.update(&std::fs::read(p).unwrap_or_default());
    }
    println!("cargo:rerun-if-changed={}", manifest.join("src").display());
    println!("cargo:rustc-env=WASCE_COMPILER_BUILD={}", &h.finalize().to_hex()[..12]);
}
