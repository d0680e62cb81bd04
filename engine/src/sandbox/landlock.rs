//! The Landlock domain: after confinement the filesystem is the preopened directories and
//! nothing else. Every filesystem right Landlock knows (ABI 7, and what the running kernel
//! supports of it) is handled, so everything not granted below is denied; TCP bind/connect are
//! handled with no rule (denied; seccomp has no `socket` anyway) and the domain is scoped
//! (no signals to, no abstract-socket connections out of, other processes).
//!
//! Beneath each preopen the rights are what WASI path and fd calls can do there: read and write
//! files, list directories, make and remove directories, files and symlinks, rename and link
//! (`Refer`), truncate. Not granted: executing files, making devices, sockets and FIFOs, device
//! ioctls. Already-open fds (stdio, the preopens themselves, `--tcplisten` sockets) keep working.
//!
//! Unsupported kernel: Landlock ABI 1 is a hard requirement (creating the ruleset fails and the
//! run stops, naming `--no-sandbox`); newer rights are best effort (on an older kernel a right
//! Landlock cannot handle is not restricted by it, e.g. truncation before ABI 3).

use super::SandboxError;
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::path::PathBuf;

/// The Landlock ABI these rules were written and tested against.
const ABI_TESTED: ABI = ABI::V7;

/// What WASI may do beneath a preopen.
fn beneath_preopen() -> BitFlags<AccessFs> {
    AccessFs::ReadFile
        | AccessFs::WriteFile
        | AccessFs::ReadDir
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::MakeSym
        | AccessFs::Refer
        | AccessFs::Truncate
}

fn unsupported(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Unsupported { what: "Landlock", detail: e.to_string() }
}

/// The ruleset for these preopened directories (not yet enforced on any thread).
pub fn ruleset(dirs: &[PathBuf]) -> Result<RulesetCreated, SandboxError> {
    let err = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(unsupported)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_TESTED))
        .map_err(err)?
        .handle_access(AccessNet::from_all(ABI_TESTED))
        .map_err(err)?
        .scope(Scope::from_all(ABI_TESTED))
        .map_err(err)?
        .create()
        .map_err(unsupported)?;
    for dir in dirs {
        let fd = PathFd::new(dir).map_err(|e| SandboxError::Dir { path: dir.clone(), detail: e.to_string() })?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, beneath_preopen())).map_err(err)?;
    }
    Ok(ruleset)
}

/// Enforce `ruleset` on the calling thread (it also sets `no_new_privs`).
pub fn restrict_current(ruleset: RulesetCreated) -> Result<(), SandboxError> {
    let status = ruleset.restrict_self().map_err(|e| SandboxError::Landlock(e.to_string()))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(unsupported("the kernel did not enforce the ruleset"));
    }
    Ok(())
}
