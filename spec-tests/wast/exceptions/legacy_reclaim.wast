;; wasce: a legacy catch gives its exception object back (at the catch without a rethrow in the
;; function, at the end of the arm with one), so a throw/catch loop runs in bounded memory
;; (3 million objects of 32 bytes would pass the default 64 MiB max_exception_bytes).
(module
  (tag $e (param i32))
  (func $thrower (param i32) (throw $e (local.get 0)))
  ;; the arm leaves with a branch
  (func (export "loop-br") (param $n i32) (result i32) (local $s i32)
    (block $done
      (loop $l
        (try
          (do (call $thrower (local.get $n)))
          (catch $e
            (local.set $s (i32.add (local.get $s)))
            (br_if $done (i32.eqz (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
            (br $l)))))
    (local.get $s))
  ;; a function with a rethrow: the arm falls through to its end
  (func (export "loop-rethrow") (param $n i32) (result i32) (local $s i32)
    (loop $l
      (try
        (do (call $thrower (local.get $n)))
        (catch $e
          (local.set $s (i32.add (local.get $s)))
          (if (i32.eqz (local.get $n)) (then (rethrow 1)))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $s))
)
(assert_return (invoke "loop-br" (i32.const 3000000)) (i32.const -1124226208))
(assert_return (invoke "loop-rethrow" (i32.const 3000000)) (i32.const -1124226208))
