//! The `wasce` command line (the binary in `src/bin/wasce.rs` is just `main`).
//!
//! * `mod.rs`: the commands and options (clap), and how errors become exit codes.
//! * `exec.rs`: `wasce exec`: limits, WASI, preloads, running, `--stats`.
//! * `module.rs`: reading modules (binary, text, artifact), the compile cache, compile progress.
//! * `serve.rs`: `wasce serve`, the job server over the warm-start API (`serve/`: HTTP, metrics).
//! * `compile.rs`: `wasce compile` and `wasce wast`.
//! * `parse.rs`: values of options (durations, sizes, `NAME=MODULE`, invoke arguments).
//!
//! Exit codes follow wasmtime: the program's status for `proc_exit(n)` (0 when `_start` returns),
//! 134 for a trap (including an interrupt by `--timeout` and running out of `--fuel`), 1 for any
//! other error, and clap's 2 for a malformed command line; 159 (128 + SIGSYS) when the sandbox
//! blocked a system call (`wasce_engine::sandbox::EXIT_BLOCKED`).

mod compile;
mod exec;
mod module;
mod parse;
mod progress;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wasce_engine::Error;

#[derive(Parser)]
#[command(name = "wasce", version, about = "A secure WebAssembly runtime", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the whole error chain.
    #[arg(long, global = true)]
    verbose: bool,
}

const EXAMPLES: &str = "\
Examples:
  wasce exec module.wasm                          run `_start` in a KVM guest
  wasce exec --invoke fib examples/fib.wat 20     call an export and print its results
  wasce exec --dir data::/data --env HOME=/data module.wasm arg1
                                                  give it a directory, a variable, arguments
  wasce exec --timeout 200ms --max-memory 64MiB --fuel 1000000 module.wasm
                                                  limit time, memory and work
  wasce exec --tcplisten 127.0.0.1:8080 server.wasm
                                                  hand it a listening socket (fd 3)
  wasce exec --preload lib=lib.wasm main.wasm     satisfy main's imports from `lib`
  wasce exec --stats module.wasm                  print timings, guest exits and peak RSS
  wasce exec --isolation process module.wasm      run without a VM
  wasce compile module.wasm && wasce exec module.cwasm
                                                  compile ahead of time, run without compiling
  wasce wast ../shared/testsuite/i32.wast         run spec scripts
  wasce serve --listen 127.0.0.1:8080 --module hello=hello.cwasm --timeout 2s
                                                  serve it over HTTP: POST /run/hello with JSON
                                                  ({\"stdin\": ..., \"timeout_ms\": ...}), each request
                                                  in a warm VM restored after every run

After setup, `wasce exec` confines itself before the program runs: no_new_privs, a seccomp
allow-list per thread, Landlock limiting the filesystem to the --dir directories. A system call
outside the allow-list ends the run with `wasce: sandbox: blocked syscall NAME (NR) on the ...
thread` and status 159; `--no-sandbox` turns all three off (for debugging).

Modules (binary or text) are parsed and compiled in a separate, confined worker process (no
files, no network, no new processes), bounded by --compile-timeout (default 5m) and
--compile-memory (default 4GiB); past either bound the compile ends with an error that names it.

Exit status: the program's (proc_exit), 134 after a trap, 159 after a blocked system call, 1 for
other errors, 2 for a bad command line. Compiled modules are cached in $WASCE_CACHE_DIR, $XDG_CACHE_HOME/wasce or
~/.cache/wasce (`--no-cache` to skip).";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Isolation {
    /// Run compiled code in a KVM guest at ring 3 (the default).
    Kvm,
    /// Run compiled code in this process (signal handlers catch traps).
    Process,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Hostcall {
    Auto,
    Ring,
    Exit,
}

impl From<Hostcall> for wasce_engine::HostcallTransport {
    fn from(h: Hostcall) -> Self {
        match h {
            Hostcall::Auto => wasce_engine::HostcallTransport::Auto,
            Hostcall::Ring => wasce_engine::HostcallTransport::Ring,
            Hostcall::Exit => wasce_engine::HostcallTransport::Exit,
        }
    }
}

impl From<Isolation> for wasce_engine::Isolation {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::Kvm => wasce_engine::Isolation::Kvm,
            Isolation::Process => wasce_engine::Isolation::Process,
        }
    }
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Run a WebAssembly module (.wasm, .wat, or an artifact from `wasce compile`).
    Exec(exec::ExecArgs),
    /// Serve modules over HTTP: each request runs in a warm, VM-isolated instance (`POST
    /// /run/NAME` with JSON, WAGI at `/wagi/NAME`, `/healthz`, `/metrics`).
    Serve(serve::ServeArgs),
    /// Compile a module ahead of time into an artifact that `wasce exec` runs without compiling.
    Compile {
        /// Where to write the artifact (default: MODULE with the extension `.cwasm`).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Compile with fuel metering (for `wasce exec --fuel`).
        #[arg(long)]
        fuel: bool,
        #[command(flatten)]
        limits: CompileLimitArgs,
        #[command(flatten)]
        wasm: WasmArgs,
        /// The module (.wasm or .wat).
        module: PathBuf,
    },
    /// Run WebAssembly spec scripts; ends with `N passed, M failed`.
    Wast {
        #[arg(long, value_enum, default_value = "kvm")]
        isolation: Isolation,
        #[command(flatten)]
        wasm: WasmArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `-W NAME=y|n`: WebAssembly features (named as wasmtime names them), every implemented one
/// on by default.
#[derive(clap::Args, Clone, Debug)]
pub struct WasmArgs {
    /// Turn a WebAssembly feature on or off (repeatable, in order): memory64, multi-memory,
    /// threads, extended-const, relaxed-simd, tail-call, function-references, exceptions, gc,
    /// legacy-exceptions, or all (every one; all=n gives WebAssembly 2.0). All are on by
    /// default. `wasce exec` also takes unknown-imports-trap=y: function imports nothing
    /// defines are linked as functions that fail when called.
    #[arg(short = 'W', long = "wasm", value_name = "NAME=y|n", value_parser = parse::wasm_option)]
    wasm: Vec<parse::WasmOption>,
}

impl WasmArgs {
    pub fn features(&self) -> wasce_engine::Features {
        self.wasm.iter().fold(wasce_engine::Features::all(), |acc, o| match o {
            parse::WasmOption::Feature(f, on) => acc.with(*f, *on),
            parse::WasmOption::UnknownImportsTrap(_) => acc,
        })
    }

    /// `-W unknown-imports-trap`: the last one given.
    pub fn unknown_imports_trap(&self) -> bool {
        self.wasm.iter().rev().find_map(|o| match o {
            parse::WasmOption::UnknownImportsTrap(on) => Some(*on),
            _ => None,
        }) == Some(true)
    }

    /// The features, for a command that links nothing (`compile`, `wast`).
    pub fn features_only(&self, command: &str) -> Result<wasce_engine::Features, Error> {
        if self.unknown_imports_trap() {
            return Err(Error::Usage(format!("-W unknown-imports-trap is for `wasce exec`; `wasce {command}` links no imports")));
        }
        Ok(self.features())
    }
}

/// `wasce_engine::confined::DEFAULT_TIMEOUT` and `DEFAULT_MEMORY`, as the help shows them.
const DEFAULT_COMPILE_TIMEOUT: &str = "5m";
const DEFAULT_COMPILE_MEMORY: &str = "4GiB";

/// The bounds of compiling a module (`wasce exec`, `wasce compile`).
#[derive(clap::Args, Clone, Debug)]
pub struct CompileLimitArgs {
    /// Stop compiling a module after this long (e.g. 30s, 5m): modules are compiled in a
    /// confined worker process, which is killed at the limit.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = DEFAULT_COMPILE_TIMEOUT)]
    compile_timeout: std::time::Duration,
    /// Most memory the compile worker may use (e.g. 512MiB, 4GiB); a compile needing more ends
    /// with an error.
    #[arg(long, value_name = "SIZE", value_parser = parse::size, default_value = DEFAULT_COMPILE_MEMORY)]
    compile_memory: u64,
}

impl CompileLimitArgs {
    pub fn limits(&self) -> wasce_engine::CompileLimits {
        wasce_engine::CompileLimits { timeout: self.compile_timeout, memory: self.compile_memory, worker: None, confine: true }
    }
}

pub fn main() -> ExitCode {
    // The compile worker (`wasce_engine::confined`): this executable, run with a hidden first
    // argument, before any command-line parsing.
    if let Some(code) = wasce_engine::confined::worker_main_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let result = match cli.command {
        Command::Exec(args) => exec::exec(args, verbose),
        Command::Serve(args) => serve::serve(args, verbose),
        Command::Compile { output, fuel, limits, wasm, module } => {
            wasm.features_only("compile").and_then(|features| compile::compile(&module, output, fuel, features, &limits.limits()))
        }
        Command::Wast { isolation, wasm, files } => wasm
            .features_only("wast")
            .and_then(|features| compile::wast(&files, isolation.into(), &wasce_engine::Settings { features, ..Default::default() })),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e, verbose),
    }
}

/// Print `e` and turn it into the exit code.
fn report(e: &Error, verbose: bool) -> ExitCode {
    match e {
        Error::Trap(t) => {
            eprintln!("Error: {t}");
            if !t.backtrace.is_empty() {
                eprintln!("wasm backtrace:");
                for (i, f) in t.backtrace.iter().enumerate() {
                    eprintln!("  {i:>3}: {f}");
                }
            }
            ExitCode::from(134)
        }
        Error::Exit(code) => ExitCode::from(*code as u8),
        // The compile worker's sandbox stopped it: the status of any blocked system call.
        Error::CompileWorker(wasce_engine::CompileWorkerError::Blocked { .. }) => {
            eprintln!("Error: {e}");
            ExitCode::from(wasce_engine::sandbox::EXIT_BLOCKED)
        }
        other => {
            eprintln!("Error: {other}");
            if verbose {
                let mut source = std::error::Error::source(other);
                while let Some(s) = source {
                    eprintln!("  caused by: {s}");
                    source = s.source();
                }
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compile_limit_defaults_are_the_engine_defaults() {
        assert_eq!(super::parse::duration(super::DEFAULT_COMPILE_TIMEOUT), Ok(wasce_engine::confined::DEFAULT_TIMEOUT));
        assert_eq!(super::parse::size(super::DEFAULT_COMPILE_MEMORY), Ok(wasce_engine::confined::DEFAULT_MEMORY));
    }
}
