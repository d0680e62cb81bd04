//! Run spec scripts and print a per-file table: `spec-run FILE...` (development tool).

fn main() {
    let (mut passed, mut failed) = (0, 0);
    let verbose = std::env::var("VERBOSE").is_ok();
    for path in std::env::args().skip(1) {
        match wasce_spec_tests::run_file(std::path::Path::new(&path)) {
            Ok(o) => {
                println!("{:<40} {:>6} passed {:>5} failed", path, o.passed, o.failed);
                if verbose {
                    for (line, msg) in &o.failures {
                        println!("    {path}:{line}: {msg}");
                    }
                }
                passed += o.passed;
                failed += o.failed;
            }
            Err(e) => {
                println!("{path}: {e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
}
