//! The `wasce` command.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wasce_engine::wasi::{self, Preopen, WasiConfig};
use wasce_engine::{Error, Extern, Linker, Settings, Store, StoreConfig, Val};

#[derive(Parser)]
#[command(name = "wasce", version, about = "A secure WebAssembly runtime", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the whole error chain.
    #[arg(long, global = true)]
    verbose: bool,
}

const EXAMPLES: &str = "Examples:
  wasce exec --invoke fib examples/fib.wat 20
  wasce compile examples/fib.wat && wasce exec --invoke fib examples/fib.cwasm 20
  wasce wast ../shared/testsuite/i32.wast";

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

/// Parse `200ms`, `2s`, `1.5s`, `1m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = text.find(|c: char| c.is_ascii_alphabetic()).map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (try 200ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{text}` is not a positive duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebAssembly module (.wasm, .wat, or an artifact from `wasce compile`).
    Exec {
        /// Call this export with ARGS (printed results) instead of `_start`.
        #[arg(long, value_name = "FUNC")]
        invoke: Option<String>,
        /// Where compiled code runs.
        #[arg(long, value_enum, default_value = "kvm")]
        isolation: Isolation,
        /// Stop the program after this long (e.g. 200ms, 2s); needs `--isolation kvm`.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
        /// How host (WASI) calls leave the VM: `ring` (exit-less, served by a host thread),
        /// `exit` (a VM exit each), `auto` (ring when there is more than one CPU).
        #[arg(long, value_enum, default_value = "auto")]
        hostcall: Hostcall,
        /// Give the program a host directory: `HOST` (seen as HOST) or `HOST::GUEST`.
        #[arg(long = "dir", value_name = "HOST[::GUEST]")]
        dirs: Vec<String>,
        /// Set an environment variable for the program; a bare NAME inherits wasce's value.
        #[arg(long = "env", value_name = "NAME[=VAL]")]
        envs: Vec<String>,
        /// The program's argv[0] (default: the module's file name).
        #[arg(long)]
        argv0: Option<String>,
        /// The module.
        module: PathBuf,
        /// Arguments for the invoked function.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compile a module ahead of time into an artifact that `wasce exec` runs without compiling.
    Compile {
        /// Where to write the artifact (default: MODULE with the extension `.cwasm`).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// The module (.wasm or .wat).
        module: PathBuf,
    },
    /// Run WebAssembly spec scripts; ends with `N passed, M failed`.
    Wast {
        #[arg(long, value_enum, default_value = "kvm")]
        isolation: Isolation,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Exec { invoke, isolation, timeout, hostcall, dirs, envs, argv0, module, args } => {
            let config = StoreConfig { isolation: isolation.into(), timeout, hostcall: hostcall.into(), ..StoreConfig::default() };
            wasi_config(&module, &dirs, &envs, argv0, &args, invoke.is_some())
                .and_then(|wasi| exec(&module, config, wasi, invoke.as_deref(), &args))
        }
        Command::Compile { output, module } => compile(&module, output),
        Command::Wast { isolation, files } => wast(&files, isolation.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e, cli.verbose),
    }
}

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

fn read_module(path: &PathBuf) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    if wasce_engine::is_artifact(&bytes) {
        return Err(Error::Usage(format!("{} is already compiled (a wasce artifact); run it with `wasce exec`", path.display())));
    }
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| Error::Usage(format!("{}: not a WebAssembly binary, and not valid text: {e}", path.display())))
}

fn parse_arg(text: &str, ty: wasce_compiler::module::WasmType) -> Result<Val, Error> {
    use wasce_compiler::module::WasmType as T;
    let bad = || Error::Usage(format!("cannot parse `{text}` as {ty}"));
    Ok(match ty {
        T::I32 => Val::I32(text.parse::<i32>().or_else(|_| text.parse::<u32>().map(|v| v as i32)).map_err(|_| bad())?),
        T::I64 => Val::I64(text.parse::<i64>().or_else(|_| text.parse::<u64>().map(|v| v as i64)).map_err(|_| bad())?),
        T::F32 => Val::F32(text.parse::<f32>().map_err(|_| bad())?.to_bits()),
        T::F64 => Val::F64(text.parse::<f64>().map_err(|_| bad())?.to_bits()),
        _ => return Err(Error::Usage(format!("cannot pass a {ty} from the command line"))),
    })
}

fn wasi_config(module: &std::path::Path, dirs: &[String], envs: &[String], argv0: Option<String>, args: &[String], invoke: bool) -> Result<WasiConfig, Error> {
    let mut preopens = Vec::new();
    for d in dirs {
        let (host, guest) = match d.split_once("::") {
            Some((h, g)) => (h, g),
            None => (d.as_str(), d.as_str()),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(Error::Usage(format!("--dir `{d}`: expected HOST or HOST::GUEST")));
        }
        if !std::path::Path::new(host).is_dir() {
            return Err(Error::Usage(format!("--dir `{d}`: {host} is not a directory")));
        }
        preopens.push(Preopen { host: host.into(), guest: guest.into() });
    }
    let mut env = Vec::new();
    for e in envs {
        match e.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => match std::env::var(e) {
                Ok(v) => env.push((e.clone(), v)),
                Err(_) => {}
            },
        }
    }
    let name = argv0.unwrap_or_else(|| module.file_name().map_or("module".into(), |n| n.to_string_lossy().into_owned()));
    let mut argv = vec![name];
    if !invoke {
        argv.extend(args.iter().cloned());
    }
    Ok(WasiConfig { args: argv, env, preopens, ..WasiConfig::default() })
}

/// Whether the file at `path` is an AOT artifact (by its magic, whatever its name).
fn is_artifact_file(path: &PathBuf) -> Result<bool, Error> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(wasce_engine::is_artifact(&head))
}

/// `wasce compile`: write the artifact next to the module, or to `output`.
fn compile(path: &PathBuf, output: Option<PathBuf>) -> Result<ExitCode, Error> {
    let bytes = read_module(path)?;
    let out = output.unwrap_or_else(|| path.with_extension("cwasm"));
    let same_file = |a: &PathBuf, b: &PathBuf| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same_file(&out, path) {
        return Err(Error::Usage(format!("refusing to overwrite the module {} with its artifact; name another with -o", path.display())));
    }
    let artifact = wasce_engine::compile_to_artifact(&bytes, &Settings::default())?;
    // Write a temporary file and rename it over `out`: a process that has the old artifact
    // mapped keeps its pages, and nobody sees a half-written file.
    let name = out.file_name().map_or("artifact".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, &artifact).and_then(|()| std::fs::rename(&tmp, &out));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Usage(format!("cannot write {}: {e}", out.display())));
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(path: &PathBuf, config: StoreConfig, wasi: WasiConfig, invoke: Option<&str>, args: &[String]) -> Result<ExitCode, Error> {
    let module = if is_artifact_file(path)? {
        wasce_engine::load_artifact(path)?
    } else {
        wasce_engine::load(&read_module(path)?, &Settings::default())?
    };
    let mut store = Store::new(config)?;
    let mut linker = Linker::new();
    wasi::add_to_linker(&mut store, &mut linker, wasi)?;
    if invoke.is_none() {
        let code = wasi::run_command(&mut store, &linker, &module)?;
        return Ok(ExitCode::from(code as u8));
    }
    let instance = linker.instantiate(&mut store, &module)?;
    let name = invoke.unwrap_or("_start");
    let Some(Extern::Func(func)) = store.export(instance, name) else {
        return Err(Error::Usage(match invoke {
            Some(f) => format!("the module exports no function `{f}`"),
            None => "the module exports no `_start`; name a function with --invoke".to_string(),
        }));
    };
    let ty = store.func_type(func).clone();
    if args.len() != ty.params.len() {
        return Err(Error::Usage(format!("`{name}` takes {} arguments {ty}, {} given", ty.params.len(), args.len())));
    }
    let vals = args.iter().zip(&ty.params).map(|(a, t)| parse_arg(a, *t)).collect::<Result<Vec<_>, _>>()?;
    let results = store.call(func, &vals)?;
    for r in results {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

fn wast(files: &[PathBuf], isolation: wasce_engine::Isolation) -> Result<ExitCode, Error> {
    let (mut passed, mut failed) = (0u32, 0u32);
    for path in files {
        match wasce_engine::wast::run_file(path, isolation) {
            Ok(o) => {
                for (line, msg) in &o.failures {
                    println!("{}:{line}: {msg}", path.display());
                }
                passed += o.passed;
                failed += o.failed;
            }
            Err(e) => {
                println!("{e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
