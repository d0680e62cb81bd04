;; Compiled code makes no exception check after calls to WASI imports, so linking one to a
;; WebAssembly function (which could throw) is refused; other modules' imports may be wasm.
(module $fake
  (tag $t)
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32) (throw $t)))
(register "wasi_snapshot_preview1" $fake)
(register "wasi_unstable" $fake)
(register "other" $fake)
(assert_unlinkable
  (module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))
  "must be a host function")
(assert_unlinkable
  (module (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32))))
  "must be a host function")
(module
  (import "other" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (func (export "caught") (result i32)
    (block $h (try_table (catch_all $h) (drop (call $w (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
    (i32.const 7)))
(assert_return (invoke "caught") (i32.const 7))
