//! Escape and abuse tests for the WASI preview1 host (`engine/src/wasi/`).
//!
//! Every case is a small WAT guest that imports `wasi_snapshot_preview1`, attacks the host with
//! paths and pointers placed in its linear memory, and returns the WASI errno of the attack.
//! Each case runs in both isolation modes on a fresh fixture and asserts:
//!
//! - the exact errno;
//! - that nothing outside the preopens was written or created: the tree around the sandbox
//!   (`ROOT`, minus the two preopens) is snapshotted before and after — kinds, contents, symlink
//!   targets, sizes and mtimes must be unchanged;
//! - that nothing outside was read: no secret (`TOPSECRET`, `root:x:`) appears in the guest's
//!   memory afterwards;
//! - plus a per-case check where the case needs one (file sizes, what a readlink returned, ...).
//!
//! Fixture (`ROOT` is a fresh temporary directory):
//!
//! ```text
//! ROOT/secret                      "TOPSECRET-root"
//! ROOT/outside/secret              "TOPSECRET-outside"
//! ROOT/outside/x                   "TOPSECRET-x"
//! ROOT/outside/dir/
//! ROOT/sandbox/          fd 3, guest name "."
//!     file               "inside file contents"
//!     a/b/               directories
//!     inner -> a                              (a symlink that stays inside: allowed)
//!     link_rel -> ../outside                  (relative symlink to a directory outside)
//!     link_abs -> ROOT/outside                (absolute symlink)
//!     secret_rel -> ../outside/secret         (symlinks to a file outside)
//!     secret_abs -> ROOT/outside/secret
//!     dangling_out -> ../outside/created      (dangling, would create outside if followed)
//!     dangling_dir -> ../outside/newdir
//!     probe_no -> ../outside/nonexistent      (for existence oracles)
//!     dotdot -> ..    a/up -> ../..           (symlinks to the parent of the sandbox)
//!     loop1 -> loop2  loop2 -> loop1  self -> self
//!     proc_root -> /proc/self/root  proc_fd0 -> /proc/self/fd/0  proc_self -> /proc/self
//!     proc_cwd -> /proc/self/cwd    proc_rel -> ../../../../../../../../../../proc/self/root
//!     fifo               a named pipe
//! ROOT/sandbox2/         fd 4, guest name "other"
//!     file2              "second preopen"
//! ```
//!
//! Run with `--nocapture` to see the table of cases with the errno each returns in each mode.
//! Needs /dev/kvm (fails loudly without it, as the other engine tests do).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use wasce_engine::wasi::{add_to_linker, Preopen, Stdio, WasiConfig};
use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig};

// WASI errno values (engine/src/wasi/abi.rs).
const SUCCESS: u16 = 0;
const ACCES: u16 = 2;
const BADF: u16 = 8;
const EXIST: u16 = 20;
const FAULT: u16 = 21;
const FBIG: u16 = 22;
const ILSEQ: u16 = 25;
const INVAL: u16 = 28;
const LOOP: u16 = 32;
const MFILE: u16 = 33;
const NOENT: u16 = 44;
const NOTDIR: u16 = 54;
const NOTCAPABLE: u16 = 76;

// ---- the guest ---------------------------------------------------------------------------------

/// The WASI functions the guests import, with their wasm parameter types (all return i32).
const IMPORTS: &[(&str, &str)] = &[
    ("args_get", "i32 i32"),
    ("fd_allocate", "i32 i64 i64"),
    ("fd_close", "i32"),
    ("fd_fdstat_set_flags", "i32 i32"),
    ("fd_filestat_get", "i32 i32"),
    ("fd_filestat_set_size", "i32 i64"),
    ("fd_pread", "i32 i32 i32 i64 i32"),
    ("fd_prestat_dir_name", "i32 i32 i32"),
    ("fd_prestat_get", "i32 i32"),
    ("fd_pwrite", "i32 i32 i32 i64 i32"),
    ("fd_read", "i32 i32 i32 i32"),
    ("fd_readdir", "i32 i32 i32 i64 i32"),
    ("fd_renumber", "i32 i32"),
    ("fd_seek", "i32 i64 i32 i32"),
    ("fd_write", "i32 i32 i32 i32"),
    ("path_create_directory", "i32 i32 i32"),
    ("path_filestat_get", "i32 i32 i32 i32 i32"),
    ("path_filestat_set_times", "i32 i32 i32 i32 i64 i64 i32"),
    ("path_link", "i32 i32 i32 i32 i32 i32 i32"),
    ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32"),
    ("path_readlink", "i32 i32 i32 i32 i32 i32"),
    ("path_remove_directory", "i32 i32 i32"),
    ("path_rename", "i32 i32 i32 i32 i32 i32"),
    ("path_symlink", "i32 i32 i32 i32 i32"),
    ("path_unlink_file", "i32 i32 i32"),
    ("poll_oneoff", "i32 i32 i32 i32"),
    ("random_get", "i32 i32"),
];

/// Guest memory layout (one 64 KiB page, so the edge of memory is 65536):
///
/// | address | what |
/// |---|---|
/// | 0 | fd returned by the last `$open*` (path_open's `fd` out-pointer) |
/// | 4 | scratch (a second fd) |
/// | 8 | nread / nwritten / bufused |
/// | 12 | scratch counter |
/// | 16..80 | filestat out-buffer (filetype at 32) |
/// | 128.. | iovec arrays |
/// | 512..768 | read buffer |
/// | 1024.. | the case's strings (`@0`, `@1`, ...) |
/// | 4096..6144 | 2048 bytes of `A`, the payload of writes |
///
/// Helper functions (all return the errno of the WASI call):
/// `$open_r dir path len` (read rights, follows symlinks), `$open_r_nofollow dir path len`,
/// `$open_w dir path len oflags` (all rights), `$open_dir dir path len`, `$open_flags dir path
/// len oflags fdflags` (all rights), `$write fd n` (n payload bytes), `$read fd` (256 bytes to 512),
/// `$stat dir lookupflags path len` (filestat at 16); `$ok errno` traps unless errno is 0;
/// `$fd` loads the fd at 0.
const TEMPLATE_FUNCS: &str = r#"
  (func $ok (param i32) (if (local.get 0) (then unreachable)))
  (func $fd (result i32) (i32.load (i32.const 0)))
  (func $open_flags (param $dir i32) (param $p i32) (param $l i32) (param $of i32) (param $ff i32) (result i32)
    (call $path_open (local.get $dir) (i32.const 1) (local.get $p) (local.get $l) (local.get $of)
      (i64.const -1) (i64.const -1) (local.get $ff) (i32.const 0)))
  (func $open_r (param $dir i32) (param $p i32) (param $l i32) (result i32)
    (call $path_open (local.get $dir) (i32.const 1) (local.get $p) (local.get $l) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
  (func $open_r_nofollow (param $dir i32) (param $p i32) (param $l i32) (result i32)
    (call $path_open (local.get $dir) (i32.const 0) (local.get $p) (local.get $l) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
  (func $open_w (param $dir i32) (param $p i32) (param $l i32) (param $of i32) (result i32)
    (call $open_flags (local.get $dir) (local.get $p) (local.get $l) (local.get $of) (i32.const 0)))
  (func $open_dir (param $dir i32) (param $p i32) (param $l i32) (result i32)
    (call $path_open (local.get $dir) (i32.const 1) (local.get $p) (local.get $l) (i32.const 2)
      (i64.const 0x3fffffbf) (i64.const 0x3fffffbf) (i32.const 0) (i32.const 0)))
  (func $write (param $fd i32) (param $n i32) (result i32)
    (i32.store (i32.const 128) (i32.const 4096))
    (i32.store (i32.const 132) (local.get $n))
    (call $fd_write (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 8)))
  (func $read (param $fd i32) (result i32)
    (i32.store (i32.const 128) (i32.const 512))
    (i32.store (i32.const 132) (i32.const 256))
    (call $fd_read (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 8)))
  (func $stat (param $dir i32) (param $flags i32) (param $p i32) (param $l i32) (result i32)
    (call $path_filestat_get (local.get $dir) (local.get $flags) (local.get $p) (local.get $l) (i32.const 16)))
"#;

const STRINGS_AT: u32 = 1024;
const PAYLOAD_AT: u32 = 4096;
const PAYLOAD_LEN: usize = 2048;

fn wat_bytes(b: &[u8]) -> String {
    b.iter().map(|c| format!("\\{c:02x}")).collect()
}

/// Build the guest: `bodies` are (export name, body); `@N` in a body becomes the pointer and
/// length of `strings[N]`, and `{ROOT}` in a string becomes the fixture's root.
fn guest(strings: &[&str], bodies: &[(&str, &str)], root: &Path) -> String {
    let mut w = String::from("(module\n");
    for (name, params) in IMPORTS {
        writeln!(w, "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param {params}) (result i32)))").unwrap();
    }
    w.push_str("  (memory (export \"memory\") 1)\n");
    w.push_str(TEMPLATE_FUNCS);
    let mut at = STRINGS_AT;
    let mut refs = Vec::new();
    for s in strings {
        let s = s.replace("{ROOT}", root.to_str().unwrap());
        writeln!(w, "  (data (i32.const {at}) \"{}\")", wat_bytes(s.as_bytes())).unwrap();
        refs.push(format!("(i32.const {at}) (i32.const {})", s.len()));
        at += (s.len() as u32 + 8) & !7;
    }
    assert!(at <= PAYLOAD_AT, "strings overflow into the payload");
    writeln!(w, "  (data (i32.const {PAYLOAD_AT}) \"{}\")", "A".repeat(PAYLOAD_LEN)).unwrap();
    for (name, body) in bodies {
        let mut body = body.to_string();
        // Replace from the highest index down so `@1` does not eat the start of `@10`.
        for (i, r) in refs.iter().enumerate().rev() {
            body = body.replace(&format!("@{i}"), r);
        }
        writeln!(w, "  (func (export \"{name}\") (result i32)\n    {body})").unwrap();
    }
    w.push_str(")\n");
    w
}

// ---- the fixture -------------------------------------------------------------------------------

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let w = |p: &str, data: &str| std::fs::write(root.join(p), data).unwrap();
        let d = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
        let l = |target: &str, at: &str| symlink(target.replace("{ROOT}", root.to_str().unwrap()), root.join(at)).unwrap();
        d("outside/dir");
        d("sandbox/a/b");
        d("sandbox2");
        w("secret", "TOPSECRET-root");
        w("outside/secret", "TOPSECRET-outside");
        w("outside/x", "TOPSECRET-x");
        w("sandbox/file", "inside file contents");
        w("sandbox2/file2", "second preopen");
        l("a", "sandbox/inner");
        l("../outside", "sandbox/link_rel");
        l("{ROOT}/outside", "sandbox/link_abs");
        l("../outside/secret", "sandbox/secret_rel");
        l("{ROOT}/outside/secret", "sandbox/secret_abs");
        l("../outside/created", "sandbox/dangling_out");
        l("../outside/newdir", "sandbox/dangling_dir");
        l("../outside/nonexistent", "sandbox/probe_no");
        l("..", "sandbox/dotdot");
        l("../..", "sandbox/a/up");
        l("loop2", "sandbox/loop1");
        l("loop1", "sandbox/loop2");
        l("self", "sandbox/self");
        l("/proc/self/root", "sandbox/proc_root");
        l("/proc/self/fd/0", "sandbox/proc_fd0");
        l("/proc/self", "sandbox/proc_self");
        l("/proc/self/cwd", "sandbox/proc_cwd");
        l("../../../../../../../../../../proc/self/root", "sandbox/proc_rel");
        let fifo = std::ffi::CString::new(root.join("sandbox/fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0, "mkfifo");
        Fixture { _tmp: tmp, root }
    }

    fn sandbox(&self) -> PathBuf {
        self.root.join("sandbox")
    }

    /// Everything under ROOT except the two preopens.
    fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snapshot(&self.root, &self.root, &mut out);
        out
    }
}

/// Record every entry beneath `dir` (not following symlinks): kind, size, mtime, and the
/// contents of files / targets of links.
fn snapshot(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let rel = path.strip_prefix(base).unwrap().to_path_buf();
        if rel == Path::new("sandbox") || rel == Path::new("sandbox2") {
            continue;
        }
        let md = std::fs::symlink_metadata(&path).unwrap();
        let mtime = (md.mtime(), md.mtime_nsec());
        let desc = if md.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if md.is_dir() {
            snapshot(base, &path, out);
            format!("dir mtime {mtime:?}")
        } else {
            format!("file {} bytes mtime {mtime:?} ino {} nlink {}: {:?}", md.len(), md.ino(), md.nlink(), std::fs::read(&path).unwrap())
        };
        out.insert(rel, desc);
    }
}

// ---- the cases ---------------------------------------------------------------------------------

/// What a case's extra check sees after the run.
struct Outcome<'a> {
    mem: &'a [u8],
    sandbox: &'a Path,
}

#[derive(Clone, Copy)]
struct Case {
    /// One line: the attack.
    what: &'static str,
    /// Strings placed in guest memory, named `@0`, `@1`, ... in the body.
    strings: &'static [&'static str],
    /// The body of the exported `run`: WAT instructions leaving the errno (i32) on the stack.
    body: &'static str,
    expect: u16,
    /// After `run`: the host does this, then `run2` (if any) is called and must give `expect2`.
    host_then: Option<fn(&Path)>,
    body2: &'static str,
    expect2: u16,
    max_fds: Option<usize>,
    max_file_size: Option<u64>,
    /// Extra assertions on the outcome (panics on failure).
    check: Option<fn(&Outcome)>,
}

const BASE: Case = Case {
    what: "",
    strings: &[],
    body: "",
    expect: SUCCESS,
    host_then: None,
    body2: "",
    expect2: SUCCESS,
    max_fds: None,
    max_file_size: None,
    check: None,
};

fn errno_name(e: u16) -> &'static str {
    match e {
        0 => "SUCCESS",
        2 => "ACCES",
        8 => "BADF",
        20 => "EXIST",
        21 => "FAULT",
        22 => "FBIG",
        25 => "ILSEQ",
        28 => "INVAL",
        31 => "ISDIR",
        32 => "LOOP",
        33 => "MFILE",
        44 => "NOENT",
        54 => "NOTDIR",
        55 => "NOTEMPTY",
        63 => "PERM",
        75 => "XDEV",
        76 => "NOTCAPABLE",
        _ => "?",
    }
}

/// Run one case in one isolation mode on a fresh fixture. Returns the errnos it saw, or the
/// reason it failed.
fn run_case(case: &Case, isolation: Isolation) -> Result<Vec<u16>, String> {
    let fx = Fixture::new();
    let before = fx.outside_snapshot();
    let mut bodies = vec![("run", case.body)];
    if case.host_then.is_some() {
        bodies.push(("run2", case.body2));
    }
    let src = guest(case.strings, &bodies, &fx.root);
    let wasm = wat::parse_str(&src).map_err(|e| format!("bad WAT: {e}\n{src}"))?;
    let module = wasce_engine::load(&wasm, &Settings::default()).map_err(|e| format!("load: {e}"))?;
    let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).map_err(|e| format!("store: {e}"))?;
    let mut linker = Linker::new();
    let config = WasiConfig {
        preopens: vec![
            Preopen { host: fx.sandbox(), guest: ".".into() },
            Preopen { host: fx.root.join("sandbox2"), guest: "other".into() },
        ],
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        max_fds: case.max_fds,
        max_file_size: case.max_file_size,
        ..WasiConfig::default()
    };
    add_to_linker(&mut store, &mut linker, config).map_err(|e| format!("wasi: {e}"))?;
    let inst = linker.instantiate(&mut store, &module).map_err(|e| format!("instantiate: {e}"))?;
    let call = |store: &mut Store, name: &str| -> Result<u16, String> {
        let Some(Extern::Func(f)) = store.export(inst, name) else { return Err(format!("no export {name}")) };
        match store.call(f, &[]) {
            Ok(v) => match v.as_slice() {
                [wasce_engine::Val::I32(e)] => Ok(*e as u16),
                other => Err(format!("{name} returned {other:?}")),
            },
            Err(Error::Trap(t)) => Err(format!("{name} trapped (a setup step failed): {t}")),
            Err(e) => Err(format!("{name} failed: {e}")),
        }
    };
    let mut seen = vec![call(&mut store, "run")?];
    if let Some(host) = case.host_then {
        host(&fx.sandbox());
        seen.push(call(&mut store, "run2")?);
    }
    let Some(Extern::Memory(m)) = store.export(inst, "memory") else { return Err("no memory".into()) };
    let mem = store.memory_data(m).to_vec();

    let after = fx.outside_snapshot();
    if before != after {
        let mut diff = String::new();
        for (k, v) in &after {
            if before.get(k) != Some(v) {
                writeln!(diff, "  now  {}: {v}", k.display()).unwrap();
            }
        }
        for (k, v) in &before {
            if after.get(k) != Some(v) {
                writeln!(diff, "  was  {}: {v}", k.display()).unwrap();
            }
        }
        return Err(format!("ESCAPE: the tree outside the sandbox changed (errnos {seen:?}):\n{diff}"));
    }
    for needle in [&b"TOPSECRET"[..], b"root:x:"] {
        if mem.windows(needle.len()).any(|w| w == needle) {
            return Err(format!("ESCAPE: guest memory holds {:?} (errnos {seen:?})", String::from_utf8_lossy(needle)));
        }
    }
    let mut expected = vec![case.expect];
    if case.host_then.is_some() {
        expected.push(case.expect2);
    }
    if seen != expected {
        let names = |v: &[u16]| v.iter().map(|e| format!("{e} {}", errno_name(*e))).collect::<Vec<_>>().join(", ");
        return Err(format!("errno: expected [{}], got [{}]", names(&expected), names(&seen)));
    }
    if let Some(check) = case.check {
        let sandbox = fx.sandbox();
        let outcome = Outcome { mem: &mem, sandbox: &sandbox };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&outcome)))
            .map_err(|p| format!("check failed: {}", p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()))?;
    }
    Ok(seen)
}

/// Run every case in both modes; print the table; fail listing every failing case.
fn run_table(group: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    let mut table = format!("\n== {group}\n");
    for case in cases {
        for isolation in [Isolation::Kvm, Isolation::Process] {
            let result = run_case(case, isolation);
            let shown = match &result {
                Ok(seen) => seen.iter().map(|e| format!("{e} {}", errno_name(*e))).collect::<Vec<_>>().join(" then "),
                Err(e) => format!("FAILED: {e}"),
            };
            writeln!(table, "{:<8} {:<72} {}", format!("{isolation:?}"), case.what, shown).unwrap();
            if let Err(e) = result {
                failures.push(format!("[{group}] {} ({isolation:?}): {e}", case.what));
            }
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{} failing case(s):\n{}", failures.len(), failures.join("\n"));
}

// ---- checks shared by cases -------------------------------------------------------------------

fn filetype_is_symlink(o: &Outcome) {
    assert_eq!(o.mem[32], 7, "filestat filetype should be SYMBOLIC_LINK");
}

fn file_at_most_1024(o: &Outcome) {
    let len = std::fs::metadata(o.sandbox.join("big")).map(|m| m.len()).unwrap_or(0);
    assert!(len <= 1024, "sandbox/big is {len} bytes, past the 1024-byte limit");
}

// ---- `..` and absolute paths ------------------------------------------------------------------

#[test]
fn dotdot_and_absolute_paths() {
    run_table("dotdot and absolute", &[
        Case { what: "path_open ../secret", strings: &["../secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open a/../../secret", strings: &["a/../../secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open a/b/../../../secret", strings: &["a/b/../../../secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open .. (the sandbox's parent directory)", strings: &[".."], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open a/./b/../../.. (normalising back out)", strings: &["a/./b/../../.."], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open a/b/../../file (`..` that stays inside: allowed)", strings: &["a/b/../../file"], body: "(call $open_r (i32.const 3) @0)", expect: SUCCESS, ..BASE },
        Case { what: "path_open /etc/passwd", strings: &["/etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open / (as a directory)", strings: &["/"], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open //etc/passwd", strings: &["//etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open ROOT/outside/secret (absolute host path)", strings: &["{ROOT}/outside/secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open O_CREAT ../created", strings: &["../created"], body: "(call $open_w (i32.const 3) @0 (i32.const 1))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open O_CREAT ROOT/outside/created (absolute)", strings: &["{ROOT}/outside/created"], body: "(call $open_w (i32.const 3) @0 (i32.const 1))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open O_TRUNC ../outside/secret", strings: &["../outside/secret"], body: "(call $open_w (i32.const 3) @0 (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open ../file from a subdirectory handle a (above the handle)", strings: &["a", "../file"], body: "(call $ok (call $open_dir (i32.const 3) @0)) (call $open_r (call $fd) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open ../../secret from a subdirectory handle a", strings: &["a", "../../secret"], body: "(call $ok (call $open_dir (i32.const 3) @0)) (call $open_r (call $fd) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (follow) ../secret", strings: &["../secret"], body: "(call $stat (i32.const 3) (i32.const 1) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) ../secret", strings: &["../secret"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) /etc/passwd", strings: &["/etc/passwd"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) .. (the parent itself)", strings: &[".."], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_create_directory ../newdir", strings: &["../newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_create_directory ROOT/outside/newdir (absolute)", strings: &["{ROOT}/outside/newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_create_directory a/../../newdir", strings: &["a/../../newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_unlink_file ../secret", strings: &["../secret"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_unlink_file ../outside/secret", strings: &["../outside/secret"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_remove_directory ../outside/dir", strings: &["../outside/dir"], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_remove_directory .. ", strings: &[".."], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename file -> ../stolen", strings: &["file", "../stolen"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename ../secret -> got", strings: &["../secret", "got"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename a/../../outside/secret -> got", strings: &["a/../../outside/secret", "got"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link ../secret -> got", strings: &["../secret", "got"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link file -> ../planted", strings: &["file", "../planted"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_symlink target /etc/passwd (absolute target refused)", strings: &["/etc/passwd", "abs"], body: "(call $path_symlink @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_symlink x at ../planted", strings: &["x", "../planted"], body: "(call $path_symlink @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink ../outside (entry outside)", strings: &["../outside"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        Case {
            what: "path_filestat_set_times (follow) ../secret",
            strings: &["../secret"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 1) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: NOTCAPABLE,
            ..BASE
        },
        Case {
            what: "path_filestat_set_times (nofollow) ../secret",
            strings: &["../secret"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 0) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: NOTCAPABLE,
            ..BASE
        },
    ]);
}

// ---- symlinks -----------------------------------------------------------------------------------

fn secret_rel_is_now_a_file(o: &Outcome) {
    let md = std::fs::symlink_metadata(o.sandbox.join("secret_rel")).unwrap();
    assert!(md.is_file(), "sandbox/secret_rel should now be the renamed regular file");
}

fn secret_rel_removed(o: &Outcome) {
    assert!(std::fs::symlink_metadata(o.sandbox.join("secret_rel")).is_err(), "the link itself should be gone");
}

fn readlink_gave_target(o: &Outcome) {
    let n = u32::from_le_bytes(o.mem[8..12].try_into().unwrap()) as usize;
    assert_eq!(&o.mem[512..512 + n], b"../outside/secret", "readlink returns the link's own text");
}

#[test]
fn symlinks() {
    run_table("symlinks", &[
        // path_open
        Case { what: "path_open link_rel/secret (link -> ../outside mid-path)", strings: &["link_rel/secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open link_abs/secret (link -> ROOT/outside mid-path)", strings: &["link_abs/secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open link_rel (as a directory)", strings: &["link_rel"], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open secret_rel (follow; -> ../outside/secret)", strings: &["secret_rel"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open secret_rel (nofollow: O_NOFOLLOW on a link)", strings: &["secret_rel"], body: "(call $open_r_nofollow (i32.const 3) @0)", expect: LOOP, ..BASE },
        Case { what: "path_open secret_abs (follow; absolute target)", strings: &["secret_abs"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open dotdot/secret (dotdot -> ..)", strings: &["dotdot/secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open a/up/secret (a/up -> ../..)", strings: &["a/up/secret"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open inner/b (a link that stays inside: allowed)", strings: &["inner/b"], body: "(call $open_dir (i32.const 3) @0)", expect: SUCCESS, ..BASE },
        Case { what: "path_open O_CREAT dangling_out (follow: would create ../outside/created)", strings: &["dangling_out"], body: "(call $open_w (i32.const 3) @0 (i32.const 1))", expect: NOTCAPABLE, ..BASE },
        Case {
            what: "path_open O_CREAT dangling_out (nofollow)",
            strings: &["dangling_out"],
            body: "(call $path_open (i32.const 3) (i32.const 0) @0 (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 0))",
            expect: LOOP,
            ..BASE
        },
        Case { what: "path_open O_CREAT|O_EXCL dangling_out", strings: &["dangling_out"], body: "(call $open_w (i32.const 3) @0 (i32.const 5))", expect: EXIST, ..BASE },
        Case { what: "path_open O_TRUNC secret_rel (follow)", strings: &["secret_rel"], body: "(call $open_w (i32.const 3) @0 (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open O_CREAT link_rel/created", strings: &["link_rel/created"], body: "(call $open_w (i32.const 3) @0 (i32.const 1))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open loop1 (loop1 -> loop2 -> loop1)", strings: &["loop1"], body: "(call $open_r (i32.const 3) @0)", expect: LOOP, ..BASE },
        Case { what: "path_open self/x (self -> self, mid-path)", strings: &["self/x"], body: "(call $open_r (i32.const 3) @0)", expect: LOOP, ..BASE },
        Case { what: "path_open loop1 (nofollow)", strings: &["loop1"], body: "(call $open_r_nofollow (i32.const 3) @0)", expect: LOOP, ..BASE },
        // path_filestat_get
        Case { what: "path_filestat_get (follow) secret_rel", strings: &["secret_rel"], body: "(call $stat (i32.const 3) (i32.const 1) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) secret_rel: the link itself is fine", strings: &["secret_rel"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: SUCCESS, check: Some(filetype_is_symlink), ..BASE },
        Case { what: "path_filestat_get (nofollow) link_rel/secret", strings: &["link_rel/secret"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (follow) link_abs/secret", strings: &["link_abs/secret"], body: "(call $stat (i32.const 3) (i32.const 1) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) link_rel/ (trailing slash follows)", strings: &["link_rel/"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (follow) loop1", strings: &["loop1"], body: "(call $stat (i32.const 3) (i32.const 1) @0)", expect: LOOP, ..BASE },
        // path_create_directory
        Case { what: "path_create_directory link_rel/newdir", strings: &["link_rel/newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_create_directory link_abs/newdir", strings: &["link_abs/newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_create_directory dangling_dir (-> ../outside/newdir)", strings: &["dangling_dir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: EXIST, ..BASE },
        Case { what: "path_create_directory dangling_dir/ (trailing slash)", strings: &["dangling_dir/"], body: "(call $path_create_directory (i32.const 3) @0)", expect: EXIST, ..BASE },
        Case { what: "path_create_directory dotdot/newdir", strings: &["dotdot/newdir"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        // path_unlink_file / path_remove_directory
        Case { what: "path_unlink_file link_rel/secret", strings: &["link_rel/secret"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_unlink_file link_abs/secret", strings: &["link_abs/secret"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_unlink_file secret_rel removes the link, not its target", strings: &["secret_rel"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: SUCCESS, check: Some(secret_rel_removed), ..BASE },
        Case { what: "path_unlink_file secret_rel/ (trailing slash)", strings: &["secret_rel/"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTDIR, ..BASE },
        Case { what: "path_remove_directory link_rel (a link, not a directory)", strings: &["link_rel"], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTDIR, ..BASE },
        Case { what: "path_remove_directory link_rel/ (trailing slash)", strings: &["link_rel/"], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTDIR, ..BASE },
        Case { what: "path_remove_directory link_rel/dir", strings: &["link_rel/dir"], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        // path_rename
        Case { what: "path_rename file -> link_rel/stolen (into a link)", strings: &["file", "link_rel/stolen"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename link_rel/secret -> got (out of a link)", strings: &["link_rel/secret", "got"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename link_abs/secret -> got", strings: &["link_abs/secret", "got"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename file -> dotdot/stolen", strings: &["file", "dotdot/stolen"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename file -> secret_rel replaces the link, not its target", strings: &["file", "secret_rel"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: SUCCESS, check: Some(secret_rel_is_now_a_file), ..BASE },
        Case { what: "path_rename file -> dangling_out replaces the link, creates nothing outside", strings: &["file", "dangling_out"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: SUCCESS, ..BASE },
        Case { what: "path_rename a -> link_rel/ (a directory onto a link, trailing slash)", strings: &["a", "link_rel/"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTDIR, ..BASE },
        Case { what: "path_rename secret_rel -> moved (moves the link itself)", strings: &["secret_rel", "moved"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: SUCCESS, ..BASE },
        // path_link
        Case { what: "path_link link_rel/secret -> got (source through a link)", strings: &["link_rel/secret", "got"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link file -> link_rel/planted (target through a link)", strings: &["file", "link_rel/planted"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link (SYMLINK_FOLLOW) secret_rel -> got: refused", strings: &["secret_rel", "got"], body: "(call $path_link (i32.const 3) (i32.const 1) @0 (i32.const 3) @1)", expect: INVAL, ..BASE },
        Case {
            what: "path_link secret_rel -> hard (links the link), then open hard",
            strings: &["secret_rel", "hard"],
            body: "(call $ok (call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)) (call $open_r (i32.const 3) @1)",
            expect: NOTCAPABLE,
            ..BASE
        },
        Case { what: "path_link file -> dangling_out (does not follow the new name)", strings: &["file", "dangling_out"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)", expect: EXIST, ..BASE },
        // path_readlink
        Case {
            what: "path_readlink secret_rel: reading the link's text is fine",
            strings: &["secret_rel"],
            body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))",
            expect: SUCCESS,
            check: Some(readlink_gave_target),
            ..BASE
        },
        Case { what: "path_readlink link_rel/secret", strings: &["link_rel/secret"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink link_rel/ (trailing slash: would follow outside)", strings: &["link_rel/"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink probe_no/ (same, to a missing path: no oracle)", strings: &["probe_no/"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))", expect: NOTCAPABLE, ..BASE },
        // path_symlink
        Case {
            what: "path_symlink mine -> ../outside/secret (allowed), then open mine",
            strings: &["../outside/secret", "mine"],
            body: "(call $ok (call $path_symlink @0 (i32.const 3) @1)) (call $open_r (i32.const 3) @1)",
            expect: NOTCAPABLE,
            ..BASE
        },
        Case { what: "path_symlink at link_rel/planted", strings: &["x", "link_rel/planted"], body: "(call $path_symlink @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_symlink at dangling_out (exists)", strings: &["x", "dangling_out"], body: "(call $path_symlink @0 (i32.const 3) @1)", expect: EXIST, ..BASE },
        // path_filestat_set_times
        Case {
            what: "path_filestat_set_times (follow) secret_rel",
            strings: &["secret_rel"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 1) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: NOTCAPABLE,
            ..BASE
        },
        Case {
            what: "path_filestat_set_times (nofollow) secret_rel: touches only the link",
            strings: &["secret_rel"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 0) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: SUCCESS,
            ..BASE
        },
        Case {
            what: "path_filestat_set_times (nofollow) link_rel/secret",
            strings: &["link_rel/secret"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 0) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: NOTCAPABLE,
            ..BASE
        },
    ]);
}

// ---- /proc magic links --------------------------------------------------------------------------

#[test]
fn proc_magic_links() {
    run_table("/proc", &[
        Case { what: "path_open proc_root/etc/passwd (-> /proc/self/root)", strings: &["proc_root/etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_root (as a directory)", strings: &["proc_root"], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_fd0 (-> /proc/self/fd/0)", strings: &["proc_fd0"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_self/root/etc/passwd (-> /proc/self)", strings: &["proc_self/root/etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_self/fd/3 (the preopen's own host fd)", strings: &["proc_self/fd/3"], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_cwd (-> /proc/self/cwd)", strings: &["proc_cwd"], body: "(call $open_dir (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open proc_rel/etc/passwd (relative ../../.. to /proc)", strings: &["proc_rel/etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_open /proc/self/root/etc/passwd (absolute)", strings: &["/proc/self/root/etc/passwd"], body: "(call $open_r (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (follow) proc_root", strings: &["proc_root"], body: "(call $stat (i32.const 3) (i32.const 1) @0)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_filestat_get (nofollow) proc_root: the link itself", strings: &["proc_root"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: SUCCESS, check: Some(filetype_is_symlink), ..BASE },
        Case { what: "path_create_directory proc_root/tmp/x", strings: &["proc_root/tmp/x"], body: "(call $path_create_directory (i32.const 3) @0)", expect: NOTCAPABLE, ..BASE },
        Case {
            what: "path_filestat_set_times (follow) proc_fd0",
            strings: &["proc_fd0"],
            body: "(call $path_filestat_set_times (i32.const 3) (i32.const 1) @0 (i64.const 0) (i64.const 0) (i32.const 10))",
            expect: NOTCAPABLE,
            ..BASE
        },
    ]);
}

// ---- two preopens --------------------------------------------------------------------------------

fn moved_into_other(o: &Outcome) {
    let other = o.sandbox.parent().unwrap().join("sandbox2");
    assert!(other.join("moved").is_file() && !o.sandbox.join("file").exists(), "file should have moved to sandbox2/moved");
}

#[test]
fn two_preopens() {
    run_table("two preopens (fd 3 = sandbox, fd 4 = sandbox2)", &[
        Case { what: "path_rename 3:file -> 4:moved (between preopens: allowed)", strings: &["file", "moved"], body: "(call $path_rename (i32.const 3) @0 (i32.const 4) @1)", expect: SUCCESS, check: Some(moved_into_other), ..BASE },
        Case { what: "path_link 4:file2 -> 3:linked (between preopens: allowed)", strings: &["file2", "linked"], body: "(call $path_link (i32.const 4) (i32.const 0) @0 (i32.const 3) @1)", expect: SUCCESS, ..BASE },
        Case { what: "path_rename 3:file -> 4:../outside/stolen", strings: &["file", "../outside/stolen"], body: "(call $path_rename (i32.const 3) @0 (i32.const 4) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename 4:../secret -> 3:got", strings: &["../secret", "got"], body: "(call $path_rename (i32.const 4) @0 (i32.const 3) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename 3:file -> 4:../sandbox/back (sibling preopen via ..)", strings: &["file", "../sandbox/back"], body: "(call $path_rename (i32.const 3) @0 (i32.const 4) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link 3:file -> 4:../planted", strings: &["file", "../planted"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 4) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link 3:link_rel/secret -> 4:got", strings: &["link_rel/secret", "got"], body: "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 4) @1)", expect: NOTCAPABLE, ..BASE },
        Case { what: "path_rename 3:file -> 4:/abs (absolute target)", strings: &["file", "{ROOT}/outside/abs"], body: "(call $path_rename (i32.const 3) @0 (i32.const 4) @1)", expect: NOTCAPABLE, ..BASE },
        Case {
            what: "path_link 3:secret_rel -> 4:l, then open 4:l (-> ../outside/secret, now from sandbox2)",
            strings: &["secret_rel", "l"],
            body: "(call $ok (call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 4) @1)) (call $open_r (i32.const 4) @1)",
            expect: NOTCAPABLE,
            ..BASE
        },
        Case {
            what: "path_rename 3:a -> 4:a, then open 4:a/up/secret (a/up -> ../.. moved along)",
            strings: &["a", "a/up/secret"],
            body: "(call $ok (call $path_rename (i32.const 3) @0 (i32.const 4) @0)) (call $open_r (i32.const 4) @1)",
            expect: NOTCAPABLE,
            ..BASE
        },
    ]);
}

// ---- a directory swapped for a symlink between calls ------------------------------------------

/// The host replaces `sandbox/d` (a directory the guest has been using) with a symlink to
/// `../outside`, which holds a file `x` too. The old directory survives as `sandbox/d_old`.
fn swap_d_for_symlink(sandbox: &Path) {
    std::fs::rename(sandbox.join("d"), sandbox.join("d_old")).unwrap();
    symlink("../outside", sandbox.join("d")).unwrap();
}

/// Make `d/x` ("AAAA"), open it (fd at 0) and `d` as a directory handle (fd at 4).
const MAKE_D: &str = "(call $ok (call $path_create_directory (i32.const 3) @0))
    (call $ok (call $open_w (i32.const 3) @1 (i32.const 1)))
    (call $ok (call $write (call $fd) (i32.const 4)))
    (call $ok (call $open_dir (i32.const 3) @0))
    (i32.store (i32.const 4) (call $fd))
    (call $open_r (i32.const 3) @1)";

fn read_old_x(o: &Outcome) {
    assert_eq!(&o.mem[512..516], b"AAAA", "read through the old handle gives the old directory's file");
}

#[test]
fn directory_swapped_for_symlink() {
    let case = |what, body2, expect2, check| Case {
        what,
        strings: &["d", "d/x", "x", "../x", "d/new", "got"],
        body: MAKE_D,
        expect: SUCCESS,
        host_then: Some(swap_d_for_symlink),
        body2,
        expect2,
        check,
        ..BASE
    };
    run_table("directory swapped for a symlink between calls", &[
        case("path_open d/x again after the swap", "(call $open_r (i32.const 3) @1)", NOTCAPABLE, None),
        case("path_filestat_get (nofollow) d/x after the swap", "(call $stat (i32.const 3) (i32.const 0) @1)", NOTCAPABLE, None),
        case("path_create_directory d/new after the swap", "(call $path_create_directory (i32.const 3) @4)", NOTCAPABLE, None),
        case("path_unlink_file d/x after the swap", "(call $path_unlink_file (i32.const 3) @1)", NOTCAPABLE, None),
        case("path_rename d/x -> got after the swap", "(call $path_rename (i32.const 3) @1 (i32.const 3) @5)", NOTCAPABLE, None),
        case("path_open O_CREAT|O_TRUNC d/x after the swap", "(call $open_w (i32.const 3) @1 (i32.const 9))", NOTCAPABLE, None),
        case(
            "open x via the handle opened before the swap: the old directory",
            "(call $ok (call $open_r (i32.load (i32.const 4)) @2)) (call $read (call $fd))",
            SUCCESS,
            Some(read_old_x),
        ),
        case("open ../x via the handle opened before the swap", "(call $open_r (i32.load (i32.const 4)) @3)", NOTCAPABLE, None),
    ]);
    // The same with the file itself swapped: an fd opened before still names the old file.
    run_table("file swapped for a symlink between calls", &[Case {
        what: "read an fd opened before sandbox/file became a link to ../outside/secret; reopen it",
        strings: &["file"],
        body: "(call $open_r (i32.const 3) @0)",
        expect: SUCCESS,
        host_then: Some(|sandbox| {
            std::fs::rename(sandbox.join("file"), sandbox.join("file_old")).unwrap();
            symlink("../outside/secret", sandbox.join("file")).unwrap();
        }),
        body2: "(call $ok (call $read (call $fd))) (call $open_r (i32.const 3) @0)",
        expect2: NOTCAPABLE,
        check: Some(|o| assert_eq!(&o.mem[512..532], b"inside file contents")),
        ..BASE
    }]);
}


// ---- trailing slashes: the kernel follows a final link when the name ends in `/` -------------

#[test]
fn trailing_slash_never_follows_outside() {
    // Each of these used to give a different errno for a link to an existing directory outside
    // (link_rel/) and a link to a missing path outside (probe_no/): the host had followed the
    // guest's link out of the sandbox (an existence oracle on any host path, since the guest can
    // create relative links such as `../../../etc/x`). Now they all stop at the sandbox edge.
    const READLINK: &str = "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 256) (i32.const 8))";
    const LINK_SRC: &str = "(call $path_link (i32.const 3) (i32.const 0) @0 (i32.const 3) @1)";
    run_table("trailing slash", &[
        Case { what: "path_readlink link_rel/ (-> existing dir outside)", strings: &["link_rel/"], body: READLINK, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink probe_no/ (-> missing path outside)", strings: &["probe_no/"], body: READLINK, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink secret_rel/ (-> file outside)", strings: &["secret_rel/"], body: READLINK, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink link_rel// (two slashes)", strings: &["link_rel//"], body: READLINK, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_readlink inner/ (link inside -> dir: EINVAL, as Linux)", strings: &["inner/"], body: READLINK, expect: INVAL, ..BASE },
        Case { what: "path_readlink file/ (a file with a slash: ENOTDIR, as Linux)", strings: &["file/"], body: READLINK, expect: NOTDIR, ..BASE },
        Case { what: "path_link link_rel/ -> got (source)", strings: &["link_rel/", "got"], body: LINK_SRC, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link probe_no/ -> got (source)", strings: &["probe_no/", "got"], body: LINK_SRC, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link secret_rel/ -> got (source)", strings: &["secret_rel/", "got"], body: LINK_SRC, expect: NOTCAPABLE, ..BASE },
        Case { what: "path_link inner/ -> got (a directory inside: EPERM, as Linux)", strings: &["inner/", "got"], body: LINK_SRC, expect: 63, ..BASE },
        Case { what: "path_link link_rel/ as the new name", strings: &["file", "link_rel/"], body: LINK_SRC, expect: EXIST, ..BASE },
        Case { what: "path_rename probe_no/ -> got", strings: &["probe_no/", "got"], body: "(call $path_rename (i32.const 3) @0 (i32.const 3) @1)", expect: NOTDIR, ..BASE },
        Case { what: "path_unlink_file probe_no/", strings: &["probe_no/"], body: "(call $path_unlink_file (i32.const 3) @0)", expect: NOTDIR, ..BASE },
        Case { what: "path_remove_directory probe_no/", strings: &["probe_no/"], body: "(call $path_remove_directory (i32.const 3) @0)", expect: NOTDIR, ..BASE },
        Case { what: "path_symlink at probe_no/", strings: &["x", "probe_no/"], body: "(call $path_symlink @0 (i32.const 3) @1)", expect: EXIST, ..BASE },
        Case { what: "path_filestat_get (nofollow) probe_no/", strings: &["probe_no/"], body: "(call $stat (i32.const 3) (i32.const 0) @0)", expect: NOTCAPABLE, ..BASE },
    ]);
}

// ---- guest memory: iovecs and pointers --------------------------------------------------------

/// 1024 iovecs at 128, each {0, 65536}: every one the whole memory.
macro_rules! iov_1024_whole {
    () => {
        "(local $i i32)
    (loop $l
      (i32.store (i32.add (i32.const 128) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0))
      (i32.store (i32.add (i32.const 132) (i32.shl (local.get $i) (i32.const 3))) (i32.const 65536))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1024))))"
    };
}

fn nwritten_is_16mib(o: &Outcome) {
    assert_eq!(u32::from_le_bytes(o.mem[8..12].try_into().unwrap()), 16 << 20, "one call moves at most 16 MiB");
}

fn file_unchanged(o: &Outcome) {
    assert_eq!(std::fs::read(o.sandbox.join("file")).unwrap(), b"inside file contents");
}

fn read_file_at_512(o: &Outcome) {
    assert_eq!(&o.mem[512..532], b"inside file contents");
}

#[test]
fn guest_memory_abuse() {
    let c = |what, body, expect| Case { what, strings: &["file"], body, expect, ..BASE };
    let k = |what, body, expect, check| Case { what, strings: &["file"], body, expect, check: Some(check), ..BASE };
    let body_leak = concat!(
        "(call $ok (i32.sub (call $path_open (i32.const 3) (i32.const 1) @0 (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 65534)) (i32.const 21)))",
        " (call $ok (call $open_r (i32.const 3) @0)) (i32.sub (call $fd) (i32.const 5))"
    );
    run_table("guest memory", &[
        // iovec counts
        c("fd_write with 1025 iovecs (> IOV_MAX)", "(call $fd_write (i32.const 1) (i32.const 128) (i32.const 1025) (i32.const 8))", INVAL),
        c("fd_write with 0x2000_0000 iovecs (count*8 wraps to 0 in u32)", "(call $fd_write (i32.const 1) (i32.const 128) (i32.const 0x20000000) (i32.const 8))", INVAL),
        c("fd_write with 0xffff_ffff iovecs", "(call $fd_write (i32.const 1) (i32.const 128) (i32.const -1) (i32.const 8))", INVAL),
        c("fd_read with 1025 iovecs", "(call $ok (call $open_r (i32.const 3) @0)) (call $fd_read (call $fd) (i32.const 128) (i32.const 1025) (i32.const 8))", INVAL),
        c("fd_pread with 0x2000_0001 iovecs", "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (call $fd_pread (call $fd) (i32.const 128) (i32.const 0x20000001) (i64.const 0) (i32.const 8))", INVAL),
        c("fd_pwrite with 0x2000_0001 iovecs", "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 0x20000001) (i64.const 0) (i32.const 8))", INVAL),
        // the iovec array itself out of bounds
        c("fd_write: iovec array at 65532 (entry crosses the end)", "(call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 8))", FAULT),
        c("fd_write: iovec array at 0xffff_fff8", "(call $fd_write (i32.const 1) (i32.const -8) (i32.const 1) (i32.const 8))", FAULT),
        c("fd_write: 1024 iovecs at 57352 (array crosses the end)", "(call $fd_write (i32.const 1) (i32.const 57352) (i32.const 1024) (i32.const 8))", FAULT),
        // buffers out of bounds
        c("fd_write: buffer {65535, 2} crosses the end", concat!("(i32.store (i32.const 128) (i32.const 65535)) (i32.store (i32.const 132) (i32.const 2))", " (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 8))"), FAULT),
        c("fd_write: buffer {0xffff_ffff, 0xffff_ffff}", "(i32.store (i32.const 128) (i32.const -1)) (i32.store (i32.const 132) (i32.const -1)) (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 8))", FAULT),
        c("fd_write: buffer {0, 0xffff_ffff}", "(i32.store (i32.const 128) (i32.const 0)) (i32.store (i32.const 132) (i32.const -1)) (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 8))", FAULT),
        c("fd_write: zero-length buffer at exactly 65536 is fine", "(i32.store (i32.const 128) (i32.const 65536)) (i32.store (i32.const 132) (i32.const 0)) (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 8))", SUCCESS),
        k(
            "fd_write to a file: good iovec then bad iovec writes nothing",
            concat!(
                "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0)))",
                " (i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 4))",
                " (i32.store (i32.const 136) (i32.const 65535)) (i32.store (i32.const 140) (i32.const 2))",
                " (call $fd_write (call $fd) (i32.const 128) (i32.const 2) (i32.const 8))"
            ),
            FAULT,
            file_unchanged,
        ),
        k(
            "fd_read into {65530, 100} fails before reading (a good read then starts at 0)",
            concat!(
                "(call $ok (call $open_r (i32.const 3) @0))",
                " (i32.store (i32.const 128) (i32.const 65530)) (i32.store (i32.const 132) (i32.const 100))",
                " (call $ok (i32.sub (call $fd_read (call $fd) (i32.const 128) (i32.const 1) (i32.const 8)) (i32.const 21)))",
                " (call $read (call $fd))"
            ),
            SUCCESS,
            read_file_at_512,
        ),
        // overlapping buffers
        k("fd_write: 1024 iovecs, each the whole memory (64 MiB, overlapping)", concat!(iov_1024_whole!(), " (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1024) (i32.const 8))"), SUCCESS, nwritten_is_16mib),
        k(
            "fd_read: two iovecs on the same 16 bytes",
            concat!(
                "(call $ok (call $open_r (i32.const 3) @0))",
                " (i32.store (i32.const 128) (i32.const 512)) (i32.store (i32.const 132) (i32.const 16))",
                " (i32.store (i32.const 136) (i32.const 512)) (i32.store (i32.const 140) (i32.const 16))",
                " (call $fd_read (call $fd) (i32.const 128) (i32.const 2) (i32.const 8))"
            ),
            SUCCESS,
            |o| assert_eq!(&o.mem[512..528], b"entsde file cont"),
        ),
        k(
            "fd_read: the buffer overlaps the iovec array and nread",
            concat!(
                "(call $ok (call $open_r (i32.const 3) @0))",
                " (i32.store (i32.const 128) (i32.const 124)) (i32.store (i32.const 132) (i32.const 64))",
                " (call $fd_read (call $fd) (i32.const 128) (i32.const 1) (i32.const 128))"
            ),
            SUCCESS,
            |o| assert_eq!(&o.mem[124..128], b"insi"),
        ),
        // result pointers
        k(
            "fd_write to a file: nwritten at 65533 (crosses the end); nothing is written",
            "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 4)) (call $fd_write (call $fd) (i32.const 128) (i32.const 1) (i32.const 65533))",
            FAULT,
            file_unchanged,
        ),
        k(
            "fd_pwrite to a file: nwritten at 0xffff_ffff; nothing is written",
            "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 4)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const 0) (i32.const -1))",
            FAULT,
            file_unchanged,
        ),
        c("fd_read: nread at 0xffff_ffff", "(call $ok (call $open_r (i32.const 3) @0)) (i32.store (i32.const 128) (i32.const 512)) (i32.store (i32.const 132) (i32.const 8)) (call $fd_read (call $fd) (i32.const 128) (i32.const 1) (i32.const -1))", FAULT),
        c("path_open: fd out-pointer at 65534 (crosses the end)", "(call $path_open (i32.const 3) (i32.const 1) @0 (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 65534))", FAULT),
        c("path_open: after a faulting fd out-pointer, the slot is not leaked (next fd is 5)", body_leak, SUCCESS),
        Case {
            what: "path_open O_CREAT with the fd out-pointer at 65534: nothing is created",
            strings: &["created"],
            body: "(call $path_open (i32.const 3) (i32.const 1) @0 (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 65534))",
            expect: FAULT,
            check: Some(|o| assert!(!o.sandbox.join("created").exists(), "the faulting call created the file")),
            ..BASE
        },
        c("path_filestat_get: filestat at 65500 (64 bytes cross the end)", "(call $path_filestat_get (i32.const 3) (i32.const 1) @0 (i32.const 65500))", FAULT),
        c("fd_filestat_get: filestat at 0xffff_ffc0", "(call $fd_filestat_get (i32.const 3) (i32.const -64))", FAULT),
        c("fd_seek: newoffset at 65535", "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (call $fd_seek (call $fd) (i64.const 0) (i32.const 0) (i32.const 65535))", FAULT),
        c("fd_prestat_dir_name: buffer at 0xffff_ffff", "(call $fd_prestat_dir_name (i32.const 3) (i32.const -1) (i32.const 10))", FAULT),
        c("fd_readdir: buffer at 65500 of 100 bytes", "(call $fd_readdir (i32.const 3) (i32.const 65500) (i32.const 100) (i64.const 0) (i32.const 8))", FAULT),
        c("random_get: 1000 bytes at 65000", "(call $random_get (i32.const 65000) (i32.const 1000))", FAULT),
        c("random_get: 0xffff_ffff bytes at 0", "(call $random_get (i32.const 0) (i32.const -1))", FAULT),
        c("poll_oneoff: 0x0555_5556 subscriptions (n*48 wraps in u32)", "(call $poll_oneoff (i32.const 0) (i32.const 0) (i32.const 0x05555556) (i32.const 8))", FAULT),
        Case { what: "path_readlink: buffer at 65530 (target is 17 bytes)", strings: &["secret_rel"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 65530) (i32.const 100) (i32.const 8))", expect: FAULT, ..BASE },
        Case { what: "path_readlink: bufused at 0xffff_fffe", strings: &["secret_rel"], body: "(call $path_readlink (i32.const 3) @0 (i32.const 512) (i32.const 100) (i32.const -2))", expect: FAULT, ..BASE },
        // path strings
        c("path_open: path at 65530 of 100 bytes", "(call $open_r (i32.const 3) (i32.const 65530) (i32.const 100))", FAULT),
        c("path_open: path at 0xffff_ffff of 1 byte", "(call $open_r (i32.const 3) (i32.const -1) (i32.const 1))", FAULT),
        c("path_open: path at 0 of 0xffff_ffff bytes", "(call $open_r (i32.const 3) (i32.const 0) (i32.const -1))", FAULT),
        c("path_open: path that is not UTF-8 (\\xff)", "(i32.store8 (i32.const 1000) (i32.const 0xff)) (call $open_r (i32.const 3) (i32.const 1000) (i32.const 1))", ILSEQ),
        Case { what: "path_open: path with a NUL (file\\0x)", strings: &["file\0x"], body: "(call $open_r (i32.const 3) @0)", expect: INVAL, ..BASE },
        c("fd_pread: offset 0xffff_ffff_ffff_ffff", "(call $ok (call $open_w (i32.const 3) @0 (i32.const 0))) (call $fd_pread (call $fd) (i32.const 128) (i32.const 0) (i64.const -1) (i32.const 8))", INVAL),
    ]);
}

// ---- fds ---------------------------------------------------------------------------------------

#[test]
fn bad_fds_and_renumber() {
    let c = |what, body, expect| Case { what, strings: &["file", "file2"], body, expect, ..BASE };
    let k = |what, body, expect, check| Case { what, strings: &["file", "file2"], body, expect, check: Some(check), ..BASE };
    /// Open sandbox/file (fd 5) and renumber it onto the preopen, fd 3.
    macro_rules! file_onto_3 {
        () => {
            "(call $ok (call $open_r (i32.const 3) @0)) (call $ok (call $fd_renumber (call $fd) (i32.const 3))) "
        };
    }
    run_table("fds", &[
        c("fd_read on fd 99 (never open)", "(call $read (i32.const 99))", BADF),
        c("fd_write on fd 0xffff_ffff", "(call $write (i32.const -1) (i32.const 4))", BADF),
        c("fd_close on fd 99", "(call $fd_close (i32.const 99))", BADF),
        c("fd_close twice", "(call $ok (call $open_r (i32.const 3) @0)) (call $ok (call $fd_close (call $fd))) (call $fd_close (call $fd))", BADF),
        c("fd_read on a closed fd", "(call $ok (call $open_r (i32.const 3) @0)) (call $ok (call $fd_close (call $fd))) (call $read (call $fd))", BADF),
        c("path_open on dirfd 99", "(call $open_r (i32.const 99) @0)", BADF),
        c("path_open relative to a file fd", "(call $ok (call $open_r (i32.const 3) @0)) (call $open_r (call $fd) @0)", NOTDIR),
        c("path_open on the preopen after fd_close(3)", "(call $ok (call $fd_close (i32.const 3))) (call $open_r (i32.const 3) @0)", BADF),
        c("fd_renumber 99 -> 3", "(call $fd_renumber (i32.const 99) (i32.const 3))", BADF),
        c("fd_renumber 3 -> 99 (target not open)", "(call $fd_renumber (i32.const 3) (i32.const 99))", BADF),
        c("fd_prestat_get on stdin", "(call $fd_prestat_get (i32.const 0) (i32.const 16))", BADF),
        c("fd_write on stdin (no FD_WRITE right)", "(call $write (i32.const 0) (i32.const 4))", NOTCAPABLE),
        c("fd_read on stdout (no FD_READ right)", "(call $read (i32.const 1))", NOTCAPABLE),
        // fd_renumber onto a preopen: the preopen is closed and fd 3 becomes the file; the rest
        // of the program keeps working.
        k("renumber a file onto fd 3: fd 3 reads the file", concat!(file_onto_3!(), "(call $read (i32.const 3))"), SUCCESS, read_file_at_512),
        c("renumber a file onto fd 3: path_open on fd 3 is now NOTDIR", concat!(file_onto_3!(), "(call $open_r (i32.const 3) @0)"), NOTDIR),
        c("renumber a file onto fd 3: fd_prestat_get(3) is BADF", concat!(file_onto_3!(), "(call $fd_prestat_get (i32.const 3) (i32.const 16))"), BADF),
        c("renumber a file onto fd 3: the old number is closed", concat!(file_onto_3!(), "(call $read (call $fd))"), BADF),
        c("renumber a file onto fd 3: the other preopen (fd 4) still works", concat!(file_onto_3!(), "(call $open_r (i32.const 4) @1)"), SUCCESS),
        c("renumber a file onto fd 3: a new open takes the free lowest slot (5)", concat!(file_onto_3!(), "(call $ok (call $open_r (i32.const 4) @1)) (i32.sub (call $fd) (i32.const 5))"), SUCCESS),
        c("renumber preopen 3 onto preopen 4: fd 4 is the sandbox", "(call $ok (call $fd_renumber (i32.const 3) (i32.const 4))) (call $open_r (i32.const 4) @0)", SUCCESS),
        c("renumber preopen 3 onto preopen 4: sandbox2 is gone", "(call $ok (call $fd_renumber (i32.const 3) (i32.const 4))) (call $open_r (i32.const 4) @1)", NOENT),
        c("renumber preopen 3 onto preopen 4: fd 3 is closed", "(call $ok (call $fd_renumber (i32.const 3) (i32.const 4))) (call $open_r (i32.const 3) @0)", BADF),
        c("renumber 3 onto itself: no change", "(call $ok (call $fd_renumber (i32.const 3) (i32.const 3))) (call $open_r (i32.const 3) @0)", SUCCESS),
        c("renumber stdin onto 3: path_open on fd 3 is NOTDIR", "(call $ok (call $fd_renumber (i32.const 0) (i32.const 3))) (call $open_r (i32.const 3) @0)", NOTDIR),
    ]);
}

fn eleven_opened(o: &Outcome) {
    assert_eq!(u32::from_le_bytes(o.mem[12..16].try_into().unwrap()), 11, "16 slots - 3 stdio - 2 preopens = 11 opens");
}

#[test]
fn fd_exhaustion() {
    // Open `file` until it fails (must be EMFILE), close fd 10, open again (gets fd 10), and
    // return the errno of one more open.
    const BODY: &str = "(local $e i32)
    (block $full (loop $more
      (local.set $e (call $open_r (i32.const 3) @0))
      (br_if $full (local.get $e))
      (i32.store (i32.const 12) (i32.add (i32.load (i32.const 12)) (i32.const 1)))
      (br $more)))
    (call $ok (i32.sub (local.get $e) (i32.const 33)))
    (call $ok (call $fd_close (i32.const 10)))
    (call $ok (call $open_r (i32.const 3) @0))
    (call $ok (i32.sub (call $fd) (i32.const 10)))
    (call $open_r (i32.const 3) @0)";
    run_table("fd exhaustion (max_fds 16)", &[
        Case { what: "open until EMFILE; close one; one more open works; the next is EMFILE", strings: &["file"], body: BODY, expect: MFILE, max_fds: Some(16), check: Some(eleven_opened), ..BASE },
        Case { what: "directories count too: path_create_directory still works when full", strings: &["file", "newdir"], body: concat!("(local $e i32) (block $full (loop $more (local.set $e (call $open_r (i32.const 3) @0)) (br_if $full (local.get $e)) (br $more)))", " (call $path_create_directory (i32.const 3) @1)"), expect: SUCCESS, max_fds: Some(16), ..BASE },
        Case { what: "a full table: opening a directory is EMFILE too", strings: &["file", "a"], body: "(local $e i32) (block $full (loop $more (local.set $e (call $open_r (i32.const 3) @0)) (br_if $full (local.get $e)) (br $more))) (call $open_dir (i32.const 3) @1)", expect: MFILE, max_fds: Some(16), ..BASE },
    ]);
}

// ---- the file-size limit -----------------------------------------------------------------------

#[test]
fn file_size_limit() {
    // `big` is created empty (fd at 0) before each body.
    macro_rules! big {
        ($rest:expr) => {
            concat!("(call $ok (call $open_w (i32.const 3) @0 (i32.const 1))) ", $rest)
        };
    }
    /// `big` opened with fdflags APPEND.
    macro_rules! big_append {
        ($rest:expr) => {
            concat!("(call $ok (call $open_flags (i32.const 3) @0 (i32.const 1) (i32.const 1))) ", $rest)
        };
    }
    let c = |what, body, expect| Case { what, strings: &["big"], body, expect, max_file_size: Some(1024), check: Some(file_at_most_1024), ..BASE };
    let size_is = |what, body, expect, check: fn(&Outcome)| Case { what, strings: &["big"], body, expect, max_file_size: Some(1024), check: Some(check), ..BASE };
    run_table("file size limit (max_file_size 1024)", &[
        c("fd_write 1025 bytes", big!("(call $write (call $fd) (i32.const 1025))"), FBIG),
        size_is("fd_write exactly 1024 bytes", big!("(call $write (call $fd) (i32.const 1024))"), SUCCESS, |o| assert_eq!(std::fs::metadata(o.sandbox.join("big")).unwrap().len(), 1024)),
        c("fd_write 1024 then 1 more", big!("(call $ok (call $write (call $fd) (i32.const 1024))) (call $write (call $fd) (i32.const 1))"), FBIG),
        size_is("fd_write 1000 then 100 (nothing of the 100 written)", big!("(call $ok (call $write (call $fd) (i32.const 1000))) (call $write (call $fd) (i32.const 100))"), FBIG, |o| assert_eq!(std::fs::metadata(o.sandbox.join("big")).unwrap().len(), 1000)),
        c("fd_seek to 2000, fd_write 1 byte", big!("(call $ok (call $fd_seek (call $fd) (i64.const 2000) (i32.const 0) (i32.const 16))) (call $write (call $fd) (i32.const 1))"), FBIG),
        c("fd_pwrite 100 bytes at 1000", big!("(i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 100)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const 1000) (i32.const 8))"), FBIG),
        c("fd_pwrite 10 bytes at i64::MAX", big!("(i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 10)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 8))"), FBIG),
        c("fd_pwrite at offset u64::MAX", big!("(i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 10)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const -1) (i32.const 8))"), INVAL),
        c("fd_allocate(0, 2000)", big!("(call $fd_allocate (call $fd) (i64.const 0) (i64.const 2000))"), FBIG),
        c("fd_allocate(1000, 100)", big!("(call $fd_allocate (call $fd) (i64.const 1000) (i64.const 100))"), FBIG),
        c("fd_allocate(u64::MAX, 2) (offset + len overflows)", big!("(call $fd_allocate (call $fd) (i64.const -1) (i64.const 2))"), INVAL),
        c("fd_allocate(0, 1024) (exactly the limit)", big!("(call $fd_allocate (call $fd) (i64.const 0) (i64.const 1024))"), SUCCESS),
        c("fd_filestat_set_size(2000)", big!("(call $fd_filestat_set_size (call $fd) (i64.const 2000))"), FBIG),
        c("fd_filestat_set_size(1025)", big!("(call $fd_filestat_set_size (call $fd) (i64.const 1025))"), FBIG),
        c("fd_filestat_set_size(u64::MAX)", big!("(call $fd_filestat_set_size (call $fd) (i64.const -1))"), INVAL),
        c("fd_filestat_set_size(1024) (exactly the limit)", big!("(call $fd_filestat_set_size (call $fd) (i64.const 1024))"), SUCCESS),
        c("APPEND: fd_write 1000 then 100", big_append!("(call $ok (call $write (call $fd) (i32.const 1000))) (call $write (call $fd) (i32.const 100))"), FBIG),
        c(
            "APPEND: fd_write 1000, then fd_pwrite 1000 at offset 0 (Linux appends pwrite on O_APPEND)",
            big_append!("(call $ok (call $write (call $fd) (i32.const 1000))) (i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 1000)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const 0) (i32.const 8))"),
            FBIG,
        ),
        c(
            "APPEND set by fd_fdstat_set_flags: fd_write 1000, then fd_pwrite 100 at 0",
            big!("(call $ok (call $write (call $fd) (i32.const 1000))) (call $ok (call $fd_fdstat_set_flags (call $fd) (i32.const 1))) (i32.store (i32.const 128) (i32.const 4096)) (i32.store (i32.const 132) (i32.const 100)) (call $fd_pwrite (call $fd) (i32.const 128) (i32.const 1) (i64.const 0) (i32.const 8))"),
            FBIG,
        ),
        c(
            "two fds on one file: each stays under the limit",
            concat!(
                "(call $ok (call $open_w (i32.const 3) @0 (i32.const 1))) (i32.store (i32.const 4) (call $fd))",
                " (call $ok (call $open_w (i32.const 3) @0 (i32.const 0)))",
                " (call $ok (call $write (i32.load (i32.const 4)) (i32.const 1000)))",
                " (call $ok (call $fd_seek (call $fd) (i64.const 1000) (i32.const 0) (i32.const 16)))",
                " (call $write (call $fd) (i32.const 100))"
            ),
            FBIG,
        ),
    ]);
}

#[test]
fn write_to_a_fifo_with_a_size_limit() {
    // A FIFO in the sandbox (put there by the host). This once reached the size check's
    // `lseek(SEEK_CUR)`, which fails on a FIFO (a host panic); now a guest never opens a FIFO
    // at all (its open could block the host: path.rs), with or without O_NONBLOCK.
    run_table("fifo with max_file_size", &[Case {
        what: "path_open of a FIFO (O_NONBLOCK, to write) with a size limit: refused",
        strings: &["fifo"],
        body: "(call $open_flags (i32.const 3) @0 (i32.const 0) (i32.const 4))",
        expect: ACCES,
        max_file_size: Some(1024),
        ..BASE
    }]);
}

// ---- the harness catches escapes ----------------------------------------------------------------

#[test]
fn harness_detects_escapes() {
    let changed = Case {
        what: "the host writes outside during the case",
        strings: &["file"],
        body: "(i32.const 0)",
        host_then: Some(|sandbox| std::fs::write(sandbox.parent().unwrap().join("outside/new"), "x").unwrap()),
        body2: "(i32.const 0)",
        ..BASE
    };
    let leaked = Case {
        what: "a secret lands in guest memory",
        strings: &["file"],
        body: "(call $open_r (i32.const 3) @0)",
        host_then: Some(|sandbox| std::fs::write(sandbox.join("file"), "TOPSECRET").unwrap()),
        body2: "(call $read (call $fd))",
        ..BASE
    };
    for case in [changed, leaked] {
        for isolation in [Isolation::Kvm, Isolation::Process] {
            match run_case(&case, isolation) {
                Err(e) if e.starts_with("ESCAPE") => {}
                other => panic!("{}: the harness missed it: {other:?}", case.what),
            }
        }
    }
}
