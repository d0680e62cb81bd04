//! Differential execution: a module runs in the `wasmi` interpreter (the reference) and in wasce
//! (the subject, in every isolation mode and bounds-check strategy), and everything observable
//! must agree after every step.
//!
//! The protocol, after wasmtime's differential fuzzing:
//!
//! * modules come from wasm-smith (`generate`), restricted to WebAssembly 2.0 with SIMD, with no
//!   imports, every item exported and every NaN canonicalised;
//! * a run is a sequence of steps on one instance (`observe::Step`): instantiation, then a call
//!   of each exported function with default (zero/null) arguments, in the order wasmi lists the exports (by name);
//! * after each step the outcome (results, or the trap's class), every exported global, the size
//!   and a hash of every exported memory and the size and null pattern of every exported table
//!   are compared (`observe::Snapshot`);
//! * the reference runs first, each step with `Options::fuel` units of wasmi fuel. A step where
//!   wasmi runs out of fuel, either engine overflows its stack (their stack depths differ) or
//!   either refuses a resource is inconclusive: it and every later step are skipped. wasce runs
//!   without fuel, since the reference showed every compared step terminates; in the VM a
//!   generous timeout still bounds it (the VM runs first, so a wasce hang is reported before
//!   process mode would hang on it);
//! * both engines enforce the same memory and table limits (`limits`).

pub mod generate;
pub mod observe;
pub mod reference;
pub mod subject;

use std::fmt;

use wasce_engine::store::Isolation;
use wasce_engine::{BoundsChecks, Settings};

use observe::{Inconclusive, Snapshot, Step, StepResult};
use reference::Reference;

/// The resource limits both engines enforce, and the bounds of what generated modules declare.
pub mod limits {
    pub const WASM_PAGE: u64 = 65_536;
    /// Pages a memory may grow to, in both engines.
    pub const MAX_MEMORY_PAGES: u64 = 64;
    /// Table elements a table may grow to, in both engines.
    pub const MAX_TABLE_ELEMENTS: u64 = 10_000;
    /// Initial and maximum sizes generated modules declare stay below the limits, so only a
    /// `grow` can meet a limit (and both engines then return -1).
    pub const MAX_DECLARED_MEMORY_PAGES: u64 = 16;
    pub const MAX_DECLARED_TABLE_ELEMENTS: u64 = 1_000;
}

/// How to run a case.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// wasmi fuel per step.
    pub fuel: u64,
    /// Whether to run wasce in KVM isolation too (needs a usable `/dev/kvm`).
    pub kvm: bool,
}

/// One configuration of wasce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject {
    pub isolation: Isolation,
    pub bounds_checks: BoundsChecks,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasce ({:?}, {:?} bounds checks)", self.isolation, self.bounds_checks)
    }
}

impl Options {
    /// The wasce configurations a case runs in: the VM first (see the module comment).
    pub fn subjects(&self) -> Vec<Subject> {
        let mut subjects = Vec::new();
        if self.kvm {
            subjects.push(Subject { isolation: Isolation::Kvm, bounds_checks: BoundsChecks::GuardPages });
        }
        subjects.push(Subject { isolation: Isolation::Process, bounds_checks: BoundsChecks::GuardPages });
        subjects.push(Subject { isolation: Isolation::Process, bounds_checks: BoundsChecks::Explicit });
        subjects
    }
}

/// Whether KVM isolation works on this machine.
pub fn kvm_available() -> bool {
    kvm_unusable().is_none()
}

/// Why KVM isolation does not work on this machine, if it does not.
pub fn kvm_unusable() -> Option<wasce_engine::Error> {
    wasce_engine::Store::new(wasce_engine::StoreConfig { isolation: Isolation::Kvm, ..Default::default() }).err()
}

/// Fail loudly (a test's KVM half never passes silently) unless KVM isolation works.
pub fn kvm_required() {
    if let Some(e) = kvm_unusable() {
        panic!("KVM isolation is unusable ({e}); this test compares it too and never passes without it");
    }
}

/// What a conclusive (or partly conclusive) case showed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Steps (instantiations and calls) run by the reference and compared with every subject.
    pub compared_steps: usize,
    /// Why the run stopped before its last step, if it did.
    pub inconclusive: Option<Inconclusive>,
}

/// A disagreement: a bug in wasce until proven otherwise.
#[derive(Debug)]
pub enum Divergence {
    /// The reference rejected a generated module (a generator or wasmi problem: reported so
    /// that it is looked at, never silently skipped).
    ReferenceRejected(String),
    /// wasce rejected a module the reference accepted.
    SubjectRejected { subject: Subject, message: String },
    /// wasce failed a step in a way that is neither a trap nor inconclusive.
    SubjectFailed { subject: Subject, error: subject::SubjectError },
    /// A step's snapshot differs.
    Differs { subject: Subject, step: Step, expected: Box<Snapshot>, actual: Box<Snapshot> },
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Divergence::ReferenceRejected(message) => write!(f, "wasmi rejected the module: {message}"),
            Divergence::SubjectRejected { subject, message } => write!(f, "{subject} rejected the module: {message}"),
            Divergence::SubjectFailed { subject, error } => write!(f, "{subject} failed at {error}"),
            Divergence::Differs { subject, step, expected, actual } => {
                write!(f, "{subject} differs from wasmi at {step}:{}", differences(expected, actual))
            }
        }
    }
}

impl std::error::Error for Divergence {}

/// The parts of two snapshots that differ, one per line.
fn differences(expected: &Snapshot, actual: &Snapshot) -> String {
    let mut out = String::new();
    if expected.outcome != actual.outcome {
        out += &format!("\n  outcome: wasmi {:?}, wasce {:?}", expected.outcome, actual.outcome);
    }
    if expected.globals.len() != actual.globals.len() || expected.memories.len() != actual.memories.len() {
        out += "\n  different exports (one side has no instance)";
    }
    for (e, a) in expected.globals.iter().zip(&actual.globals).filter(|(e, a)| e != a) {
        out += &format!("\n  global {:?}: wasmi {:?}, wasce {:?}", e.0, e.1, a.1);
    }
    for (e, a) in expected.memories.iter().zip(&actual.memories).filter(|(e, a)| e != a) {
        out += &format!("\n  memory {:?}: wasmi {} bytes (hash {:#x}), wasce {} bytes (hash {:#x})", e.name, e.bytes, e.hash, a.bytes, a.hash);
    }
    for (e, a) in expected.tables.iter().zip(&actual.tables).filter(|(e, a)| e != a) {
        out += &format!("\n  table {:?}: wasmi {} elements, wasce {} (or their null patterns differ)", e.name, e.size, a.size);
    }
    out
}

/// Run `wasm` in the reference and in every subject and compare them step by step.
pub fn check(wasm: &[u8], options: &Options) -> Result<Report, Divergence> {
    let reference = Reference::new(wasm).map_err(Divergence::ReferenceRejected)?;
    let expected = reference.run(options.fuel);
    // The subjects run the steps the reference finished, up to its first inconclusive one.
    let steps = expected.iter().take_while(|(_, r)| r.is_ok()).count();
    let mut report = Report { compared_steps: steps, inconclusive: expected.iter().find_map(|(_, r)| r.as_ref().err().copied()) };
    for subject in options.subjects() {
        let settings = Settings { bounds_checks: subject.bounds_checks, parallel: false, consume_fuel: false, features: wasce_engine::Features::all() };
        let module = wasce_engine::load(wasm, &settings)
            .map_err(|e| Divergence::SubjectRejected { subject, message: e.to_string() })?;
        let actual = subject::run(&module, subject.isolation, &reference.plan, steps)
            .map_err(|error| Divergence::SubjectFailed { subject, error })?;
        let compared = compare(subject, &expected, &actual)?;
        if compared.compared_steps < report.compared_steps {
            report = compared;
        }
    }
    Ok(report)
}

/// Compare two traces up to the first inconclusive step on either side.
fn compare(subject: Subject, expected: &[(Step, StepResult)], actual: &[(Step, StepResult)]) -> Result<Report, Divergence> {
    let mut report = Report::default();
    for ((step, e), (_, a)) in expected.iter().zip(actual) {
        match (e, a) {
            (Err(why), _) | (_, Err(why)) => {
                report.inconclusive = Some(*why);
                return Ok(report);
            }
            (Ok(e), Ok(a)) if e != a => {
                return Err(Divergence::Differs {
                    subject,
                    step: step.clone(),
                    expected: Box::new(e.clone()),
                    actual: Box::new(a.clone()),
                })
            }
            (Ok(_), Ok(_)) => report.compared_steps += 1,
        }
    }
    Ok(report)
}
