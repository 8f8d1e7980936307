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
;; - row_max(n), sum_exp(n, max) and shift(n, max, log_sum): log_softmax of the row in place, as torch computes it in
;;   float32, (x - max) - log(sum(exp(x - max))), with the logarithm taken by the caller (one per row). Beam search and
;;   continuation scoring run it on every row of every step (20 x 32k scores a step for beam 5 at batch 4), where
;;   ONNX Runtime's LogSoftmax session cost 3-5.6 ms a step at real width, most of it copying its output into new
;;   memory. row_max skips NaN scores, but a NaN score reaches the sum of exps, so the whole row comes out NaN, as
;;   in torch.
(module
  (memory (export "memory") 1)
  (func (export "argmax") (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $m0 v128) (local $max f32)
    ;; Pass 1, the largest score (row_max).
    (local.set $max (call $row_max (local.get $n)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
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
    (local.get $i))
  ;; The row's largest score, -inf for an empty row; NaN scores are skipped (pmax keeps its first operand unless the
  ;; second is greater). Four accumulators of four lanes over 16 scores per iteration: pmax's latency, not its
  ;; throughput, bounds one accumulator.
  (func $row_max (export "row_max") (param $n i32) (result f32)
    (local $i i32) (local $end i32) (local $address i32)
    (local $m0 v128) (local $m1 v128) (local $m2 v128) (local $m3 v128)
    (local $max f32) (local $score f32)
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
    (local.get $max))
  ;; The sum of exp(score - max), each exp in float32 and the sum in float64, in four running sums (score i into
  ;; sum i mod 4) added at the end: a float32 sum of 32k terms drifts by up to 3 ulps of the log-probs (float32 sums
  ;; of torch and ONNX Runtime drift likewise, each its own way). The last four scores read may pass the row's end:
  ;; those lanes are masked to 0 (the memory holds whole 64 KB pages, and a row whose length is not a multiple of 4
  ;; does not end on a page's end).
  ;;
  ;; exp is Cephes' expf on four lanes, y = score - max <= 0: n = round(y / ln 2) (adding 1.5 * 2^23 rounds it and
  ;; leaves n in the low bits), r = y - n ln 2 in two parts (ln 2's high part has 9 significant bits, so n times it
  ;; is exact), a degree-6 polynomial for exp(r) on |r| <= ln 2 / 2, then n added to the exponent bits. Below -87 y is
  ;; taken as -87, so that 2^n stays a normal number: the 1.6e-38 that gives is below an ulp of a sum that holds
  ;; exp(0) = 1. A NaN score stays NaN through it.
  (func (export "sum_exp") (param $n i32) (param $max f32) (result f64)
    (local $i i32) (local $maxes v128) (local $lanes v128) (local $ends v128) (local $low v128) (local $high v128)
    (local $e v128) (local $y v128) (local $t v128) (local $k v128) (local $r v128) (local $p v128)
    (local.set $maxes (f32x4.splat (local.get $max)))
    (local.set $lanes (v128.const i32x4 0 1 2 3))
    (local.set $ends (i32x4.splat (local.get $n)))
    (block $done
      (loop $by4
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $y (f32x4.pmax (f32x4.sub (v128.load (i32.shl (local.get $i) (i32.const 2))) (local.get $maxes))
                                  (v128.const f32x4 -87 -87 -87 -87)))
        (local.set $t (f32x4.add (f32x4.mul (local.get $y)
                                            (v128.const f32x4 1.44269504088896341 1.44269504088896341
                                                              1.44269504088896341 1.44269504088896341))
                                 (v128.const f32x4 12582912 12582912 12582912 12582912)))
        (local.set $k (f32x4.sub (local.get $t) (v128.const f32x4 12582912 12582912 12582912 12582912)))
        (local.set $r (f32x4.sub (f32x4.sub (local.get $y)
                                            (f32x4.mul (local.get $k) (v128.const f32x4 0.693359375 0.693359375
                                                                                        0.693359375 0.693359375)))
                                 (f32x4.mul (local.get $k) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4
                                                                             -2.12194440e-4 -2.12194440e-4))))
        (local.set $p (f32x4.add (f32x4.mul (v128.const f32x4 1.9875691500e-4 1.9875691500e-4
                                                              1.9875691500e-4 1.9875691500e-4)
                                            (local.get $r))
                                 (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
                                 (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
                                 (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
                                 (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
                                 (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
        (local.set $p (f32x4.add (f32x4.add (f32x4.mul (local.get $p) (f32x4.mul (local.get $r) (local.get $r)))
                                            (local.get $r))
                                 (v128.const f32x4 1 1 1 1)))
        ;; times 2^n: n's bits (those of t less those of 1.5 * 2^23) shifted into the exponent; lanes past n are 0.
        (local.set $e (v128.and (i32x4.add (local.get $p)
                                           (i32x4.shl (i32x4.sub (local.get $t)
                                                                 (v128.const i32x4 0x4b400000 0x4b400000
                                                                                   0x4b400000 0x4b400000))
                                                      (i32.const 23)))
                                (i32x4.lt_s (i32x4.add (local.get $lanes) (i32x4.splat (local.get $i)))
                                            (local.get $ends))))
        (local.set $low (f64x2.add (local.get $low) (f64x2.promote_low_f32x4 (local.get $e))))
        (local.set $high (f64x2.add (local.get $high)
                                    (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7
                                                                            (local.get $e) (local.get $e)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $by4)))
    (f64.add (f64.add (f64x2.extract_lane 0 (local.get $low)) (f64x2.extract_lane 1 (local.get $low)))
             (f64.add (f64x2.extract_lane 0 (local.get $high)) (f64x2.extract_lane 1 (local.get $high)))))
  (func (export "shift") (param $n i32) (param $max f32) (param $log_sum f32)
    (local $i i32) (local $end i32) (local $address i32) (local $maxes v128) (local $log_sums v128)
    (local.set $maxes (f32x4.splat (local.get $max)))
    (local.set $log_sums (f32x4.splat (local.get $log_sum)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done4
      (loop $by4
        (br_if $done4 (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $address (i32.shl (local.get $i) (i32.const 2)))
        (v128.store (local.get $address)
                    (f32x4.sub (f32x4.sub (v128.load (local.get $address)) (local.get $maxes)) (local.get $log_sums)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $by4)))
    (block $done1
      (loop $by1
        (br_if $done1 (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $address (i32.shl (local.get $i) (i32.const 2)))
        (f32.store (local.get $address)
                   (f32.sub (f32.sub (f32.load (local.get $address)) (local.get $max)) (local.get $log_sum)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $by1)))))
