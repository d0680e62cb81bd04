//! Run one module (a `.wasm` saved by a divergence, a libFuzzer artifact turned module, or a
//! `.wat`) through the differential oracle and print the verdict.
//!
//! `cargo run -p wasce-spec-tests --example diff_repro -- FILE [--wat] [--no-kvm]`
//! `--wat` also prints the module as text; `--no-kvm` compares process isolation only.

use wasce_spec_tests::differential::{check, kvm_available, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.iter().find(|a| !a.starts_with("--")).ok_or("usage: diff_repro FILE [--wat] [--no-kvm]")?;
    let wasm = if path.ends_with(".wat") { wat::parse_file(path)? } else { std::fs::read(path)? };
    if args.iter().any(|a| a == "--wat") {
        println!("{}", wasmprinter::print_bytes(&wasm)?);
    }
    let options = Options { fuel: 100_000, kvm: !args.iter().any(|a| a == "--no-kvm") && kvm_available() };
    match check(&wasm, &options) {
        Ok(report) => println!("agree: {report:?}"),
        Err(divergence) => println!("DIVERGENCE: {divergence}"),
    }
    Ok(())
}
