//! Write the Cranelift IR wasce generates for every function of a module (before
//! optimisation), to compare it with wasmtime's (`wasmtime compile --emit-clif DIR`):
//!
//! ```text
//! cargo run --release -p wasce-compiler --example emit-clif -- MODULE.wasm DIR
//! ```
//!
//! Files are `DIR/function[N].clif`, N the function index (imports included), as wasmtime's
//! `wasm[0]--function[N]--NAME.clif`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, dir] = args.as_slice() else {
        eprintln!("usage: emit-clif MODULE.wasm DIR");
        std::process::exit(2);
    };
    let wasm = std::fs::read(module).unwrap_or_else(|e| {
        eprintln!("emit-clif: {module}: {e}");
        std::process::exit(1)
    });
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("emit-clif: {dir}: {e}");
        std::process::exit(1);
    }
    // SAFETY: set before any other thread exists (the compiler's workers start later).
    unsafe { std::env::set_var("WASCE_EMIT_CLIF", dir) };
    match wasce_compiler::compile(&wasm, &wasce_compiler::Settings::default()) {
        Ok(m) => println!("{} functions written to {dir}", m.funcs.len()),
        Err(e) => {
            eprintln!("emit-clif: {module}: {e}");
            std::process::exit(1);
        }
    }
}
