;; argmax over float32 scores in WebAssembly SIMD: greedy decoding runs it on every token over the whole vocabulary
;; (32k scores), where V8's scalar loop took 22-40 us of a 0.35 ms tiny decode step. Assembled into argmax-wasm.ts by
;; `node --import tsx tools/build-wasm.ts`; test/tools/build-wasm.test.ts checks that the two agree.
;;
;; The caller writes n scores at address 0 of the exported memory and calls argmax(n): the index of the first of the
;; largest scores, as torch.argmax on the CPU picks among equal maxima. NaN scores are skipped (pmax keeps its first
;; operand unless the second is greater); a row of NaN alone gives 0.
(module
  (memory (export "memory") 1)
  (func (export "argmax") (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $address i32)
    (local $m0 v128) (local $m1 v128) (local $m2 v128) (local $m3 v128)
    (local $max f32) (local $score f32)
    ;; Pass 1, the largest score. Four accumulators of four lanes over 16 scores per iteration: pmax's latency, not
    ;; its throughput, bounds one accumulator.
    (local.set $m0 (v128.const f32x4 -inf -inf -inf -inf))
    (local.set $m1 (local.get $m0))
    (local.set $m2 (local.get $m0))
    (local.set $m3 (local.get $m0))
    (local.set $end (i32.and (local.get $n) (i32.const -16)))
    (block $done16
      (loop $by16
        (br_if $done16 (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $address (i32.shl (local.get $i) (i32.const 2)))
        (local.set $m0 (f32x4.pmax (local.get $m0) (v128.load offset=0 (local.get $address))))
        (local.set $m1 (f32x4.pmax (local.get $m1) (v128.load offset=16 (local.get $address))))
        (local.set $m2 (f32x4.pmax (local.get $m2) (v128.load offset=32 (local.get $address))))
        (local.set $m3 (f32x4.pmax (local.get $m3) (v128.load offset=48 (local.get $address))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $by16)))
    (local.set $m0 (f32x4.pmax (f32x4.pmax (local.get $m0) (local.get $m1))
                               (f32x4.pmax (local.get $m2) (local.get $m3))))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done4
      (loop $by4
        (br_if $done4 (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $m0 (f32x4.pmax (local.get $m0) (v128.load (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $by4)))
    (local.set $max (f32x4.extract_lane 0 (local.get $m0)))
    (if (f32.gt (f32x4.extract_lane 1 (local.get $m0)) (local.get $max))
      (then (local.set $max (f32x4.extract_lane 1 (local.get $m0)))))
    (if (f32.gt (f32x4.extract_lane 2 (local.get $m0)) (local.get $max))
      (then (local.set $max (f32x4.extract_lane 2 (local.get $m0)))))
    (if (f32.gt (f32x4.extract_lane 3 (local.get $m0)) (local.get $max))
      (then (local.set $max (f32x4.extract_lane 3 (local.get $m0)))))
    (block $done1
      (loop $by1
        (br_if $done1 (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $score (f32.load (i32.shl (local.get $i) (i32.const 2))))
        (if (f32.gt (local.get $score) (local.get $max)) (then (local.set $max (local.get $score))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $by1)))
    ;; Pass 2, the first index holding it: four at a time until a group holds it, then one by one.
    (local.set $m0 (f32x4.splat (local.get $max)))
    (local.set $i (i32.const 0))
    (block $found4
      (loop $find4
        (br_if $found4 (i32.ge_u (local.get $i) (local.get $end)))
        (br_if $found4 (v128.any_true (f32x4.eq (local.get $m0)
                                                (v128.load (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $find4)))
    (block $found1
      (loop $find1
        (br_if $found1 (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $found1 (f32.eq (f32.load (i32.shl (local.get $i) (i32.const 2))) (local.get $max)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $find1)))
    (select (i32.const 0) (local.get $i) (i32.ge_u (local.get $i) (local.get $n)))))
