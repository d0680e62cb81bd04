//! The reference: the `wasmi` interpreter, bounded by its fuel.

use wasmi::errors::{ErrorKind, InstantiationError};
use wasmi::{
    Config, Engine, ExternType, Func, Instance, Module, Store, StoreLimits, StoreLimitsBuilder, TrapCode, Val,
};

use super::limits;
use super::observe::{hash_bytes, hash_nulls, Inconclusive, MemoryState, Outcome, Snapshot, Step, StepResult, TableState, TrapKind, Value};

/// The module's exports by kind, in the order wasmi lists them (by name): what each run calls
/// and observes.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub funcs: Vec<String>,
    pub globals: Vec<String>,
    pub memories: Vec<String>,
    pub tables: Vec<String>,
}

impl Plan {
    /// Instantiation, then a call of each exported function.
    pub fn steps(&self) -> impl Iterator<Item = Step> + '_ {
        std::iter::once(Step::Instantiate).chain(self.funcs.iter().map(|name| Step::Call(name.clone())))
    }
}

/// wasmi with exactly the WebAssembly 2.0 features and extended-const (wasm-smith generates nothing else, so a
/// module wasmi rejects is a generator or wasmi problem, and one wasce rejects a wasce bug).
fn engine() -> Engine {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .wasm_mutable_global(true)
        .wasm_sign_extension(true)
        .wasm_saturating_float_to_int(true)
        .wasm_multi_value(true)
        .wasm_bulk_memory(true)
        .wasm_reference_types(true)
        .wasm_simd(true)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(true)
        .wasm_tail_call(true)
        .wasm_extended_const(true)
        .wasm_memory64(true)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false);
    Engine::new(&config)
}

/// A compiled reference module and its plan.
pub struct Reference {
    engine: Engine,
    module: Module,
    pub plan: Plan,
}

impl Reference {
    /// Validate and translate `wasm`; `Err` carries wasmi's message.
    pub fn new(wasm: &[u8]) -> Result<Reference, String> {
        let engine = engine();
        let module = Module::new(&engine, wasm).map_err(|e| e.to_string())?;
        let mut plan = Plan::default();
        for export in module.exports() {
            let name = export.name().to_string();
            match export.ty() {
                ExternType::Func(_) => plan.funcs.push(name),
                ExternType::Global(_) => plan.globals.push(name),
                ExternType::Memory(_) => plan.memories.push(name),
                ExternType::Table(_) => plan.tables.push(name),
            }
        }
        Ok(Reference { engine, module, plan })
    }

    /// Run every step of the plan, each with `fuel` units of wasmi fuel, up to and including the
    /// first inconclusive one or a trapping instantiation.
    pub fn run(&self, fuel: u64) -> Vec<(Step, StepResult)> {
        let limits = StoreLimitsBuilder::new()
            .memory_size((limits::MAX_MEMORY_PAGES * limits::WASM_PAGE) as usize)
            .table_elements(limits::MAX_TABLE_ELEMENTS as usize)
            .build();
        let mut store = Store::new(&self.engine, limits);
        store.limiter(|limits: &mut StoreLimits| limits);
        let mut trace = Vec::new();
        set_fuel(&mut store, fuel);
        let instance = match Instance::new(&mut store, &self.module, &[]) {
            Ok(instance) => instance,
            Err(e) => {
                trace.push((Step::Instantiate, failure(&e).map(Snapshot::outcome_only)));
                return trace;
            }
        };
        trace.push((Step::Instantiate, Ok(self.snapshot(&store, instance, Outcome::Returned(Vec::new())))));
        for name in &self.plan.funcs {
            set_fuel(&mut store, fuel);
            let result = call(&mut store, instance, name).map(|outcome| self.snapshot(&store, instance, outcome));
            let stop = result.is_err();
            trace.push((Step::Call(name.clone()), result));
            if stop {
                break;
            }
        }
        trace
    }

    fn snapshot(&self, store: &Store<StoreLimits>, instance: Instance, outcome: Outcome) -> Snapshot {
        let globals = self
            .plan
            .globals
            .iter()
            .map(|name| {
                let global = instance.get_global(store, name).expect("planned export");
                (name.clone(), value(&global.get(store)))
            })
            .collect();
        let memories = self
            .plan
            .memories
            .iter()
            .map(|name| {
                let data = instance.get_memory(store, name).expect("planned export").data(store);
                MemoryState { name: name.clone(), bytes: data.len() as u64, hash: hash_bytes(data) }
            })
            .collect();
        let tables = self
            .plan
            .tables
            .iter()
            .map(|name| {
                let table = instance.get_table(store, name).expect("planned export");
                let size = table.size(store);
                let nulls = (0..size).map(|i| table.get(store, i).is_none_or(|v| is_null(&v)));
                TableState { name: name.clone(), size, null_hash: hash_nulls(nulls) }
            })
            .collect();
        Snapshot { outcome, globals, memories, tables }
    }
}

fn set_fuel(store: &mut Store<StoreLimits>, fuel: u64) {
    store.set_fuel(fuel).expect("the engine meters fuel");
}

/// Call export `name` with default arguments.
fn call(store: &mut Store<StoreLimits>, instance: Instance, name: &str) -> Result<Outcome, Inconclusive> {
    let func: Func = instance.get_func(&*store, name).expect("planned export");
    let ty = func.ty(&*store);
    let args: Vec<Val> = ty.params().iter().map(|t| Val::default(*t)).collect();
    let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default(*t)).collect();
    match func.call(&mut *store, &args, &mut results) {
        Ok(()) => Ok(Outcome::Returned(results.iter().map(value).collect())),
        Err(e) => failure(&e),
    }
}

/// A trap as an outcome, or why the step is inconclusive.
///
/// While instantiating, wasmi reports an element segment out of its table's bounds as an
/// instantiation error rather than a trap; the spec (and wasce) trap "out of bounds table
/// access". Its other errors without a trap code are allocations a limit refused.
fn failure(e: &wasmi::Error) -> Result<Outcome, Inconclusive> {
    if let ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit { .. }) = e.kind() {
        return Ok(Outcome::Trapped(TrapKind::TableOutOfBounds));
    }
    let Some(code) = e.as_trap_code() else { return Err(Inconclusive::Limit) };
    Ok(Outcome::Trapped(match code {
        TrapCode::UnreachableCodeReached => TrapKind::Unreachable,
        TrapCode::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        TrapCode::TableOutOfBounds => TrapKind::TableOutOfBounds,
        TrapCode::IndirectCallToNull => TrapKind::IndirectCallToNull,
        TrapCode::IntegerDivisionByZero => TrapKind::IntegerDivisionByZero,
        TrapCode::IntegerOverflow => TrapKind::IntegerOverflow,
        TrapCode::BadConversionToInteger => TrapKind::BadConversionToInteger,
        TrapCode::BadSignature => TrapKind::BadSignature,
        TrapCode::StackOverflow => return Err(Inconclusive::StackOverflow),
        TrapCode::OutOfFuel => return Err(Inconclusive::OutOfFuel),
        TrapCode::GrowthOperationLimited => return Err(Inconclusive::Limit),
    }))
}

fn is_null(v: &Val) -> bool {
    matches!(value(v), Value::FuncRef { null: true } | Value::ExternRef { null: true })
}

fn value(v: &Val) -> Value {
    match v {
        Val::I32(v) => Value::I32(*v),
        Val::I64(v) => Value::I64(*v),
        Val::F32(v) => Value::F32(v.to_bits()),
        Val::F64(v) => Value::F64(v.to_bits()),
        Val::V128(v) => Value::V128(v.as_u128()),
        Val::FuncRef(r) => Value::FuncRef { null: r.is_null() },
        Val::ExternRef(r) => Value::ExternRef { null: r.is_null() },
    }
}
