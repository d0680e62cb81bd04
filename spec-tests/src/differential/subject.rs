//! The subject: wasce, in one isolation mode, running the steps the reference completed.

use std::time::Duration;

use wasce_engine::store::Isolation;
use wasce_engine::{Error, Extern, InstanceId, Module, Store, StoreConfig, Trap, Val};

use super::limits;
use super::observe::{hash_bytes, hash_nulls, Inconclusive, MemoryState, Outcome, Snapshot, Step, StepResult, TableState, TrapKind, Value};
use super::reference::Plan;

/// Wall-clock limit of each call in the VM. The reference finished the same call within its
/// fuel, so only a wasce bug (or a badly stalled host) gets near it.
const KVM_TIMEOUT: Duration = Duration::from_secs(20);

/// A step wasce could not complete for a reason that is neither a trap nor inconclusive.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct SubjectError {
    pub step: Step,
    pub message: String,
}

/// Run the first `steps` steps of `plan` in a fresh store, stopping early at the first
/// inconclusive step or a trapping instantiation (as the reference does).
pub fn run(module: &Module, isolation: Isolation, plan: &Plan, steps: usize) -> Result<Vec<(Step, StepResult)>, SubjectError> {
    let config = StoreConfig {
        isolation,
        max_memory_pages: limits::MAX_MEMORY_PAGES,
        max_table_elements: limits::MAX_TABLE_ELEMENTS,
        timeout: (isolation == Isolation::Kvm).then_some(KVM_TIMEOUT),
        ..StoreConfig::default()
    };
    if steps == 0 {
        return Ok(Vec::new());
    }
    let mut store =
        Store::new(config).map_err(|e| SubjectError { step: Step::Instantiate, message: format!("creating the store: {e}") })?;
    let mut trace = Vec::new();
    let instance = match store.instantiate(module, &[]) {
        Ok(instance) => instance,
        Err(e) => {
            let result = failure(&Step::Instantiate, e)?.map(Snapshot::outcome_only);
            trace.push((Step::Instantiate, result));
            return Ok(trace);
        }
    };
    trace.push((Step::Instantiate, Ok(snapshot(&store, instance, plan, Outcome::Returned(Vec::new())))));
    for step in plan.steps().skip(1).take(steps.saturating_sub(1)) {
        let Step::Call(name) = &step else { unreachable!("only the first step instantiates") };
        let result = match call(&mut store, instance, name) {
            Ok(values) => Ok(Outcome::Returned(values)),
            Err(e) => failure(&step, e)?,
        }
        .map(|outcome| snapshot(&store, instance, plan, outcome));
        let stop = result.is_err();
        trace.push((step, result));
        if stop {
            break;
        }
    }
    Ok(trace)
}

/// Call export `name` with default arguments.
fn call(store: &mut Store, instance: InstanceId, name: &str) -> Result<Vec<Value>, Error> {
    let Some(Extern::Func(func)) = store.export(instance, name) else {
        return Err(Error::Usage(format!("export {name:?} is not a function")));
    };
    let args: Vec<Val> = store.func_type(func).params.iter().map(|t| Val::null(*t)).collect();
    Ok(store.call(func, &args)?.iter().map(value).collect())
}

/// A trap as an outcome, why the step is inconclusive, or (outer `Err`) a failure.
fn failure(step: &Step, e: Error) -> Result<Result<Outcome, Inconclusive>, SubjectError> {
    let fail = |message: String| SubjectError { step: step.clone(), message };
    let trap = match e {
        Error::Trap(t) => t.trap,
        Error::Limit(_) => return Ok(Err(Inconclusive::Limit)),
        other => return Err(fail(format!("unexpected error: {other}"))),
    };
    Ok(Ok(Outcome::Trapped(match trap {
        Trap::UnreachableCodeReached => TrapKind::Unreachable,
        Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        Trap::TableOutOfBounds | Trap::TableAccessOutOfBounds => TrapKind::TableOutOfBounds,
        Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
        Trap::BadSignature => TrapKind::BadSignature,
        Trap::IntegerOverflow => TrapKind::IntegerOverflow,
        Trap::IntegerDivisionByZero => TrapKind::IntegerDivisionByZero,
        Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
        Trap::NullReference | Trap::NullFunctionReference | Trap::NullExnReference => TrapKind::NullReference,
        Trap::StackOverflow => return Ok(Err(Inconclusive::StackOverflow)),
        Trap::Interrupt => {
            return Err(fail(format!("timed out after {KVM_TIMEOUT:?}, where wasmi finished within its fuel")))
        }
        // Traps of features the reference does not generate, fuel (wasmi meters its own), host errors.
        _ => {
            return Err(fail(format!("unexpected trap: {}", trap.message())))
        }
    })))
}

fn snapshot(store: &Store, instance: InstanceId, plan: &Plan, outcome: Outcome) -> Snapshot {
    let export = |name: &str| store.export(instance, name).expect("the reference found this export");
    let globals = plan
        .globals
        .iter()
        .map(|name| {
            let Extern::Global(g) = export(name) else { panic!("export {name:?} is not a global") };
            (name.clone(), value(&store.global_get(g)))
        })
        .collect();
    let memories = plan
        .memories
        .iter()
        .map(|name| {
            let Extern::Memory(m) = export(name) else { panic!("export {name:?} is not a memory") };
            let data = store.memory_data(m);
            MemoryState { name: name.clone(), bytes: data.len() as u64, hash: hash_bytes(data) }
        })
        .collect();
    let tables = plan
        .tables
        .iter()
        .map(|name| {
            let Extern::Table(t) = export(name) else { panic!("export {name:?} is not a table") };
            let size = store.table_size(t);
            let nulls = (0..size).map(|i| store.table_get(t, i).is_none_or(|v| is_null(&v)));
            TableState { name: name.clone(), size, null_hash: hash_nulls(nulls) }
        })
        .collect();
    Snapshot { outcome, globals, memories, tables }
}

fn is_null(v: &Val) -> bool {
    matches!(v, Val::FuncRef(0) | Val::ExternRef(None) | Val::ExnRef(0))
}

fn value(v: &Val) -> Value {
    match *v {
        Val::I32(v) => Value::I32(v),
        Val::I64(v) => Value::I64(v),
        Val::F32(v) => Value::F32(v),
        Val::F64(v) => Value::F64(v),
        Val::V128(v) => Value::V128(v),
        Val::FuncRef(addr) => Value::FuncRef { null: addr == 0 },
        Val::ExternRef(r) => Value::ExternRef { null: r.is_none() },
        Val::ExnRef(_) => unreachable!("the generated modules use no exception handling"),
        // GC values: the generators do not enable GC; an externalised any value is non-null.
        Val::ExternAny(_) => Value::ExternRef { null: false },
        Val::AnyRef(_) => panic!("GC reference in a differential test (GC is not generated)"),
    }
}
