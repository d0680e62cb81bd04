//! Host descriptors (found running the suite inside nested SVM, where the soft `RLIMIT_NOFILE`
//! is 1024): a guest that opens files until it gets an error must hit its own table's limit,
//! never the host process's, or the host could no longer open what it needs itself (a directory
//! listing, the compile cache, another VM).

use crate::common::*;
use std::os::unix::process::CommandExt;

const MODES: [&[&str]; 3] = [&["--hostcall", "ring"], &["--hostcall", "exit"], &["--isolation", "process"]];

/// Opens `.` until path_open fails, then lists the preopen (which makes the host open the
/// directory again). Exits with 100 + the errno that stopped the opens if it was not EMFILE
/// (33), else with the readdir's errno (0: the host could still open it).
const EXHAUST: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (data (i32.const 100) ".")
  (func (export "_start") (local $e i32)
    (block $done (loop $more
      (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 2)
                                     (i64.const 0x4000) (i64.const 0) (i32.const 0) (i32.const 0)))
      (br_if $done (local.get $e))
      (br $more)))
    (if (i32.ne (local.get $e) (i32.const 33)) (then (call $exit (i32.add (i32.const 100) (local.get $e)))))
    (call $exit (call $fd_readdir (i32.const 3) (i32.const 1024) (i32.const 4096) (i64.const 0) (i32.const 200)))))"#;

/// With a soft descriptor limit of 300 (below the default table size of 1024), the guest's
/// opens stop at its table's limit and the host can still open the directory it lists.
/// Before the fix the guest took every descriptor and the listing failed with EMFILE.
#[test]
fn guest_fd_exhaustion_leaves_the_host_descriptors() {
    kvm_required();
    let s = Scratch::new();
    let module = s.write("exhaust.wasm", wasm(EXHAUST));
    let dir = s.path("d");
    std::fs::create_dir(&dir).unwrap();
    for mode in MODES {
        let mut cmd = s.wasce();
        cmd.arg("exec").args(mode).arg("--dir").arg(format!("{}::.", dir.display())).arg(&module);
        // SAFETY: setrlimit in the child between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 300, rlim_max: 300 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode:?}: {}", describe(&o));
    }
}
