//! `wasce compile` (in the confined compile worker, like `wasce exec`) and `wasce wast` (spec
//! scripts, trusted test input: compiled in this process).

use super::module::{display_name, in_file};
use super::progress::Progress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wasce_engine::{Error, Settings};

/// `wasce compile`: write the artifact next to the module, or to `output`.
pub fn compile(path: &Path, output: Option<PathBuf>, fuel: bool, features: wasce_engine::Features, limits: &wasce_engine::CompileLimits) -> Result<ExitCode, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    if wasce_engine::is_artifact(&bytes) {
        return Err(Error::Usage(format!("{} is already compiled (a wasce artifact); run it with `wasce exec`", path.display())));
    }
    let out = output.unwrap_or_else(|| path.with_extension("cwasm"));
    let same_file = |a: &Path, b: &Path| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same_file(&out, path) {
        return Err(Error::Usage(format!("refusing to overwrite the module {} with its artifact; name another with -o", path.display())));
    }
    let settings = Settings { consume_fuel: fuel, features, ..Settings::default() };
    let artifact = {
        let _progress = Progress::start(display_name(path));
        let compiled = wasce_engine::compile_confined(&bytes, &settings, limits).map_err(|e| in_file(path, e, false))?;
        wasce_engine::artifact_of(&compiled, &settings)?
    };
    // Something that is not a regular file (`-o /dev/null`, a pipe) is written in place: renaming
    // over it would replace a device node with a file.
    if std::fs::metadata(&out).is_ok_and(|m| !m.is_file()) {
        return std::fs::write(&out, &artifact)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| Error::Usage(format!("cannot write {}: {e}", out.display())));
    }
    // Write a temporary file and rename it over `out`: nobody sees a half-written file.
    let name = out.file_name().map_or("artifact".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, &artifact).and_then(|()| std::fs::rename(&tmp, &out));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Usage(format!("cannot write {}: {e}", out.display())));
    }
    Ok(ExitCode::SUCCESS)
}

/// `wasce wast`: run spec scripts, print failures and a summary.
pub fn wast(files: &[PathBuf], isolation: wasce_engine::Isolation, settings: &Settings) -> Result<ExitCode, Error> {
    let (mut passed, mut failed) = (0u32, 0u32);
    for path in files {
        match wasce_engine::wast::run_file_with(path, isolation, settings.clone()) {
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
