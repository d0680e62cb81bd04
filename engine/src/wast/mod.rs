//! Runs WebAssembly spec scripts (`.wast`) against wasce.
//!
//! `WastRunner` executes every directive of a script: modules (binary and text), `register`,
//! `invoke`, `get` and all assertions, with the `spectest` host module. Each `assert_*` counts as
//! one assertion; a module, `register` or `invoke` that fails where it should not counts as a
//! failure too. Failures are reported as `file:line: what happened`.

mod legacy;
mod spectest;
mod values;

use std::collections::HashMap;
use std::path::Path;
use crate::{Error, Extern, InstanceId, Isolation, Linker, Module, Settings, Store, StoreConfig, Val};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

/// The result of one script.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub passed: u32,
    pub failed: u32,
    /// `line: message` for each failure.
    pub failures: Vec<(u32, String)>,
}

pub struct WastRunner {
    store: Store,
    linker: Linker,
    named: HashMap<String, InstanceId>,
    current: Option<InstanceId>,
    settings: Settings,
    /// `(module definition $M ...)`: compiled modules by name (the last one also as "").
    definitions: HashMap<String, Module>,
}

impl WastRunner {
    pub fn new(isolation: Isolation) -> Result<WastRunner, Error> {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() })?;
        let mut linker = Linker::new();
        spectest::define(&mut store, &mut linker)?;
        Ok(WastRunner { store, linker, named: HashMap::new(), current: None, settings: Settings::default(), definitions: HashMap::new() })
    }

    /// Run a whole script; `Err` only when the script itself cannot be parsed.
    pub fn run_script(&mut self, name: &str, text: &str) -> Result<Outcome, String> {
        // The folded legacy `try` form is not parsed by the `wast` crate: unfold it (the line
        // structure is kept, so reported lines stay right).
        let unfolded = legacy::unfold(text);
        let text = unfolded.as_deref().unwrap_or(text);
        let mut lexer = Lexer::new(text);
        lexer.allow_confusing_unicode(true);
        let buf = ParseBuffer::new_with_lexer(lexer).map_err(|e| format!("{name}: {e}"))?;
        let wast: Wast<'_> = parser::parse(&buf).map_err(|e| format!("{name}: {e}"))?;
        let mut outcome = Outcome::default();
        for directive in wast.directives {
            let line = {
                let (l, _) = directive.span().linecol_in(text);
                l as u32 + 1
            };
            let (asserts, result) = self.directive(directive);
            match result {
                Ok(()) => outcome.passed += asserts as u32,
                Err(msg) => {
                    outcome.failed += 1;
                    outcome.failures.push((line, msg));
                }
            }
        }
        Ok(outcome)
    }

    /// Run one directive: (whether it is an assertion, result).
    fn directive(&mut self, d: WastDirective<'_>) -> (bool, Result<(), String>) {
        use WastDirective as D;
        match d {
            D::Module(mut module) => (false, self.module(&mut module).map(|_| ())),
            D::ModuleDefinition(mut module) => (false, self.define_module(&mut module)),
            D::ModuleInstance { instance, module, .. } => {
                (false, self.instantiate_definition(instance.map(|i| i.name()), module.map(|m| m.name())))
            }
            D::Register { name, module, .. } => (false, self.register(name, module.map(|m| m.name()))),
            D::Invoke(invoke) => (false, self.invoke(&invoke).map(|_| ()).map_err(|e| format!("invoke failed: {e}"))),
            D::AssertReturn { exec, results, .. } => (true, self.assert_return(exec, &results)),
            D::AssertTrap { exec, message, .. } => (true, self.assert_trap(exec, message)),
            D::AssertException { exec, .. } => (true, match self.execute(exec) {
                Err(Error::Exception) => Ok(()),
                Ok(_) => Err("expected an exception, but it returned".into()),
                Err(e) => Err(format!("expected an exception, got: {e}")),
            }),
            D::AssertExhaustion { call, message, .. } => {
                (true, expect_trap(self.invoke(&call).map(|_| ()), message))
            }
            D::AssertInvalid { mut module, message, .. } | D::AssertMalformed { mut module, message, .. } => {
                (true, self.assert_rejected(&mut module, message))
            }
            D::AssertUnlinkable { mut module, message, .. } => {
                let r = match module.encode() {
                    Ok(bytes) => self.instantiate(&bytes, None),
                    Err(e) => Err(format!("module did not encode: {e}")),
                };
                (true, match r {
                    Ok(_) => Err(format!("expected unlinkable ({message}), but it instantiated")),
                    Err(_) => Ok(()),
                })
            }
            other => (true, Err(format!("unsupported directive {:?}", std::mem::discriminant(&other)))),
        }
    }

    fn compile(&self, bytes: &[u8]) -> Result<Module, String> {
        crate::load(bytes, &self.settings).map_err(|e| e.to_string())
    }

    fn instantiate(&mut self, bytes: &[u8], name: Option<&str>) -> Result<InstanceId, String> {
        let module = self.compile(bytes)?;
        let instance = self.linker.instantiate(&mut self.store, &module).map_err(|e| e.to_string())?;
        self.current = Some(instance);
        if let Some(name) = name {
            self.named.insert(name.to_string(), instance);
        }
        Ok(instance)
    }

    fn module(&mut self, module: &mut QuoteWat<'_>) -> Result<InstanceId, String> {
        let name = match module {
            QuoteWat::Wat(Wat::Module(m)) => m.id.map(|id| id.name().to_string()),
            _ => None,
        };
        let bytes = module.encode().map_err(|e| format!("module did not encode: {e}"))?;
        self.instantiate(&bytes, name.as_deref()).map_err(|e| format!("module failed: {e}"))
    }

    fn define_module(&mut self, module: &mut QuoteWat<'_>) -> Result<(), String> {
        let name = match module {
            QuoteWat::Wat(Wat::Module(m)) => m.id.map(|id| id.name().to_string()),
            _ => None,
        };
        let bytes = module.encode().map_err(|e| format!("module did not encode: {e}"))?;
        let compiled = self.compile(&bytes).map_err(|e| format!("module definition failed: {e}"))?;
        if let Some(name) = name {
            self.definitions.insert(name, compiled.clone());
        }
        self.definitions.insert(String::new(), compiled);
        Ok(())
    }

    fn instantiate_definition(&mut self, instance: Option<&str>, module: Option<&str>) -> Result<(), String> {
        let compiled = self.definitions.get(module.unwrap_or("")).cloned().ok_or_else(|| format!("no module definition {module:?}"))?;
        let id = self.linker.instantiate(&mut self.store, &compiled).map_err(|e| format!("module instance failed: {e}"))?;
        self.current = Some(id);
        if let Some(name) = instance {
            self.named.insert(name.to_string(), id);
        }
        Ok(())
    }

    fn register(&mut self, as_name: &str, module: Option<&str>) -> Result<(), String> {
        let instance = self.instance(module)?;
        self.linker.define_instance(&self.store, as_name, instance);
        Ok(())
    }

    fn instance(&self, module: Option<&str>) -> Result<InstanceId, String> {
        match module {
            Some(name) => self.named.get(name).copied().ok_or_else(|| format!("no module named {name}")),
            None => self.current.ok_or_else(|| "no current module".to_string()),
        }
    }

    fn invoke(&mut self, invoke: &WastInvoke<'_>) -> Result<Vec<Val>, Error> {
        let instance = self.instance(invoke.module.map(|m| m.name())).map_err(Error::Usage)?;
        let Some(Extern::Func(f)) = self.store.export(instance, invoke.name) else {
            return Err(Error::Usage(format!("no exported function {}", invoke.name)));
        };
        let mut args = Vec::new();
        for a in &invoke.args {
            let WastArg::Core(a) = a else { return Err(Error::Usage("component-model argument".into())) };
            args.push(values::arg(a).map_err(Error::Usage)?);
        }
        self.store.call(f, &args)
    }

    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Vec<Val>, Error> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(&invoke),
            WastExecute::Get { module, global, .. } => {
                let instance = self.instance(module.map(|m| m.name())).map_err(Error::Usage)?;
                match self.store.export(instance, global) {
                    Some(Extern::Global(g)) => Ok(vec![self.store.global_get(g)]),
                    _ => Err(Error::Usage(format!("no exported global {global}"))),
                }
            }
            WastExecute::Wat(mut wat) => {
                let bytes = wat.encode().map_err(|e| Error::Usage(e.to_string()))?;
                let module = crate::load(&bytes, &self.settings)?;
                self.linker.instantiate(&mut self.store, &module)?;
                Ok(vec![])
            }
        }
    }

    fn assert_return(&mut self, exec: WastExecute<'_>, expected: &[WastRet<'_>]) -> Result<(), String> {
        let actual = self.execute(exec).map_err(|e| format!("expected a return, got: {e}"))?;
        if actual.len() != expected.len() {
            return Err(format!("expected {} results, got {}", expected.len(), actual.len()));
        }
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            let WastRet::Core(e) = e else { return Err("component-model result".into()) };
            let store = &self.store;
            if !values::matches(a, e, &|raw| store.any_kind(raw)) {
                return Err(format!("result {i}: expected {e:?}, got {a}"));
            }
        }
        Ok(())
    }

    fn assert_trap(&mut self, exec: WastExecute<'_>, message: &str) -> Result<(), String> {
        expect_trap(self.execute(exec).map(|_| ()), message)
    }

    fn assert_rejected(&mut self, module: &mut QuoteWat<'_>, message: &str) -> Result<(), String> {
        let bytes = match module.encode() {
            Ok(bytes) => bytes,
            Err(_) => return Ok(()), // rejected by the text parser: malformed
        };
        match self.compile(&bytes) {
            Ok(_) => Err(format!("expected the module to be rejected ({message}), but it compiled")),
            Err(_) => Ok(()),
        }
    }
}

fn expect_trap(r: Result<(), Error>, message: &str) -> Result<(), String> {
    match r {
        Ok(()) => Err(format!("expected trap `{message}`, but it returned")),
        Err(Error::Trap(t)) if trap_matches(t.trap.message(), message) => Ok(()),
        Err(e) => Err(format!("expected trap `{message}`, got: {e}")),
    }
}

/// Spec messages sometimes carry details (`uninitialized element 2`); the runtime's are fixed.
fn trap_matches(actual: &str, expected: &str) -> bool {
    actual.contains(expected) || expected.starts_with(actual)
}

/// Run one `.wast` file in a fresh runner, on a thread with a large stack, with every
/// implemented feature.
pub fn run_file(path: &Path, isolation: Isolation) -> Result<Outcome, String> {
    run_file_with(path, isolation, Settings::default())
}

/// Run one `.wast` file with these compile settings (the features a proposal's suite expects).
pub fn run_file_with(path: &Path, isolation: Isolation, settings: Settings) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            let mut runner = WastRunner::new(isolation).map_err(|e| e.to_string())?;
            runner.settings = settings;
            runner.run_script(&name, &text)
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| format!("{}: the runner panicked", path.display()))?
}
