;; Grows a table by ten million elements on every call: the host's table
;; cap must stop it.
(module
  (memory (export "memory") 4)
  (table $t 1 funcref)
  (global $next (mut i32) (i32.const 4096))
  ;; The first call of an instance (the host's probe at load) behaves.
  (global $calls (mut i32) (i32.const 0))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
    (global.set $next (i32.add (local.get $at) (local.get 3)))
    (local.get $at))
  (func (export "pointsman:policy/routing@0.1.0#route") (param i32) (result i32)
    (if (global.get $calls) (then
      (drop (table.grow $t (ref.null func) (i32.const 10000000)))
    ))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 64) (i32.const 1))
    (i32.store (i32.const 72) (i32.const 128))
    (i32.store (i32.const 76) (i32.const 5))
    (i32.const 64))
  (data (i32.const 128) "grown"))
