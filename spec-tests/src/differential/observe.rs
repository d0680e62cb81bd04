//! What an engine shows after each step of a run, in a form both engines can produce and that
//! compares with `==`.

use std::fmt;

/// One step of a run: instantiation (which runs the start function), then one call per exported
/// function, in the module's export order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Instantiate,
    Call(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Instantiate => f.write_str("instantiate"),
            Step::Call(name) => write!(f, "call {name:?}"),
        }
    }
}

/// A WebAssembly value as compared between engines.
///
/// Floats and vectors compare by their bits: the generator canonicalises every NaN an
/// arithmetic operator produces, and everything else (constants, loads, reinterpretations,
/// `abs`/`neg`/`copysign`) is bit-exact by the spec, so any difference in bits is a bug.
/// References compare by nullness only: a function reference's identity is an address in one
/// engine and a handle in the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    FuncRef { null: bool },
    ExternRef { null: bool },
}

/// Why execution stopped, in the classes both engines distinguish.
///
/// wasce tells "undefined element" (`call_indirect` past the table) from "out of bounds table
/// access" (`table.get`/`set`/`fill`/`copy`/`init`); wasmi has one code for both, so they are one
/// class here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    Unreachable,
    MemoryOutOfBounds,
    TableOutOfBounds,
    IndirectCallToNull,
    BadSignature,
    IntegerOverflow,
    IntegerDivisionByZero,
    BadConversionToInteger,
    NullReference,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Returned(Vec<Value>),
    Trapped(TrapKind),
}

/// An exported memory: its size and a hash of its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryState {
    pub name: String,
    pub bytes: u64,
    pub hash: u64,
}

/// An exported table: its size and a hash of which elements are null.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableState {
    pub name: String,
    pub size: u64,
    pub null_hash: u64,
}

/// Everything observable after one step. After a trapping instantiation there is no instance,
/// so the export lists are empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub outcome: Outcome,
    pub globals: Vec<(String, Value)>,
    pub memories: Vec<MemoryState>,
    pub tables: Vec<TableState>,
}

impl Snapshot {
    /// The snapshot of a failed instantiation: only the outcome.
    pub fn outcome_only(outcome: Outcome) -> Snapshot {
        Snapshot { outcome, globals: Vec::new(), memories: Vec::new(), tables: Vec::new() }
    }
}

/// Why a step says nothing about correctness; the run stops there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconclusive {
    /// wasmi used up its fuel: the call may not terminate.
    OutOfFuel,
    /// Either engine exhausted its stack: the engines' frame sizes and limits differ.
    StackOverflow,
    /// Either engine refused a resource (a memory or table above the shared limits).
    Limit,
}

impl fmt::Display for Inconclusive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inconclusive::OutOfFuel => "out of fuel",
            Inconclusive::StackOverflow => "stack overflow",
            Inconclusive::Limit => "resource limit",
        })
    }
}

/// What one step produced.
pub type StepResult = Result<Snapshot, Inconclusive>;

/// FNV-1a over 8-byte words (and the tail bytewise): cheap, deterministic, and only ever
/// compared with itself.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("chunks_exact yields 8 bytes"));
        hash = (hash ^ w).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(PRIME);
    }
    hash ^ bytes.len() as u64
}

/// The hash of a table's null pattern: one bit per element.
pub fn hash_nulls(nulls: impl Iterator<Item = bool>) -> u64 {
    let bits: Vec<u8> = nulls.map(u8::from).collect();
    hash_bytes(&bits)
}
