;; Scans over a row of float32 scores in WebAssembly SIMD, for what runs over the whole vocabulary on every token:
;; greedy decoding's argmax (32k scores, where V8's best scalar loop took 22-40 us of a 0.35 ms tiny decode step) and
;; beam search's top-k candidates over 5 x 32k (0.6 ms of a 3.8 ms tiny beam step in JS). Assembled into
;; scores-wasm.ts by `node --import tsx tools/build-wasm.ts`; test/tools/build-wasm.test.ts checks that the two agree,
;; src/llm/scores.ts loads it.
;;
;; The caller writes n scores at address 0 of the exported memory, then calls:
;; - argmax(n): the index of the first of the largest scores, as torch.argmax on the CPU picks among equal maxima.
;;   NaN scores are skipped (pmax keeps its first operand unless the second is greater); a row of NaN alone gives 0.
;; - first_above(start, n, base, bar): the first index i >= start whose score plus base (a float32 addition, as torch
;;   adds a beam's score to its log-probs) is greater than bar, or n when none is. Beam search's top-k asks it for
;;   the next score that enters its list: once the list is full, few do.
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
    (select (i32.const 0) (local.get $i) (i32.ge_u (local.get $i) (local.get $n))))
  (func (export "first_above") (param $start i32) (param $n i32) (param $base f32) (param $bar f32) (result i32)
    (local $i i32) (local $end i32) (local $bases v128) (local $bars v128)
    (local.set $i (local.get $start))
    ;; One by one up to a multiple of 4, four at a time while no score of the four passes, then one by one.
    (block $aligned
      (loop $head
        (br_if $aligned (i32.eqz (i32.and (local.get $i) (i32.const 3))))
        (br_if $aligned (i32.ge_u (local.get $i) (local.get $n)))
        (if (f32.gt (f32.add (f32.load (i32.shl (local.get $i) (i32.const 2))) (local.get $base)) (local.get $bar))
          (then (return (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $head)))
    (local.set $bases (f32x4.splat (local.get $base)))
    (local.set $bars (f32x4.splat (local.get $bar)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $passed4
      (loop $by4
        (br_if $passed4 (i32.ge_u (local.get $i) (local.get $end)))
        (br_if $passed4 (v128.any_true (f32x4.gt (f32x4.add (v128.load (i32.shl (local.get $i) (i32.const 2)))
                                                            (local.get $bases))
                                                  (local.get $bars))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $by4)))
    (block $passed1
      (loop $by1
        (br_if $passed1 (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $passed1 (f32.gt (f32.add (f32.load (i32.shl (local.get $i) (i32.const 2))) (local.get $base))
                                (local.get $bar)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $by1)))
    (local.get $i)))
