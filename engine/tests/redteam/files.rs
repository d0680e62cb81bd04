//! Special filesystems and files beneath a preopen (issue 12, finding 2).
//!
//! A hostile guest given `--dir /` (or `$HOME`, or `/dev`) asks for what a host process must
//! never hand out: `/proc/self/mem` (write shellcode into the host), `/proc/self/stat` and
//! `maps` (the host's layout), sysfs, `/dev/kvm`, `/dev/mem`, block devices, a FIFO whose open
//! blocks the host forever, and the host's own private files (the artifact key).
//!
//! The attacks are one hostile module, the *prober*: each argument is one operation,
//! `<fd><op><path>[|<path2>]`, and it prints one line per operation: the WASI errno, and after a
//! successful open that read or wrote, ` <errno> <bytes>` of that transfer. Operations:
//! `r` open for reading and read 16 bytes, `o` open read-write (no transfer), `w` open for
//! writing and write `PWND`, `t` the same with O_TRUNC, `c` the same with O_CREAT, `D` open a
//! directory, `s` path_filestat_get (following), `u` unlink, `d` rmdir, `k` mkdir, `n` rename
//! `path|path2`, `l` link `path|path2`, `y` symlink `target|path2`.

use crate::common::*;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// WASI errnos the tests expect.
const ACCES: &str = "2";
const NOTCAPABLE: &str = "76";

const PROBER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  ;; 0: fd out, 4: nread/nwritten, 8: iovec, 16/20: argc/argv size, 64: filestat, 128: read
  ;; buffer, 256: output line, 512: "PWND", 1024: argv pointers, 4096: argv strings.
  (memory (export "memory") 2)
  (data (i32.const 512) "PWND")
  (global $out (mut i32) (i32.const 256))
  (func $putc (param $c i32)
    (i32.store8 (global.get $out) (local.get $c))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))
  (func $putn (param $n i32)
    (if (i32.ge_u (local.get $n) (i32.const 10))
      (then (call $putn (i32.div_u (local.get $n) (i32.const 10)))))
    (call $putc (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10)))))
  (func $flush
    (i32.store (i32.const 8) (i32.const 256))
    (i32.store (i32.const 12) (i32.sub (global.get $out) (i32.const 256)))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 4)))
    (global.set $out (i32.const 256)))
  ;; path_open, then read 16 bytes (io 1), write "PWND" (io 2) or nothing (io 0), and close.
  (func $open (param $fd i32) (param $p i32) (param $l i32) (param $of i32) (param $rights i64) (param $io i32)
    (local $e i32) (local $h i32)
    (local.set $e (call $path_open (local.get $fd) (i32.const 1) (local.get $p) (local.get $l)
      (local.get $of) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 0)))
    (call $putn (local.get $e))
    (if (local.get $e) (then (return)))
    (local.set $h (i32.load (i32.const 0)))
    (if (local.get $io) (then
      (i32.store (i32.const 8) (select (i32.const 128) (i32.const 512) (i32.eq (local.get $io) (i32.const 1))))
      (i32.store (i32.const 12) (select (i32.const 16) (i32.const 4) (i32.eq (local.get $io) (i32.const 1))))
      (i32.store (i32.const 4) (i32.const 0))
      (local.set $e (if (result i32) (i32.eq (local.get $io) (i32.const 1))
        (then (call $fd_read (local.get $h) (i32.const 8) (i32.const 1) (i32.const 4)))
        (else (call $fd_write (local.get $h) (i32.const 8) (i32.const 1) (i32.const 4)))))
      (call $putc (i32.const 32)) (call $putn (local.get $e))
      (call $putc (i32.const 32)) (call $putn (i32.load (i32.const 4)))))
    (drop (call $fd_close (local.get $h))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func (export "_start")
    (local $argc i32) (local $i i32) (local $a i32) (local $fd i32) (local $op i32)
    (local $p i32) (local $l i32) (local $s i32) (local $q i32) (local $m i32)
    (if (call $args_sizes_get (i32.const 16) (i32.const 20)) (then unreachable))
    (local.set $argc (i32.load (i32.const 16)))
    (if (i32.gt_u (local.get $argc) (i32.const 200)) (then unreachable))
    (if (i32.gt_u (i32.load (i32.const 20)) (i32.const 100000)) (then unreachable))
    (if (call $args_get (i32.const 1024) (i32.const 4096)) (then unreachable))
    (local.set $i (i32.const 1))
    (block $end (loop $next
      (br_if $end (i32.ge_u (local.get $i) (local.get $argc)))
      (local.set $a (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $fd (i32.sub (i32.load8_u (local.get $a)) (i32.const 48)))
      (local.set $op (i32.load8_u offset=1 (local.get $a)))
      (local.set $p (i32.add (local.get $a) (i32.const 2)))
      (local.set $l (i32.sub (call $strlen (local.get $a)) (i32.const 2)))
      ;; split at '|'
      (local.set $s (i32.const 0)) (local.set $q (i32.const 0)) (local.set $m (i32.const 0))
      (block $nosplit (loop $scan
        (br_if $nosplit (i32.ge_u (local.get $s) (local.get $l)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $s))) (i32.const 124))
          (then
            (local.set $q (i32.add (local.get $p) (i32.add (local.get $s) (i32.const 1))))
            (local.set $m (i32.sub (local.get $l) (i32.add (local.get $s) (i32.const 1))))
            (local.set $l (local.get $s))
            (br $nosplit)))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $scan)))
      (if (i32.eq (local.get $op) (i32.const 114)) ;; r
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 0) (i64.const 2) (i32.const 1))))
      (if (i32.eq (local.get $op) (i32.const 111)) ;; o
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 0) (i64.const 66) (i32.const 0))))
      (if (i32.eq (local.get $op) (i32.const 119)) ;; w
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 0) (i64.const 64) (i32.const 2))))
      (if (i32.eq (local.get $op) (i32.const 116)) ;; t
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 8) (i64.const 64) (i32.const 2))))
      (if (i32.eq (local.get $op) (i32.const 99)) ;; c
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 1) (i64.const 64) (i32.const 2))))
      (if (i32.eq (local.get $op) (i32.const 68)) ;; D
        (then (call $open (local.get $fd) (local.get $p) (local.get $l) (i32.const 2) (i64.const 0x4000) (i32.const 0))))
      (if (i32.eq (local.get $op) (i32.const 115)) ;; s
        (then (call $putn (call $path_filestat_get (local.get $fd) (i32.const 1) (local.get $p) (local.get $l) (i32.const 64)))))
      (if (i32.eq (local.get $op) (i32.const 117)) ;; u
        (then (call $putn (call $path_unlink_file (local.get $fd) (local.get $p) (local.get $l)))))
      (if (i32.eq (local.get $op) (i32.const 100)) ;; d
        (then (call $putn (call $path_remove_directory (local.get $fd) (local.get $p) (local.get $l)))))
      (if (i32.eq (local.get $op) (i32.const 107)) ;; k
        (then (call $putn (call $path_create_directory (local.get $fd) (local.get $p) (local.get $l)))))
      (if (i32.eq (local.get $op) (i32.const 110)) ;; n
        (then (call $putn (call $path_rename (local.get $fd) (local.get $p) (local.get $l) (local.get $fd) (local.get $q) (local.get $m)))))
      (if (i32.eq (local.get $op) (i32.const 108)) ;; l
        (then (call $putn (call $path_link (local.get $fd) (i32.const 0) (local.get $p) (local.get $l) (local.get $fd) (local.get $q) (local.get $m)))))
      (if (i32.eq (local.get $op) (i32.const 121)) ;; y
        (then (call $putn (call $path_symlink (local.get $p) (local.get $l) (local.get $fd) (local.get $q) (local.get $m)))))
      (call $putc (i32.const 10))
      (call $flush)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))
)
"#;

/// Every way a guest runs: both isolation modes, and in KVM mode both host-call transports.
const MODES: [(&str, &[&str]); 3] = [
    ("kvm, ring", &["--isolation", "kvm", "--hostcall", "ring"]),
    ("kvm, exit", &["--isolation", "kvm", "--hostcall", "exit"]),
    ("process", &["--isolation", "process"]),
];

/// How long a run may take before it counts as blocked (a hang detector for FIFO opens, not a
/// timing assertion: a run takes milliseconds).
const HANG: Duration = Duration::from_secs(30);

/// Run `wasce exec` with `args` (flags, then the module and its arguments); kill it and fail
/// when it does not end within `HANG`.
fn run_wasce(s: &Scratch, args: &[String]) -> Result<std::process::Output, String> {
    let mut child = s.wasce().arg("exec").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Ok(child.wait_with_output().unwrap());
        }
        if start.elapsed() > HANG {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            return Err(format!("BLOCKED: the host was still inside a WASI call after {HANG:?} (killed)\n{}", describe(&o)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run the prober in one mode with `dirs` (`HOST::GUEST`) and `probes`; the output lines.
fn probe(s: &Scratch, mode: &[&str], dirs: &[String], probes: &[String]) -> Result<Vec<String>, String> {
    let module = s.path("prober.wasm");
    if !module.exists() {
        std::fs::write(&module, wasm(PROBER)).unwrap();
    }
    let mut args: Vec<String> = mode.iter().map(|a| a.to_string()).collect();
    for d in dirs {
        args.push("--dir".into());
        args.push(d.clone());
    }
    args.push(module.display().to_string());
    args.extend(probes.iter().cloned());
    let o = run_wasce(s, &args)?;
    if o.status.code() != Some(0) {
        return Err(format!("the prober did not run to the end\n{}", describe(&o)));
    }
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    if lines.len() != probes.len() {
        return Err(format!("{} lines for {} probes\n{}", lines.len(), probes.len(), describe(&o)));
    }
    Ok(lines)
}

/// What a probe must give.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused with exactly this errno (the first field of the line).
    Errno(&'static str),
    /// Refused with one of these errnos.
    OneOf(&'static [&'static str]),
    /// This whole line (success: `0`, or `0 <errno> <bytes>` after a transfer).
    Line(&'static str),
}

impl Expect {
    fn holds(self, line: &str) -> bool {
        let first = line.split(' ').next().unwrap_or("");
        match self {
            Expect::Errno(e) => first == e,
            Expect::OneOf(es) => es.contains(&first),
            Expect::Line(l) => line == l,
        }
    }
}

/// Run `cases` in every mode; fail listing every case that did not hold.
fn check_all(s: &Scratch, dirs: &[String], cases: &[(String, Expect, &str)]) {
    let probes: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let mut failures = Vec::new();
    for (name, mode) in MODES {
        match probe(s, mode, dirs, &probes) {
            Ok(lines) => {
                for ((p, expect, what), line) in cases.iter().zip(&lines) {
                    let ok = expect.holds(line);
                    eprintln!("[{name}] {p:<40} -> {line:<12} {}  ({what})", if ok { "ok" } else { "FAIL" });
                    if !ok {
                        failures.push(format!("[{name}] {p} ({what}): got `{line}`, expected {expect:?}"));
                    }
                }
            }
            Err(e) => failures.push(format!("[{name}] {e}")),
        }
    }
    assert!(failures.is_empty(), "dirs {dirs:?}:\n{}", failures.join("\n"));
}

/// The first block device under /dev (a path relative to /dev), if any.
fn block_device() -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Is `path` on the same mount as `/` (no mount point strictly between)? From
/// /proc/self/mountinfo (field 5 is the mount point).
fn on_root_mount(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    !info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m != "/" && path.starts_with(m))
}

/// Finding 2 (issue 12): `wasce exec --dir /::/` hands out `/proc/self/mem` (write shellcode
/// into the host), `/proc/self/stat` and `maps` (its layout), sysfs, `/dev/kvm` and block
/// devices: openat2's RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS stops none of them and Landlock
/// allows everything beneath `/`. Now no path crosses into another mount below a preopen
/// (procfs, sysfs, devtmpfs: ENOTCAPABLE), and with `/dev` preopened only /dev/null, /dev/zero,
/// /dev/random and /dev/urandom open (everything else: EACCES); regular files still work.
#[test]
fn dir_root_reaches_no_procfs_sysfs_or_device() {
    kvm_required();
    let s = Scratch::new();
    let data = s.write("data/file", "regular contents");
    let data_dir = data.parent().unwrap().canonicalize().unwrap();
    let dirs = vec!["/::/".to_string(), "/dev::/dev".to_string(), format!("{}::data", data_dir.display())];
    let proc_xdev = Expect::Errno(NOTCAPABLE);
    // Through `/`, a device node is refused by the mount rule (when /dev is its own mount) or
    // by the type rule (when it is not).
    let dev_via_root = Expect::OneOf(&[NOTCAPABLE, ACCES]);
    let mut cases: Vec<(String, Expect, &str)> = vec![
        ("3rproc/self/mem".into(), proc_xdev, "read the host's memory"),
        ("3oproc/self/mem".into(), proc_xdev, "open the host's memory read-write"),
        ("3wproc/self/mem".into(), proc_xdev, "write the host's memory"),
        ("3rproc/self/stat".into(), proc_xdev, "the host's layout (start of code, stack)"),
        ("3rproc/self/maps".into(), proc_xdev, "the host's mappings"),
        ("3rproc/self/environ".into(), proc_xdev, "the host's environment"),
        ("3Dproc/self/fd".into(), proc_xdev, "the host's descriptors"),
        ("3sproc/self/mem".into(), proc_xdev, "stat across the mount"),
        ("3rsys/kernel/uevent_seqnum".into(), Expect::Errno(NOTCAPABLE), "sysfs"),
        ("3Dsys/kernel".into(), Expect::Errno(NOTCAPABLE), "sysfs directory"),
        ("3odev/kvm".into(), dev_via_root, "/dev/kvm through /"),
        ("3rdev/null".into(), dev_via_root, "/dev is another mount below /"),
        ("4rkvm".into(), Expect::Errno(ACCES), "/dev/kvm: create VMs"),
        ("4okvm".into(), Expect::Errno(ACCES), "/dev/kvm read-write"),
        ("4rkmsg".into(), Expect::Errno(ACCES), "/dev/kmsg (1:11, a mem-major device not on the list)"),
        ("4rfull".into(), Expect::Errno(ACCES), "/dev/full (1:7, not on the list)"),
        ("4otty".into(), Expect::Errno(ACCES), "a tty (would become the controlling terminal)"),
        ("4optmx".into(), Expect::Errno(ACCES), "/dev/ptmx"),
        ("4Dpts".into(), Expect::Errno(NOTCAPABLE), "devpts, a mount below /dev"),
        ("4rnull".into(), Expect::Line("0 0 0"), "/dev/null works"),
        ("4wnull".into(), Expect::Line("0 0 4"), "/dev/null takes writes"),
        ("4rzero".into(), Expect::Line("0 0 16"), "/dev/zero works"),
        ("4rurandom".into(), Expect::Line("0 0 16"), "/dev/urandom works"),
        ("4rrandom".into(), Expect::Line("0 0 16"), "/dev/random works"),
        ("5rfile".into(), Expect::Line("0 0 16"), "a regular file works"),
        ("5cnew".into(), Expect::Line("0 0 4"), "a regular file can be created"),
        ("5D.".into(), Expect::Line("0"), "a directory opens"),
    ];
    for dev in ["mem", "port", "sda", "nvme0n1"] {
        if Path::new("/dev").join(dev).exists() {
            cases.push((format!("4r{dev}"), Expect::Errno(ACCES), "a dangerous device"));
        } else {
            eprintln!("(/dev/{dev} does not exist here; not probed)");
        }
    }
    match block_device() {
        Some(b) => {
            // Read-only: a broken policy must not write to a disk.
            cases.push((format!("4r{b}"), Expect::Errno(ACCES), "a block device"));
            cases.push((format!("3rdev/{b}"), dev_via_root, "a block device through /"));
        }
        None => eprintln!("NOTE: no block device under /dev on this host: the block-device probe is not run"),
    }
    if on_root_mount(&data) {
        let rel = data.canonicalize().unwrap().strip_prefix("/").unwrap().display().to_string();
        cases.push((format!("3r{rel}"), Expect::Line("0 0 16"), "a regular file through /"));
    } else {
        eprintln!("NOTE: the scratch directory is on another mount than /; the regular file is probed through its own preopen only");
    }
    check_all(&s, &dirs, &cases);
}

/// Finding 2 (issue 12): a FIFO beneath a preopen blocked the host: path_open of it for reading
/// (or writing) waits in open(2) for the other end, which never comes, and the run hangs past
/// any deadline. Now FIFOs (and sockets) are refused (EACCES) without being opened.
#[test]
fn fifo_and_socket_beneath_a_preopen_are_refused_without_blocking() {
    kvm_required();
    let s = Scratch::new();
    let dir = s.path("pre");
    std::fs::create_dir(&dir).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0, "mkfifo");
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    let dirs = vec![format!("{}::/", dir.display())];
    let cases: Vec<(String, Expect, &str)> = vec![
        ("3rfifo".into(), Expect::Errno(ACCES), "FIFO for reading: would wait for a writer"),
        ("3wfifo".into(), Expect::Errno(ACCES), "FIFO for writing: would wait for a reader"),
        ("3ofifo".into(), Expect::Errno(ACCES), "FIFO read-write"),
        ("3tfifo".into(), Expect::Errno(ACCES), "FIFO with O_TRUNC"),
        ("3rsock".into(), Expect::Errno(ACCES), "a unix socket"),
        ("3sfifo".into(), Expect::Line("0"), "stat opens nothing: allowed"),
    ];
    check_all(&s, &dirs, &cases);
}

/// Finding 2 (issue 12): a preopen of a pseudo filesystem (`--dir /proc`, `/sys`, `/dev/pts`,
/// cgroup) handed the guest kernel and process state; and `--dir` of a FIFO blocked the host in
/// open(2) before anything ran. Now both are refused with one clear line naming the directory.
#[test]
fn pseudo_filesystem_preopens_are_refused() {
    kvm_required();
    let s = Scratch::new();
    let fifo = s.path("fifo");
    let cfifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o666) }, 0, "mkfifo");
    let module = s.write("prober.wasm", wasm(PROBER));
    let mut refused: Vec<(PathBuf, &str)> = vec![
        ("/proc".into(), "procfs"),
        ("/proc/self".into(), "procfs"),
        ("/proc/self/fd".into(), "procfs"),
        ("/sys".into(), "sysfs"),
        ("/sys/kernel".into(), "sysfs"),
        ("/dev/pts".into(), "devpts"),
        (fifo.clone(), "not a directory"),
        ("/dev/null".into(), "not a directory"),
    ];
    for (dir, fs) in [("/sys/fs/cgroup/unified", "cgroup2"), ("/sys/fs/cgroup/memory", "cgroup"), ("/sys/kernel/debug", "debugfs"), ("/sys/kernel/security", "securityfs")] {
        // Only where it is mounted (its own filesystem, not an empty sysfs directory).
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(dir));
        if mounted {
            refused.push((dir.into(), fs));
        }
    }
    let mut failures = Vec::new();
    for (name, mode) in MODES {
        for (dir, why) in &refused {
            let mut args: Vec<String> = mode.iter().map(|a| a.to_string()).collect();
            args.extend(["--dir".into(), format!("{}::/x", dir.display()), module.display().to_string(), "3Dx".into()]);
            match run_wasce(&s, &args) {
                Err(e) => failures.push(format!("[{name}] --dir {}: {e}", dir.display())),
                Ok(o) => {
                    let err = text(&o.stderr);
                    let ok = o.status.code() == Some(1)
                        && err.lines().count() == 1
                        && err.contains(&dir.display().to_string())
                        && err.contains(why);
                    eprintln!("[{name}] --dir {} -> {:?} {}", dir.display(), o.status.code(), err.trim());
                    if !ok {
                        failures.push(format!("[{name}] --dir {} not refused with `{why}`:\n{}", dir.display(), describe(&o)));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- protected host files (the artifact key) ------------------------------------------------------

use std::sync::{Arc, Mutex};
use wasce_engine::wasi::{add_to_linker, run_command, Preopen, Stdio as WasiStdio, WasiConfig};
use wasce_engine::{HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig};

/// The library's ways to run: both isolation modes, both host-call transports in the VM.
const LIB_MODES: [(&str, Isolation, HostcallTransport); 3] = [
    ("kvm, ring", Isolation::Kvm, HostcallTransport::Ring),
    ("kvm, exit", Isolation::Kvm, HostcallTransport::Exit),
    ("process", Isolation::Process, HostcallTransport::Auto),
];

/// Run the prober through the library with `root` preopened as `/` (fd 3) and `protect`ed
/// host paths; its output lines.
fn probe_lib(isolation: Isolation, hostcall: HostcallTransport, root: &Path, protect: &[PathBuf], probes: &[String]) -> Result<Vec<String>, String> {
    let module = wasce_engine::load(&wasm(PROBER), &Settings::default()).map_err(|e| format!("load: {e}"))?;
    let mut store = Store::new(StoreConfig { isolation, hostcall, ..StoreConfig::default() }).map_err(|e| format!("store: {e}"))?;
    let mut linker = Linker::new();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut config = WasiConfig {
        args: std::iter::once("prober".to_string()).chain(probes.iter().cloned()).collect(),
        preopens: vec![Preopen { host: root.to_path_buf(), guest: "/".into() }],
        stdout: WasiStdio::Capture(out.clone()),
        stderr: WasiStdio::Null,
        ..WasiConfig::default()
    };
    for p in protect {
        config.protect(p);
    }
    add_to_linker(&mut store, &mut linker, config).map_err(|e| format!("wasi: {e}"))?;
    let status = run_command(&mut store, &linker, &module).map_err(|e| format!("run: {e}"))?;
    if status != 0 {
        return Err(format!("exit status {status}"));
    }
    let lines: Vec<String> = text(&out.lock().unwrap()).lines().map(str::to_string).collect();
    if lines.len() != probes.len() {
        return Err(format!("{} lines for {} probes: {lines:?}", lines.len(), probes.len()));
    }
    Ok(lines)
}

/// The fixture: `root` (preopened as `/`) holding a home directory with the host's key.
///
/// ```text
/// root/home/.config/wasce/key     "SECRETKEY"  (the protected file)
/// root/home/.config/wasce/other   "sibling"
/// root/home/.config/other.txt     "config"
/// root/home/file                  "file contents"
/// root/home/lnk -> .config/wasce/key           (a symlink the host left)
/// root/hard                                    (a hard link of the key the host left)
/// root/cfg -> home/.config                     (for protecting a path through a symlink)
/// ```
fn key_fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let wasce = root.join("home/.config/wasce");
    std::fs::create_dir_all(&wasce).unwrap();
    let key = wasce.join("key");
    std::fs::write(&key, "SECRETKEY").unwrap();
    std::fs::write(wasce.join("other"), "sibling").unwrap();
    std::fs::write(root.join("home/.config/other.txt"), "config").unwrap();
    std::fs::write(root.join("home/file"), "file contents").unwrap();
    std::os::unix::fs::symlink(".config/wasce/key", root.join("home/lnk")).unwrap();
    std::fs::hard_link(&key, root.join("hard")).unwrap();
    std::os::unix::fs::symlink("home/.config", root.join("cfg")).unwrap();
    (tmp, root, key)
}

/// Each probe: (operation, with the key protected, without protection (the control: the attack
/// is real), what it tries). `None`: the control's result does not matter.
type KeyCase = (&'static str, Expect, Option<Expect>, &'static str);

fn key_cases() -> Vec<KeyCase> {
    let ok = Expect::Line("0");
    let acces = Expect::Errno(ACCES);
    vec![
        // What stays possible (first, so that the control's attacks below cannot disturb it).
        ("3rhome/.config/wasce/other", Expect::Line("0 0 7"), Some(Expect::Line("0 0 7")), "read a sibling in the key's directory"),
        ("3rhome/.config/other.txt", Expect::Line("0 0 6"), Some(Expect::Line("0 0 6")), "read a file in an ancestor"),
        ("3Dhome/.config/wasce", ok, Some(ok), "open the key's directory"),
        ("3whome/file", Expect::Line("0 0 4"), Some(Expect::Line("0 0 4")), "write a file elsewhere"),
        ("3chome/new", Expect::Line("0 0 4"), Some(Expect::Line("0 0 4")), "create a file elsewhere"),
        ("3nhome/new|home/new2", ok, Some(ok), "rename elsewhere"),
        ("3lhome/new2|home/new3", ok, Some(ok), "link elsewhere"),
        ("3uhome/new3", ok, Some(ok), "unlink elsewhere"),
        ("3khome/d", ok, Some(ok), "mkdir elsewhere"),
        ("3nhome/d|home/d2", ok, Some(ok), "rename a directory elsewhere"),
        ("3dhome/d2", ok, Some(ok), "rmdir elsewhere"),
        ("3nhome/.config/other.txt|home/o2", ok, Some(ok), "rename a file out of an ancestor"),
        ("3nhome/o2|home/.config/other.txt", ok, Some(ok), "rename a file into an ancestor"),
        // The attacks.
        ("3rhome/.config/wasce/key", acces, Some(Expect::Line("0 0 9")), "read the key"),
        ("3shome/.config/wasce/key", acces, Some(ok), "stat the key"),
        ("3rhome/lnk", acces, Some(Expect::Line("0 0 9")), "read the key through a symlink"),
        ("3rhard", acces, Some(Expect::Line("0 0 9")), "read the key through a hard link"),
        ("3whome/.config/wasce/key", acces, Some(Expect::Line("0 0 4")), "overwrite the key"),
        ("3thome/.config/wasce/key", acces, Some(Expect::Line("0 0 4")), "truncate the key"),
        ("3chome/.config/wasce/new", acces, Some(Expect::Line("0 0 4")), "create a file beside the key"),
        ("3y.config/wasce/planted|home/evil", ok, Some(ok), "(a dangling symlink into the key's directory)"),
        ("3chome/evil", Expect::Errno("32"), Some(Expect::Line("0 0 4")), "create beside the key through that symlink (ELOOP)"),
        ("3khome/.config/wasce/sub", acces, Some(ok), "mkdir beside the key"),
        ("3dhome/.config/wasce/sub", acces, Some(ok), "rmdir beside the key"),
        ("3ykey|home/.config/wasce/sym", acces, Some(ok), "symlink beside the key"),
        ("3lhome/.config/wasce/key|home/hard2", acces, Some(ok), "hard-link the key out"),
        ("3uhome/.config/wasce/other", acces, Some(ok), "unlink beside the key"),
        ("3nhome/file|home/.config/wasce/key", acces, Some(ok), "rename a file over the key (replace it)"),
        ("3nhome/.config/wasce/key|home/stolen", acces, Some(ok), "rename the key away"),
        ("3nhome/stolen|home/.config/wasce/key", acces, Some(ok), "rename a file in as the key"),
        ("3uhome/.config/wasce/key", acces, Some(ok), "unlink the key"),
        ("3nhome/.config/wasce|home/w2", acces, Some(ok), "rename the key's directory"),
        ("3nhome/w2|home/.config/wasce", acces, Some(ok), "put a directory in its place"),
        ("3nhome/.config|home/c2", acces, Some(ok), "rename an ancestor"),
        ("3nhome/c2|home/.config", acces, Some(ok), "put a directory in the ancestor's place"),
        ("3nhome|h2", acces, Some(ok), "rename the home directory"),
        ("3nh2|home", acces, Some(ok), "put a directory in its place"),
        ("3khome/empty", ok, Some(ok), "(an empty directory)"),
        ("3nhome/empty|home/.config", acces, None, "rename an empty directory over an ancestor"),
        ("3dhome/.config", acces, None, "rmdir an ancestor"),
        ("3uhome/lnk", ok, Some(ok), "a symlink the host left is no ancestor: it may go"),
    ]
}

/// Finding 2 (issue 12), host-private files: with `--dir $HOME` or `--dir /` the guest could
/// read the artifact MAC key (`~/.config/wasce/...`), overwrite it, or replace it or a directory
/// on its way (rename over, unlink, link, rename of its directory or of an ancestor), and then
/// forge artifacts the host would run. `WasiConfig::protect` keeps it: every attack fails with
/// EACCES while everything around it still works; the same probes without protection (the
/// control) succeed, so each attack is real.
#[test]
fn protected_key_file_cannot_be_read_or_replaced() {
    kvm_required();
    let cases = key_cases();
    let probes: Vec<String> = cases.iter().map(|c| c.0.to_string()).collect();
    let mut failures = Vec::new();
    for (name, isolation, hostcall) in LIB_MODES {
        for protected in [true, false] {
            let (_tmp, root, key) = key_fixture();
            let protect = if protected { vec![key.clone()] } else { vec![] };
            let lines = match probe_lib(isolation, hostcall, &root, &protect, &probes) {
                Ok(l) => l,
                Err(e) => {
                    failures.push(format!("[{name}, protected {protected}] {e}"));
                    continue;
                }
            };
            for ((p, with, without, what), line) in cases.iter().zip(&lines) {
                let expect = if protected { Some(*with) } else { *without };
                let ok = expect.is_none_or(|e| e.holds(line));
                eprintln!("[{name}, protected {protected}] {p:<40} -> {line:<10} {} ({what})", if ok { "ok" } else { "FAIL" });
                if !ok {
                    failures.push(format!("[{name}, protected {protected}] {p} ({what}): got `{line}`, expected {expect:?}"));
                }
            }
            if protected {
                let now = std::fs::read_to_string(&key).unwrap_or_else(|e| format!("<{e}>"));
                if now != "SECRETKEY" {
                    failures.push(format!("[{name}] the key now reads {now:?}"));
                }
                let mut entries: Vec<String> = std::fs::read_dir(key.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
                entries.sort();
                if entries != ["key", "other"] {
                    failures.push(format!("[{name}] the key's directory now holds {entries:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Finding 2 (issue 12), host-private files: a key path that runs through a symlink
/// (`root/cfg -> home/.config`) is read by the host through that symlink, so replacing the
/// symlink would hand the host the guest's key next time: the symlink is protected too. A
/// key that does not exist yet keeps its future directory closed to new entries.
#[test]
fn protected_path_through_a_symlink_and_a_missing_key() {
    kvm_required();
    let acces = Expect::Errno(ACCES);
    let cases: Vec<(String, Expect, &str)> = vec![
        ("3rcfg/wasce/key".into(), acces, "read the key through the symlinked path"),
        ("3ucfg".into(), acces, "unlink the symlink on the key's path"),
        ("3nhome/file|cfg".into(), acces, "rename a file over that symlink"),
        ("3nhome/.config/wasce|home/x".into(), acces, "rename the real directory"),
        ("3chome/.config/wasce/key2".into(), acces, "create the missing second key"),
        ("3chome/.config/new".into(), Expect::Line("0 0 4"), "create elsewhere"),
    ];
    let probes: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let mut failures = Vec::new();
    for (name, isolation, hostcall) in LIB_MODES {
        let (_tmp, root, _key) = key_fixture();
        let protect = vec![root.join("cfg/wasce/key"), root.join("home/.config/wasce/key2")];
        match probe_lib(isolation, hostcall, &root, &protect, &probes) {
            Ok(lines) => {
                for ((p, expect, what), line) in cases.iter().zip(&lines) {
                    let ok = expect.holds(line);
                    eprintln!("[{name}] {p:<40} -> {line:<10} {} ({what})", if ok { "ok" } else { "FAIL" });
                    if !ok {
                        failures.push(format!("[{name}] {p} ({what}): got `{line}`, expected {expect:?}"));
                    }
                }
            }
            Err(e) => failures.push(format!("[{name}] {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `wasce exec` itself protects the user's artifact key: with the home directory that holds it
/// preopened (as `--dir ~` would), the guest can neither read nor overwrite, remove, or rename
/// away the key or a directory on its path, and the key is unchanged afterwards. (The key
/// exists before the guest runs: `exec` creates it first, so no guest can plant one.)
#[test]
fn exec_protects_the_artifact_key_under_a_home_preopen() {
    kvm_required();
    for (name, mode) in MODES {
        let s = Scratch::with_key("home/.config/wasce/artifact.key");
        let home = s.path("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("mine.txt"), "mine").unwrap();
        let probes: Vec<String> = [
            "3r.config/wasce/artifact.key",
            "3w.config/wasce/artifact.key",
            "3t.config/wasce/artifact.key",
            "3u.config/wasce/artifact.key",
            "3n.config|stolen",
            "3n.config/wasce|.config/w2",
            "3nmine.txt|.config/wasce/artifact.key",
            "3c.config/wasce/new.key",
            "3rmine.txt",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        let lines = probe(&s, mode, &[format!("{}::.", home.display())], &probes).unwrap_or_else(|e| panic!("[{name}] {e}"));
        let key = s.key.clone().unwrap();
        let before = std::fs::read(&key).expect("exec created the key before the guest ran");
        assert_eq!(before.len(), 32);
        for (p, line) in probes.iter().zip(&lines).take(probes.len() - 1) {
            assert_eq!(line.split(' ').next(), Some(ACCES), "[{name}] {p}: got `{line}`");
        }
        assert!(lines.last().unwrap().starts_with("0 0 4"), "[{name}] the guest's own file still reads: {lines:?}");
        assert_eq!(std::fs::read(&key).unwrap(), before, "[{name}] the key changed");
        assert!(home.join("mine.txt").exists() && !home.join("stolen").exists());
    }
}
