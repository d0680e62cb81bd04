//! Reading modules for the commands: WebAssembly binary or text, or an AOT artifact (recognised
//! by its contents), through the compile cache, with progress on long compiles. Binary and text
//! are parsed and compiled in the confined compile worker (`wasce_engine::compile_confined`),
//! whether or not the cache is used; the cache keys a text module by its text.

use super::progress::Progress;
use std::path::Path;
use std::time::{Duration, Instant};
use wasce_compiler::CompileError;
use wasce_engine::cache::{Cache, Outcome};
use wasce_engine::{CompileLimits, CompileWorkerError, Error, LoadedModule, Module, Settings};

/// How a module was obtained, for `--stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Compiled (the cache is off).
    Compiled,
    /// Loaded from an artifact named on the command line.
    Artifact,
    /// Loaded from the compile cache.
    CacheHit,
    /// Compiled and stored in the cache.
    CacheMiss,
}

impl How {
    pub fn describe(self) -> &'static str {
        match self {
            How::Compiled => "compile",
            How::Artifact => "load artifact",
            How::CacheHit => "load (cache hit)",
            How::CacheMiss => "compile (cache miss)",
        }
    }
}

pub struct Loaded {
    pub module: Module,
    pub how: How,
    pub time: Duration,
}

/// Loads the modules of one command with the same settings and cache.
pub struct Loader {
    settings: Settings,
    limits: CompileLimits,
    cache: Option<Cache>,
    verbose: bool,
}

impl Loader {
    pub fn new(settings: Settings, limits: CompileLimits, use_cache: bool, verbose: bool) -> Loader {
        let cache = if use_cache && Cache::default_dir().is_some() {
            match Cache::open_default() {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("warning: compile cache disabled: {e}");
                    None
                }
            }
        } else {
            None
        };
        Loader { settings, limits, cache, verbose }
    }

    pub fn load(&self, path: &Path) -> Result<Loaded, Error> {
        let start = Instant::now();
        let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
        if wasce_engine::is_artifact(&bytes) {
            check_artifact_settings(path, &bytes, &self.settings)?;
            drop(bytes);
            let module = wasce_engine::load_artifact(path)?;
            return Ok(Loaded { module, how: How::Artifact, time: start.elapsed() });
        }
        let _progress = Progress::start(display_name(path));
        let compile = |input: &[u8], settings: &Settings| wasce_engine::compile_confined(input, settings, &self.limits);
        let (module, how) = match &self.cache {
            Some(cache) => {
                let (module, outcome) = cache.load_or_compile(&bytes, &self.settings, compile).map_err(|e| in_file(path, e, self.verbose))?;
                if self.verbose {
                    match &outcome {
                        Outcome::Replaced { reason, .. } => eprintln!("note: replaced a bad cache entry for {}: {reason}", path.display()),
                        Outcome::Hit | Outcome::Miss { .. } => {}
                    }
                    if let Outcome::Miss { store_error: Some(e) } | Outcome::Replaced { store_error: Some(e), .. } = &outcome {
                        eprintln!("note: could not store {} in the compile cache: {e}", path.display());
                    }
                }
                (module, if outcome.compiled() { How::CacheMiss } else { How::CacheHit })
            }
            None => {
                let compiled = compile(&bytes, &self.settings).map_err(|e| in_file(path, e, self.verbose))?;
                (LoadedModule::new(compiled)?, How::Compiled)
            }
        };
        Ok(Loaded { module, how, time: start.elapsed() })
    }
}

/// `expected ...` + ` --> <anon>:1:44` + a source excerpt, as one line:
/// `expected ... (at line 1, column 44)`.
fn one_line_wat_error(full: &str) -> String {
    let mut lines = full.lines();
    let message = lines.next().unwrap_or("").trim();
    let at = lines.find_map(|l| l.trim().strip_prefix("--> ")).and_then(|at| {
        let mut parts = at.rsplitn(3, ':');
        let (col, line) = (parts.next()?, parts.next()?);
        Some(format!("line {line}, column {col}"))
    });
    match at {
        Some(at) => format!("{message} (at {at})"),
        None => message.to_string(),
    }
}

/// Name the file in a compile error (its message carries the byte offset, or the line and
/// column of a text error: on one line, or with the source excerpt when `verbose`).
pub fn in_file(path: &Path, e: Error, verbose: bool) -> Error {
    match e {
        Error::Compile(CompileError::Invalid(m)) => {
            Error::Compile(CompileError::Invalid(format!("{}: invalid module: {m}", path.display())))
        }
        Error::CompileWorker(CompileWorkerError::Text { detail }) => {
            let text = if verbose {
                detail.replacen("--> <anon>:", &format!("--> {}:", path.display()), 1)
            } else {
                one_line_wat_error(&detail)
            };
            Error::Usage(format!("{}: not a WebAssembly binary, and not valid text: {text}", path.display()))
        }
        other => other,
    }
}

/// An artifact runs only under the settings it was compiled for: fuel metering if `--fuel`
/// asks for it, and no feature that this run turned off (`-W NAME=n`).
fn check_artifact_settings(path: &Path, bytes: &[u8], settings: &Settings) -> Result<(), Error> {
    let header = wasce_compiler::artifact::header(bytes, wasce_engine::key::user_key()?)
        .map_err(|e| Error::Compile(CompileError::Invalid(format!("{}: {e}", path.display()))))?;
    if !settings.features.contains(header.features) {
        let off: Vec<_> = header.features.names().into_iter().filter(|n| !settings.features.names().contains(n)).collect();
        return Err(Error::Usage(format!(
            "{} was compiled with {} enabled, which this run turns off; recompile it with the same -W flags",
            path.display(),
            off.join(", ")
        )));
    }
    if settings.consume_fuel && !header.consume_fuel {
        return Err(Error::Usage(format!(
            "--fuel: {} was compiled without fuel metering; recompile it with `wasce compile --fuel`",
            path.display()
        )));
    }
    Ok(())
}

pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
