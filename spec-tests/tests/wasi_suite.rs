//! The official WASI test suite (`../shared/wasi-testsuite`, the 72 prebuilt `wasm32-wasip1`
//! tests under `tests/{assemblyscript,c,rust}/testsuite/wasm32-wasip1/`) run against wasce in
//! both isolation modes, following the suite's `doc/specification.md`.
//!
//! What the runner does, step by step, and how each part of the specification maps onto it:
//!
//! - **Test cases**: every `*.wasm` in the three `wasm32-wasip1` directories. A test is named
//!   `lang/name` (`rust/fd_advise`). Each module is compiled once and the compiled `Module` is
//!   shared by both modes.
//! - **Specification**: `name.json` beside the module, or the default spec when there is none.
//!   Both formats are read:
//!   - *legacy* (`args`, `env`, `root`, `exit_code`, `stdout`, `stderr`) is converted the way
//!     the reference runner converts it: `run`, then `read stdout` / `read stderr` when those
//!     keys are present, then `wait`;
//!   - *operation-based* (`proposals`, `operations`, `world`): `run`, `wait` and `read` are
//!     executed. Tests that need a proposal (`sockets`, `http`), a world other than
//!     `wasi:cli/command`, or a network/interactive operation (`connect`, `send`, `recv`, ...)
//!     are reported as SKIP with the reason and never count as passed.
//!
//!   The spec's validation rules are enforced (each `run` paired with a `wait`; `read`/`connect`/
//!   `send`/`recv` only after a `run`; unique connection ids; `send`/`recv` on a known id); an
//!   invalid spec is a failure.
//! - **`run`** builds the WASI context and runs `_start` to completion on a fresh `Store`:
//!   - `args`: `argv[0]` is the module's file name (`fd_advise.wasm`), as wasmtime, the reference
//!     adapter, passes it (the base name of the module path), followed by the spec's `args`;
//!   - `env`: exactly the spec's variables, nothing inherited from the host;
//!   - `root`: the spec's directory (relative to the test's directory) is copied into a fresh
//!     temporary directory, because the shared suite is read-only and tests must not see each
//!     other's leftovers, and the copy is preopened under the guest name `/` — the spec's "the
//!     WASI guest's root filesystem", and what wasmtime's adapter passes (`--dir ROOT::/`). It
//!     is the only preopen, so it is fd 3. `*.cleanup` artifacts are removed (not copied), as
//!     the spec's preparation step asks; the copy is deleted after the test;
//!   - stdin reads see end-of-file; stdout and stderr are captured.
//!
//!   A trap or other engine error ends the run without an exit status, so the following `wait`
//!   fails with the error.
//! - **`read`** consumes the next `len(payload)` characters of the captured stream and compares
//!   them with `payload`, as the reference runner's `stream.read(len(payload))` does (a prefix
//!   match; the default payload `""` always matches).
//! - **`wait`** compares the exit status (0 when `_start` returns, `n` for `proc_exit(n)`).
//!
//! A test passes when every operation's expectation is met. Each run has a wall-clock limit
//! ([`TIMEOUT`]); the tests run on up to [`WORKERS`] threads, and the two modes never run at the
//! same time. The outcome is printed as a table (test, mode, status, reason) with a summary line
//! per mode, and the `#[test]` fails on any failure that `wasi-expected-failures.txt` does not
//! list, and on any listed test that does not fail (so the list stays honest). Statuses: PASS,
//! FAIL, SKIP; for listed tests XFAIL (failed as expected), XPASS / XSKIP (stale entry). The list
//! is shared by both modes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use wasce_engine::wasi::{add_to_linker, run_command, Preopen, Stdio, WasiConfig};
use wasce_engine::{HostcallTransport, Isolation, Linker, Module, Settings, Store, StoreConfig};

/// The three test languages the prebuilt suite ships.
const LANGS: [&str; 3] = ["assemblyscript", "c", "rust"];
/// The WASI version directory under `tests/<lang>/testsuite/`.
const WASI_VERSION: &str = "wasm32-wasip1";
/// How many tests the prebuilt `wasm32-wasip1` suite has; guards against silently running fewer.
const EXPECTED_TESTS: usize = 72;
/// Wall-clock limit of one test run.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Threads running tests (the machine has 2 cores).
const WORKERS: usize = 2;

/// An isolation mode and, in the VM, how host calls leave it.
#[derive(Clone, Copy, Debug)]
struct Mode {
    isolation: Isolation,
    hostcall: HostcallTransport,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.isolation {
            Isolation::Kvm => write!(f, "Kvm/{:?}", self.hostcall),
            Isolation::Process => write!(f, "Process"),
        }
    }
}

/// The VM with host calls over the exit-less ring.
#[test]
fn wasi_suite_kvm_mode() {
    run_suite(Mode { isolation: Isolation::Kvm, hostcall: HostcallTransport::Ring });
}

/// The VM with every host call a VM exit.
#[test]
fn wasi_suite_kvm_mode_exit_transport() {
    run_suite(Mode { isolation: Isolation::Kvm, hostcall: HostcallTransport::Exit });
}

#[test]
fn wasi_suite_process_mode() {
    run_suite(Mode { isolation: Isolation::Process, hostcall: HostcallTransport::Auto });
}

/// The spec parser on the shapes the prebuilt suite does not contain (yet): operation-based
/// specs, proposals, network operations and invalid specs.
#[test]
fn wasi_spec_parsing() {
    let dir = Path::new("/nonexistent");
    let parse = |json: &str| parse_spec(&serde_json::from_str(json).unwrap(), dir);
    let status = |json: &str| parse(json).err().map(|v| v.status);

    let ops = parse(r#"{"stdout": "hi", "exit_code": 3, "args": ["a"], "env": {"K": "v"}}"#).unwrap();
    assert!(matches!(&ops[..], [Op::Run(r), Op::Read { stream: Stream::Stdout, .. }, Op::Wait { exit_code: 3 }]
        if r.args == ["a"] && r.env == [("K".to_string(), "v".to_string())] && r.root.is_none()));
    assert!(matches!(&parse(r#"{"proposals": []}"#).unwrap()[..], [Op::Run(_), Op::Wait { exit_code: 0 }]));
    let ops = parse(r#"{"operations": [{"type": "run"}, {"type": "read", "id": "stderr", "payload": "x"}, {"type": "wait", "exit_code": 1}]}"#).unwrap();
    assert!(matches!(&ops[..], [Op::Run(_), Op::Read { stream: Stream::Stderr, .. }, Op::Wait { exit_code: 1 }]));

    assert_eq!(status(r#"{"proposals": ["sockets"]}"#), Some(Status::Skip));
    assert_eq!(status(r#"{"world": "wasi:http/service"}"#), Some(Status::Skip));
    let network = r#"{"operations": [{"type": "run"}, {"type": "connect", "id": "c"}, {"type": "send", "id": "c", "payload": "x"},
        {"type": "recv", "id": "c", "payload": "x"}, {"type": "wait"}]}"#;
    assert_eq!(status(network), Some(Status::Skip));

    for invalid in [
        r#"{"operations": []}"#,
        r#"{"operations": [{"type": "run"}]}"#,
        r#"{"operations": [{"type": "wait"}]}"#,
        r#"{"operations": [{"type": "read"}, {"type": "run"}, {"type": "wait"}]}"#,
        r#"{"operations": [{"type": "run"}, {"type": "run"}, {"type": "wait"}, {"type": "wait"}]}"#,
        r#"{"operations": [{"type": "run"}, {"type": "connect"}, {"type": "connect"}, {"type": "wait"}]}"#,
        r#"{"operations": [{"type": "run"}, {"type": "send", "id": "nope"}, {"type": "wait"}]}"#,
        r#"{"operations": [{"type": "run"}, {"type": "teleport"}, {"type": "wait"}]}"#,
        r#"{"args": [], "operations": []}"#,
        r#"{"root": "missing.dir"}"#,
        r#"{"exit_code": "zero"}"#,
        r#"{"bogus": 1}"#,
    ] {
        assert_eq!(status(invalid), Some(Status::Fail), "{invalid}");
    }
}

// ---------------------------------------------------------------------------------------------
// Locating the suite and the expected failures

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn suite_dir() -> PathBuf {
    let dir = repo_root().join("../shared/wasi-testsuite");
    assert!(
        dir.join("tests").is_dir(),
        "the WASI test suite is missing: expected it at {} (../shared/wasi-testsuite beside the \
         repository, with tests/{{assemblyscript,c,rust}}/testsuite/{WASI_VERSION}/)",
        dir.display()
    );
    dir
}

/// `wasi-expected-failures.txt`: test name to reason.
fn expected_failures() -> BTreeMap<String, String> {
    let path = repo_root().join("spec-tests/wasi-expected-failures.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        assert!(
            !reason.trim().is_empty(),
            "{}:{}: `{name}` needs a reason (`lang/name  reason`)",
            path.display(),
            i + 1
        );
        map.insert(name.to_string(), reason.trim().to_string());
    }
    map
}

// ---------------------------------------------------------------------------------------------
// Test cases and their specifications

/// One test: its module and what to do with it.
struct TestCase {
    /// `lang/name`.
    name: String,
    /// The module's file name, passed as `argv[0]`.
    file_name: String,
    /// The compiled module, or the compile error.
    module: Result<Module, String>,
    /// The operations to execute, or why the test cannot be run (skip or invalid spec).
    plan: Result<Vec<Op>, Verdict>,
}

#[derive(Clone, Debug)]
enum Op {
    Run(Run),
    Wait { exit_code: i32 },
    Read { stream: Stream, payload: String },
}

#[derive(Clone, Debug)]
struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Host directory to preopen as `/`, already resolved against the test's directory.
    root: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// All test cases, compiled once and shared by both modes.
fn test_cases() -> &'static [TestCase] {
    static CASES: OnceLock<Vec<TestCase>> = OnceLock::new();
    CASES.get_or_init(|| {
        let root = suite_dir();
        let mut wasms = Vec::new();
        for lang in LANGS {
            let dir = root.join("tests").join(lang).join("testsuite").join(WASI_VERSION);
            let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "wasm") {
                    wasms.push((lang, path));
                }
            }
        }
        wasms.sort();
        assert_eq!(
            wasms.len(),
            EXPECTED_TESTS,
            "expected the {EXPECTED_TESTS} prebuilt {WASI_VERSION} tests in {}",
            root.display()
        );

        let queue = Mutex::new(wasms);
        let cases = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| loop {
                    let Some((lang, path)) = queue.lock().unwrap().pop() else { break };
                    let case = load_case(lang, &path);
                    cases.lock().unwrap().push(case);
                });
            }
        });
        let mut cases = cases.into_inner().unwrap();
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        cases
    })
}

fn load_case(lang: &str, wasm: &Path) -> TestCase {
    let stem = wasm.file_stem().unwrap().to_string_lossy().into_owned();
    let module = fs::read(wasm)
        .map_err(|e| format!("reading {}: {e}", wasm.display()))
        .and_then(|bytes| wasce_engine::load(&bytes, &Settings::default()).map_err(|e| format!("compile: {e}")));
    let json = wasm.with_extension("json");
    let plan = if json.is_file() {
        fs::read_to_string(&json)
            .map_err(|e| Verdict::fail(format!("reading {}: {e}", json.display())))
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| Verdict::fail(format!("bad JSON spec: {e}"))))
            .and_then(|spec| parse_spec(&spec, wasm.parent().unwrap()))
    } else {
        Ok(default_operations())
    };
    TestCase { name: format!("{lang}/{stem}"), file_name: wasm.file_name().unwrap().to_string_lossy().into_owned(), module, plan }
}

/// The specification's default: `run` then `wait`, with every field at its default.
fn default_operations() -> Vec<Op> {
    vec![Op::Run(Run { args: Vec::new(), env: Vec::new(), root: None }), Op::Wait { exit_code: 0 }]
}

const LEGACY_KEYS: [&str; 6] = ["args", "root", "env", "exit_code", "stderr", "stdout"];
const OPERATION_KEYS: [&str; 4] = ["operations", "proposals", "world", "servers"];

/// Turn a JSON specification into operations; `Err` is a skip (unsupported feature) or a
/// failure (invalid specification).
fn parse_spec(spec: &Value, test_dir: &Path) -> Result<Vec<Op>, Verdict> {
    let obj = spec.as_object().ok_or_else(|| Verdict::fail("the JSON spec is not an object"))?;
    if let Some(key) = obj.keys().find(|k| !LEGACY_KEYS.contains(&k.as_str()) && !OPERATION_KEYS.contains(&k.as_str())) {
        return Err(Verdict::fail(format!("unknown key `{key}` in the JSON spec")));
    }
    let legacy = obj.keys().any(|k| LEGACY_KEYS.contains(&k.as_str()));
    let operation_based = obj.keys().any(|k| OPERATION_KEYS.contains(&k.as_str()));
    match (legacy, operation_based) {
        (true, true) => Err(Verdict::fail("the JSON spec mixes legacy and operation-based keys")),
        (true, false) => parse_legacy(obj, test_dir),
        (false, _) => parse_operation_based(obj, test_dir),
    }
}

/// Legacy spec: `run`, `read stdout` / `read stderr` when given, `wait`.
fn parse_legacy(obj: &Map<String, Value>, test_dir: &Path) -> Result<Vec<Op>, Verdict> {
    let mut ops = vec![Op::Run(parse_run(obj, test_dir)?)];
    for (key, stream) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            ops.push(Op::Read { stream, payload: string(v, key)? });
        }
    }
    ops.push(Op::Wait { exit_code: parse_exit_code(obj)? });
    Ok(ops)
}

fn parse_operation_based(obj: &Map<String, Value>, test_dir: &Path) -> Result<Vec<Op>, Verdict> {
    let proposals = match obj.get("proposals") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => string_list(v, "proposals")?,
    };
    if !proposals.is_empty() {
        return Err(Verdict::skip(format!("needs WASI proposal(s) {}, which wasce does not implement", proposals.join(", "))));
    }
    if let Some(world) = obj.get("world").filter(|v| !v.is_null()) {
        let world = string(world, "world")?;
        if world != "wasi:cli/command" {
            return Err(Verdict::skip(format!("needs world `{world}` (only wasi:cli/command is supported)")));
        }
    }
    if obj.get("servers").is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(Verdict::skip("needs test HTTP servers (network tests are not supported)"));
    }
    let Some(list) = obj.get("operations") else { return Ok(default_operations()) };
    let list = list.as_array().ok_or_else(|| Verdict::fail("`operations` is not a list"))?;

    // Validate (the specification's four rules) while converting.
    let mut ops = Vec::new();
    let (mut running, mut started) = (false, false);
    let mut connections = BTreeSet::new();
    let mut network_op = None;
    for (i, op) in list.iter().enumerate() {
        let op = op.as_object().ok_or_else(|| Verdict::fail(format!("operation {i} is not an object")))?;
        let kind = op.get("type").and_then(Value::as_str).ok_or_else(|| Verdict::fail(format!("operation {i} has no `type`")))?;
        let needs_run = || {
            if started { Ok(()) } else { Err(Verdict::fail(format!("operation {i} (`{kind}`) comes before any `run`"))) }
        };
        match kind {
            "run" => {
                if running {
                    return Err(Verdict::fail(format!("operation {i}: `run` while the previous run has no `wait`")));
                }
                (running, started) = (true, true);
                ops.push(Op::Run(parse_run(op, test_dir)?));
            }
            "wait" => {
                if !running {
                    return Err(Verdict::fail(format!("operation {i}: `wait` without a `run`")));
                }
                running = false;
                ops.push(Op::Wait { exit_code: parse_exit_code(op)? });
            }
            "read" => {
                needs_run()?;
                let stream = match op.get("id").map(|v| string(v, "id")).transpose()?.as_deref() {
                    None | Some("stdout") => Stream::Stdout,
                    Some("stderr") => Stream::Stderr,
                    Some(other) => return Err(Verdict::fail(format!("operation {i}: `read` of unknown stream `{other}`"))),
                };
                let payload = op.get("payload").map(|v| string(v, "payload")).transpose()?.unwrap_or_default();
                ops.push(Op::Read { stream, payload });
            }
            "connect" => {
                needs_run()?;
                let id = op.get("id").map(|v| string(v, "id")).transpose()?.unwrap_or_else(|| "server".into());
                if !connections.insert(id.clone()) {
                    return Err(Verdict::fail(format!("operation {i}: connection id `{id}` is not unique")));
                }
                network_op.get_or_insert(kind);
            }
            "send" | "recv" => {
                needs_run()?;
                let id = op.get("id").ok_or_else(|| Verdict::fail(format!("operation {i}: `{kind}` needs an `id`")))?;
                let id = string(id, "id")?;
                if !connections.contains(&id) {
                    return Err(Verdict::fail(format!("operation {i}: `{kind}` on connection `{id}`, which no `connect` defined")));
                }
                network_op.get_or_insert(kind);
            }
            "write" | "request" | "kill" => {
                needs_run()?;
                network_op.get_or_insert(kind);
            }
            other => return Err(Verdict::fail(format!("operation {i}: unknown type `{other}`"))),
        }
    }
    if running {
        return Err(Verdict::fail("the last `run` has no `wait`"));
    }
    if !started {
        return Err(Verdict::fail("the operations have no `run`: nothing would be tested"));
    }
    if let Some(kind) = network_op {
        return Err(Verdict::skip(format!("uses the `{kind}` operation (network/interactive tests are not supported)")));
    }
    Ok(ops)
}

/// The `run` fields (`args`, `env`, `root`) of a legacy spec or a `run` operation.
fn parse_run(obj: &Map<String, Value>, test_dir: &Path) -> Result<Run, Verdict> {
    let args = match obj.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => string_list(v, "args")?,
    };
    let env = match obj.get("env") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| Ok((k.clone(), string(v, "env value")?))).collect::<Result<_, Verdict>>()?,
        Some(_) => return Err(Verdict::fail("`env` is not an object")),
    };
    let root = match obj.get("root") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let dir = test_dir.join(string(v, "root")?);
            if !dir.is_dir() {
                return Err(Verdict::fail(format!("`root` {} is not a directory", dir.display())));
            }
            Some(dir)
        }
    };
    Ok(Run { args, env, root })
}

fn parse_exit_code(obj: &Map<String, Value>) -> Result<i32, Verdict> {
    match obj.get("exit_code") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| Verdict::fail(format!("`exit_code` {v} is not an exit status"))),
    }
}

fn string(v: &Value, what: &str) -> Result<String, Verdict> {
    v.as_str().map(str::to_string).ok_or_else(|| Verdict::fail(format!("`{what}` is not a string: {v}")))
}

fn string_list(v: &Value, what: &str) -> Result<Vec<String>, Verdict> {
    v.as_array().ok_or_else(|| Verdict::fail(format!("`{what}` is not a list")))?.iter().map(|v| string(v, what)).collect()
}

// ---------------------------------------------------------------------------------------------
// Execution

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Skip,
}

/// The outcome of one test in one mode.
#[derive(Clone, Debug)]
struct Verdict {
    status: Status,
    /// One line: why it failed or was skipped.
    reason: String,
    /// More context for a failure (captured output).
    details: String,
}

impl Verdict {
    fn pass() -> Self {
        Verdict { status: Status::Pass, reason: String::new(), details: String::new() }
    }
    fn fail(reason: impl Into<String>) -> Self {
        Verdict { status: Status::Fail, reason: reason.into(), details: String::new() }
    }
    fn skip(reason: impl Into<String>) -> Self {
        Verdict { status: Status::Skip, reason: reason.into(), details: String::new() }
    }
}

/// Run one test in `isolation`, on its own thread so that a hung or panicking run becomes a
/// failure instead of stopping the suite.
fn run_case(case: &TestCase, isolation: Mode) -> Verdict {
    let ops = match &case.plan {
        Ok(ops) => ops.clone(),
        Err(verdict) => return verdict.clone(),
    };
    let module = match &case.module {
        Ok(module) => module.clone(),
        Err(e) => return Verdict::fail(e.clone()),
    };
    let argv0 = case.file_name.clone();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name(case.name.clone()).spawn(move || {
        let verdict = catch_unwind(AssertUnwindSafe(|| execute(&module, &argv0, &ops, isolation)))
            .unwrap_or_else(|payload| {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Verdict::fail(format!("panicked: {msg}"))
            });
        let _ = tx.send(verdict);
    });
    if let Err(e) = spawned {
        return Verdict::fail(format!("spawning the test thread: {e}"));
    }
    // The store's own timeout (VM mode) fires first; this also covers process mode.
    match rx.recv_timeout(TIMEOUT + Duration::from_secs(10)) {
        Ok(verdict) => verdict,
        Err(RecvTimeoutError::Timeout) => Verdict::fail(format!("timed out after {}s (run abandoned)", TIMEOUT.as_secs())),
        Err(RecvTimeoutError::Disconnected) => Verdict::fail("the test thread died without a result"),
    }
}

/// The result of the latest `run`.
struct Finished {
    status: Result<i32, String>,
    stdout: String,
    stderr: String,
    /// How many characters of stdout / stderr `read` operations have consumed.
    stdout_pos: usize,
    stderr_pos: usize,
}

/// Execute the operations in order and check each one's expectation; like the reference runner,
/// every unmet expectation is recorded, and the test passes when there is none. A run that ended
/// in an engine error (trap, unknown import, ...) is reported first: it explains the rest.
fn execute(module: &Module, argv0: &str, ops: &[Op], isolation: Mode) -> Verdict {
    // One fresh copy per `root`, kept for the whole test (like the reference runner's host dir).
    let mut roots: BTreeMap<PathBuf, tempfile::TempDir> = BTreeMap::new();
    let mut last: Option<Finished> = None;
    let mut failures: Vec<String> = Vec::new();
    for op in ops {
        match op {
            Op::Run(run) => {
                let preopen = match &run.root {
                    None => None,
                    Some(root) => {
                        if !roots.contains_key(root) {
                            match copy_root(root) {
                                Ok(dir) => roots.insert(root.clone(), dir),
                                Err(e) => return Verdict::fail(format!("copying {}: {e}", root.display())),
                            };
                        }
                        Some(roots[root].path().to_path_buf())
                    }
                };
                last = Some(run_once(module, argv0, run, preopen, isolation));
            }
            Op::Read { stream, payload } => {
                let f = last.as_mut().expect("validated: read after run");
                let (text, pos, name) = match stream {
                    Stream::Stdout => (&f.stdout, &mut f.stdout_pos, "stdout"),
                    Stream::Stderr => (&f.stderr, &mut f.stderr_pos, "stderr"),
                };
                let got: String = text.chars().skip(*pos).take(payload.chars().count()).collect();
                *pos += got.chars().count();
                if got != *payload {
                    failures.push(format!("read {name}: expected {payload:?}, got {got:?}"));
                }
            }
            Op::Wait { exit_code } => match &last.as_ref().expect("validated: wait after run").status {
                Ok(code) if code == exit_code => {}
                Ok(code) => failures.push(format!("exit status {code}, expected {exit_code}")),
                Err(e) => failures.insert(0, format!("{e} (expected exit status {exit_code})")),
            },
        }
    }
    if failures.is_empty() {
        return Verdict::pass();
    }
    let mut reason = failures.join("; ");
    let f = last.as_ref().expect("validated: a test has a run");
    if let Some(line) = stderr_hint(&f.stderr) {
        reason += &format!(" — stderr: {line}");
    }
    let mut verdict = Verdict::fail(reason);
    verdict.details = output_details(f);
    verdict
}

/// Instantiate and run the module once with the WASI context `run` describes.
fn run_once(module: &Module, argv0: &str, run: &Run, root: Option<PathBuf>, mode: Mode) -> Finished {
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let config = WasiConfig {
        args: std::iter::once(argv0.to_string()).chain(run.args.iter().cloned()).collect(),
        env: run.env.clone(),
        preopens: root.into_iter().map(|host| Preopen { host, guest: "/".into() }).collect(),
        stdin: Stdio::Null,
        stdout: Stdio::Capture(stdout.clone()),
        stderr: Stdio::Capture(stderr.clone()),
        ..WasiConfig::default()
    };
    let status = (|| {
        // Only the VM can interrupt a running call; process mode relies on `run_case`'s watchdog.
        let isolation = mode.isolation;
        let timeout = matches!(isolation, Isolation::Kvm).then_some(TIMEOUT);
        let mut store = Store::new(StoreConfig { isolation, timeout, hostcall: mode.hostcall, ..StoreConfig::default() })
            .map_err(|e| format!("creating the store: {e}"))?;
        let mut linker = Linker::new();
        add_to_linker(&mut store, &mut linker, config).map_err(|e| format!("setting up WASI: {e}"))?;
        run_command(&mut store, &linker, module).map_err(|e| e.to_string())
    })();
    let text = |buf: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&buf.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    Finished { status, stdout: text(&stdout), stderr: text(&stderr), stdout_pos: 0, stderr_pos: 0 }
}

/// The line of a failed program's stderr that most likely says why: the first one that is not a
/// Rust panic's location line or a `note:`.
fn stderr_hint(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            let panic_location = l.starts_with("thread '") && l.contains("panicked at");
            !(l.is_empty() || panic_location || l.starts_with("note: "))
        })
}

fn output_details(f: &Finished) -> String {
    const MAX: usize = 2000;
    let clip = |s: &str| -> String {
        if s.chars().count() > MAX { format!("{}…", s.chars().take(MAX).collect::<String>()) } else { s.to_string() }
    };
    let mut out = String::new();
    if !f.stdout.is_empty() {
        out += &format!("==STDOUT==\n{}\n", clip(&f.stdout));
    }
    if !f.stderr.is_empty() {
        out += &format!("==STDERR==\n{}\n", clip(&f.stderr));
    }
    out
}

/// Copy `root` (read-only in the shared suite) into a fresh temporary directory, leaving out
/// `*.cleanup` artifacts, and return the directory; the copy is owner-writable.
fn copy_root(root: &Path) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("wasce-wasi-").tempdir()?;
    copy_tree(root, dir.path())?;
    Ok(dir)
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".cleanup") {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let meta = fs::symlink_metadata(&from)?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if file_type.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode() | 0o700))?;
        } else {
            fs::copy(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode() | 0o600))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The suite

fn run_suite(isolation: Mode) {
    // The two modes share the machine's two cores: run one at a time. A failed mode poisons the
    // lock; the other mode still runs.
    static SUITE_LOCK: Mutex<()> = Mutex::new(());
    let _guard = SUITE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    let expected = expected_failures();
    let cases = test_cases();
    for name in expected.keys() {
        assert!(
            cases.iter().any(|c| &c.name == name),
            "wasi-expected-failures.txt lists `{name}`, which is not a test of the suite"
        );
    }

    let next = Mutex::new(0usize);
    let verdicts = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next - 1
                };
                let Some(case) = cases.get(i) else { break };
                let verdict = run_case(case, isolation);
                verdicts.lock().unwrap()[i] = Some(verdict);
            });
        }
    });
    let verdicts: Vec<Verdict> = verdicts.into_inner().unwrap().into_iter().map(Option::unwrap).collect();

    let mode = format!("{isolation}");
    let (mut passed, mut failed, mut skipped, mut xfailed) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    let mut details = Vec::new();
    println!("\n{:<52} {:<8} {:<6} reason", "test", "mode", "status");
    for (case, v) in cases.iter().zip(&verdicts) {
        let listed = expected.get(&case.name);
        let status = match (v.status, listed) {
            (Status::Pass, None) => "PASS",
            (Status::Fail, None) => "FAIL",
            (Status::Skip, None) => "SKIP",
            (Status::Fail, Some(_)) => "XFAIL",
            (Status::Pass, Some(_)) => "XPASS",
            (Status::Skip, Some(_)) => "XSKIP",
        };
        match v.status {
            Status::Pass => passed += 1,
            Status::Fail => failed += 1,
            Status::Skip => skipped += 1,
        }
        let reason = v.reason.lines().next().unwrap_or("");
        println!("{:<52} {:<8} {:<6} {}", case.name, mode, status, reason);
        match (v.status, listed) {
            (Status::Fail, Some(_)) => xfailed += 1,
            (Status::Fail, None) => {
                if !v.details.is_empty() {
                    details.push(format!("--- {} ({mode})\n{}", case.name, v.details.trim_end()));
                }
                problems.push(format!("FAIL {}: {reason}", case.name));
            }
            (_, Some(why)) => problems.push(format!(
                "{} is listed in wasi-expected-failures.txt ({why}) but did not fail: remove it",
                case.name
            )),
            (_, None) => {}
        }
    }
    if !details.is_empty() {
        println!("\noutput of the unexpected failures:\n{}\n", details.join("\n"));
    }
    println!("wasi suite ({mode}): {passed} passed, {failed} failed, {skipped} skipped ({xfailed} of the failures expected)");

    assert!(
        problems.is_empty(),
        "wasi suite ({mode}): {} unexpected result(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
