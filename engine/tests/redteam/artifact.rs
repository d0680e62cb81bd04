//! Finding 1 (issue 12): rewriting the code that runs. Code was made executable in place over a
//! `MAP_PRIVATE` mapping of the `.cwasm` file (and of compile-cache entries), whose unwritten
//! pages keep following the file; and artifacts carried an unkeyed checksum. A guest whose
//! preopen contained its own artifact or the cache could plant code in its own run and in later
//! runs of other modules.
//!
//! The defence: code runs only from anonymous memory filled from one verified read of the
//! file; artifacts and cache entries carry a MAC under a per-user key the guest cannot read
//! (`wasce_engine::key`); a bad entry is never run.

use crate::common::*;

/// The ways a guest runs: KVM with each host-call transport, and process mode.
const MODES: [&[&str]; 3] = [&["--hostcall", "ring"], &["--hostcall", "exit"], &["--isolation", "process"]];

/// What the hostile guest writes into the file it opens.
enum Payload {
    /// 64 KiB of `int3` (0xcc) at this offset: any code it lands on traps or crashes.
    Int3At(u64),
    /// Everything on its stdin, replacing the whole file.
    Stdin,
}

/// A guest that opens `name` in its first preopen, writes `payload` into it, then calls a
/// function of its own that returns 7 and exits with that. Any other status means code other
/// than the compiled module's ran (or a WASI call failed: 10 + errno for path_open, 90 + errno
/// for fd_pwrite, 170 + errno for fd_read).
fn hostile(name: &str, payload: Payload) -> Vec<u8> {
    let (oflags, offset, fill) = match payload {
        Payload::Int3At(offset) => (0, offset, "(memory.fill (i32.const 65536) (i32.const 0xcc) (i32.const 65536)) (local.set $len (i32.const 65536))"),
        Payload::Stdin => (
            8, // O_TRUNC
            0,
            r#"(block $done (loop $more
                 (i32.store (i32.const 16) (i32.add (i32.const 65536) (local.get $len)))
                 (i32.store (i32.const 20) (i32.sub (i32.const 1048576) (local.get $len)))
                 (call $check (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)) (i32.const 170))
                 (br_if $done (i32.eqz (i32.load (i32.const 24))))
                 (local.set $len (i32.add (local.get $len) (i32.load (i32.const 24))))
                 (br $more)))"#,
        ),
    };
    wasm(&format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 32)
          (data (i32.const 1024) "{name}")
          (func $victim (result i32) (i32.const 7))
          (func $check (param i32 i32) (if (local.get 0) (then (call $proc_exit (i32.add (local.get 1) (local.get 0))))))
          (func (export "_start") (local $len i32)
            {fill}
            (call $check (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const {len}) (i32.const {oflags})
                                          (i64.const 0x1fffffff) (i64.const 0) (i32.const 0) (i32.const 32)) (i32.const 10))
            (i32.store (i32.const 16) (i32.const 65536))
            (i32.store (i32.const 20) (local.get $len))
            (call $check (call $fd_pwrite (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i64.const {offset}) (i32.const 24)) (i32.const 90))
            (call $proc_exit (call $victim))))"#,
        len = name.len()
    ))
}

fn exit_module(status: i32) -> String {
    format!(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const {status}))))"#
    )
}

fn preopen(dir: &std::path::Path) -> String {
    format!("{}::.", dir.display())
}

/// A guest whose preopen holds its own `.cwasm` overwrites the artifact's code with `int3`
/// while it runs, then calls into its own code: the code that runs is still the compiled
/// module's (it exits 7), and the rewritten artifact is refused on the next run before any of
/// it executes. Before the fix the code pages followed the file: the guest ran `int3` (in
/// process mode, in the host process itself).
#[test]
fn guest_rewriting_its_own_artifact_changes_nothing_that_runs() {
    kvm_required();
    for mode in MODES {
        let s = Scratch::new();
        let work = s.path("work");
        std::fs::create_dir(&work).unwrap();
        let src = s.write("prog.wasm", hostile("prog.cwasm", Payload::Int3At(4096)));
        let art = work.join("prog.cwasm");
        let o = s.wasce().arg("compile").arg(&src).arg("-o").arg(&art).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let original = std::fs::read(&art).unwrap();

        let o = s.wasce().arg("exec").args(mode).arg("--dir").arg(preopen(&work)).arg(&art).output().unwrap();
        assert_eq!(o.status.code(), Some(7), "{mode:?}: the guest's own code must run unchanged: {}", describe(&o));
        assert_ne!(std::fs::read(&art).unwrap(), original, "{mode:?}: the attack did write the artifact");

        let o = s.wasce().arg("exec").args(mode).arg("--dir").arg(preopen(&work)).arg(&art).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{mode:?}: {}", describe(&o));
        assert!(text(&o.stderr).contains("failed authentication"), "{mode:?}: {}", describe(&o));
    }
}

/// A guest whose preopen is the compile cache replaces a trusted module's entry with a valid
/// artifact of another module (compiled by wasce, but not under this user's key: the guest
/// cannot read the key). The trusted module's next run still runs the trusted code: the entry
/// fails authentication, is deleted and compiled again. Before the fix the entry passed the
/// unkeyed checksum and the planted code ran in the trusted module's place.
#[test]
fn cache_entry_planted_by_a_guest_never_runs() {
    kvm_required();
    for mode in MODES {
        let s = Scratch::new();
        let cache = s.path("cache");
        let trusted = s.write("trusted.wat", exit_module(42));
        let o = s.wasce().arg("exec").args(mode).arg(&trusted).output().unwrap();
        assert_eq!(o.status.code(), Some(42), "{}", describe(&o));
        let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = &entries[0];
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();

        // The attacker's artifact: another module, compiled by wasce under the attacker's key.
        let evil_src = s.write("evil.wat", exit_module(66));
        let evil = s.path("evil.cwasm");
        let o = s.wasce().env("WASCE_KEY_FILE", s.path("attacker/key")).arg("compile").arg(&evil_src).arg("-o").arg(&evil).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let evil_bytes = std::fs::read(&evil).unwrap();

        // The hostile guest copies it (from its stdin) over the trusted module's entry.
        let guest = s.write("guest.wasm", hostile(&name, Payload::Stdin));
        let mut child = s
            .wasce()
            .arg("exec")
            .args(mode)
            .arg("--no-cache")
            .arg("--dir")
            .arg(preopen(&cache))
            .arg(&guest)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &evil_bytes).unwrap();
        drop(child.stdin.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(7), "{mode:?}: {}", describe(&o));
        assert_eq!(std::fs::read(entry).unwrap(), evil_bytes, "{mode:?}: the guest planted the artifact");

        // The trusted module still runs its own code, and its entry is authentic again.
        let o = s.wasce().arg("exec").args(mode).arg("--verbose").arg(&trusted).output().unwrap();
        assert_eq!(o.status.code(), Some(42), "{mode:?}: the planted code ran: {}", describe(&o));
        assert!(text(&o.stderr).contains("replaced a bad cache entry"), "{mode:?}: {}", describe(&o));
        assert_ne!(std::fs::read(entry).unwrap(), evil_bytes);
        let o = s.wasce().arg("exec").args(mode).arg(&trusted).output().unwrap();
        assert_eq!(o.status.code(), Some(42), "{}", describe(&o));
    }
}

/// An artifact compiled under another user's key (or edited and re-tagged without the key)
/// is refused on the command line: `wasce exec` runs only what this user's wasce compiled.
#[test]
fn artifact_under_another_key_is_refused() {
    kvm_required();
    let s = Scratch::new();
    let src = s.write("m.wat", exit_module(5));
    let art = s.path("m.cwasm");
    let o = s.wasce().env("WASCE_KEY_FILE", s.path("other/key")).arg("compile").arg(&src).arg("-o").arg(&art).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = s.wasce().env("WASCE_KEY_FILE", s.path("other/key")).arg("exec").arg(&art).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "under its own key it runs: {}", describe(&o));
    for mode in MODES {
        let o = s.wasce().arg("exec").args(mode).arg(&art).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{mode:?}: {}", describe(&o));
        assert!(text(&o.stderr).contains("m.cwasm: artifact failed authentication"), "{mode:?}: {}", describe(&o));
    }
}
