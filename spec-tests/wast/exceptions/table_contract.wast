;; A module with an exported function table and no other route for a function reference to
;; come in compiles its indirect calls without an exception check (`TableContract`), so the
;; engine keeps every function that may throw out of such a table: another module may import
;; it only if it cannot store one there.
(module $c
  (type $v (func (result i32)))
  (table $t (export "table") 4 funcref)
  (func $seven (result i32) (i32.const 7))
  (elem (i32.const 0) $seven)
  (func (export "call") (param i32) (result i32) (call_indirect (type $v) (local.get 0))))
(register "c" $c)
(assert_return (invoke "call" (i32.const 0)) (i32.const 7))

;; A module whose functions cannot throw may write into it.
(module $w
  (import "c" "table" (table 4 funcref))
  (func $eight (result i32) (i32.const 8))
  (elem (i32.const 1) $eight)
  (elem declare func $eight)
  (func (export "set") (param i32) (table.set 0 (local.get 0) (ref.func $eight))))
(assert_return (invoke $c "call" (i32.const 1)) (i32.const 8))
(assert_return (invoke $w "set" (i32.const 3)))
(assert_return (invoke $c "call" (i32.const 3)) (i32.const 8))

;; One that only reads it may throw elsewhere, and calls through it with a check of its own.
(module $r
  (import "c" "table" (table 4 funcref))
  (type $v (func (result i32)))
  (tag $e)
  (func (export "thrower") (result i32) (throw $e))
  (func (export "via") (param i32) (result i32) (call_indirect (type $v) (local.get 0))))
(register "r" $r)
(assert_return (invoke $r "via" (i32.const 1)) (i32.const 8))
(assert_exception (invoke $r "thrower"))

;; A module that may store a function that may throw is refused: its own, by an active
;; segment or by table.set ...
(assert_unlinkable
  (module
    (import "c" "table" (table 4 funcref))
    (tag $e)
    (func $boom (result i32) (throw $e))
    (elem (i32.const 2) $boom))
  "no function that may throw")
(assert_unlinkable
  (module
    (import "c" "table" (table 4 funcref))
    (tag $e)
    (func $boom (result i32) (throw $e))
    (elem declare func $boom)
    (func (export "put") (table.set 0 (i32.const 2) (ref.func $boom))))
  "no function that may throw")
;; ... a function that calls one that may ...
(assert_unlinkable
  (module
    (import "c" "table" (table 4 funcref))
    (tag $e)
    (func $boom (throw $e))
    (func $indirectly (result i32) (call $boom) (i32.const 0))
    (elem (i32.const 2) $indirectly))
  "no function that may throw")
;; ... an imported function (another module's, which may throw) ...
(assert_unlinkable
  (module
    (import "c" "table" (table 4 funcref))
    (import "r" "thrower" (func $f (result i32)))
    (elem (i32.const 2) $f))
  "no function that may throw")
;; ... or a reference from another table that holds anything.
(module $open
  (table (export "t") 1 funcref)
  (func (export "put") (param funcref) (table.set 0 (i32.const 0) (local.get 0))))
(register "open" $open)
(assert_unlinkable
  (module
    (import "c" "table" (table 4 funcref))
    (import "open" "t" (table 1 funcref))
    (func (export "copy") (table.copy 0 1 (i32.const 2) (i32.const 0) (i32.const 1))))
  "no function that may throw")

;; Whether a function from elsewhere may throw is known when linking: one that cannot is fine,
;; and so is writing into another imported table, if nothing is taken from it.
(module $nt (func (export "nine") (result i32) (i32.const 9)))
(register "nt" $nt)
(module
  (import "c" "table" (table 4 funcref))
  (import "nt" "nine" (func $n (result i32)))
  (elem (i32.const 2) $n))
(assert_return (invoke $c "call" (i32.const 2)) (i32.const 9))
(module
  (import "c" "table" (table 4 funcref))
  (import "open" "t" (table 1 funcref))
  (func $ten (result i32) (i32.const 10))
  (elem (table 1) (i32.const 0) func $ten)
  (elem (table 0) (i32.const 3) func $ten))
(assert_return (invoke $c "call" (i32.const 3)) (i32.const 10))

;; A table whose owner checks after indirect calls takes anything, and the exception reaches
;; the caller.
(module $m
  (import "open" "t" (table 1 funcref))
  (import "r" "thrower" (func $f (result i32)))
  (type $v (func (result i32)))
  (elem (i32.const 0) $f)
  (func (export "call") (result i32)
    (block $h (try_table (catch_all $h) (return (call_indirect (type $v) (i32.const 0)))))
    (i32.const 5)))
(assert_return (invoke $m "call") (i32.const 5))
