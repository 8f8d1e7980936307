// The transformers.js peer of `npm run bench`: greedy decoding with @huggingface/transformers (its own generation
// loop, on the same onnxruntime-node) of a package's LLaMA text decoder exported in the layout it loads
// (bench/export_hf_layout.py). Job JSON on stdin: {"model_dir", "ids", "new_tokens", "threads", "warmup",
// "repeats", "package_dir"}; prints one JSON object: the generated ids, the median time of a whole generation and
// the peak RSS, then the same generation alternated with emu2's on the package it was exported from (see alternate).
import { performance } from "node:perf_hooks";
import { Emu2 } from "../src/emu2.js";
import { PLAIN_GREEDY } from "../src/llm/settings.js";
import { median } from "./stats.js";

interface Job {
  model_dir: string;
  ids: number[];
  new_tokens: number;
  threads: number;
  warmup: number;
  repeats: number;
  package_dir: string;
}

/** Rounds of the alternating comparison after as many warm-up rounds: each round one generation of each side. */
const ALTERNATE_ROUNDS = 30;

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const job = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Job;
  const baseline = process.memoryUsage().rss;
  const { AutoModelForCausalLM, Tensor, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = "/";
  const sessionStart = performance.now();
  const model = await AutoModelForCausalLM.from_pretrained(job.model_dir, {
    dtype: "fp32",
    device: "cpu",
    session_options: { intraOpNumThreads: job.threads, interOpNumThreads: 1 },
  });
  const sessionMs = performance.now() - sessionStart;
  const n = job.ids.length;
  const inputs = {
    input_ids: new Tensor("int64", BigInt64Array.from(job.ids, BigInt), [1, n]),
    attention_mask: new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
  };
  const once = async (): Promise<number[]> => {
    const out = (await model.generate({
      ...inputs,
      max_new_tokens: job.new_tokens,
      do_sample: false,
      num_beams: 1,
    })) as InstanceType<typeof Tensor>;
    return Array.from(out.data as BigInt64Array, Number).slice(n);
  };
  for (let i = 0; i < job.warmup; i++) await once();
  const times: number[] = [];
  let ids: number[] = [];
  for (let i = 0; i < job.repeats; i++) {
    const start = performance.now();
    ids = await once();
    times.push(performance.now() - start);
  }
  const rssPeak = process.resourceUsage().maxRSS;
  const alternating = await alternate(job, once, ids);
  process.stdout.write(
    `${JSON.stringify({
      ids,
      greedy_ms: median(times),
      session_ms: sessionMs,
      rss_baseline_kb: Math.round(baseline / 1024),
      rss_peak_kb: rssPeak,
      alternating,
    })}\n`,
  );
}

/**
 * The two generations taking turns in this one process, on the one onnxruntime-node they share: this VM's speed
 * drifts by up to 2x between runs a few seconds apart (a bare session.run loop took 0.25 to 0.42 ms a token in
 * consecutive runs), so timings of the two sides taken one after the other compare the machine's moods as much as
 * the code. Alternating, each round's two generations see the same machine; the ratio is the median of the rounds'.
 * Both sides warm up first for as many rounds (a process's first few hundred fetches of 128 KB logits land on
 * pages the heap has not touched yet and take twice as long: see the README).
 */
async function alternate(
  job: Job,
  peerOnce: () => Promise<number[]>,
  peerIds: number[],
): Promise<{ emu2_ms: number; transformers_js_ms: number; ratio: number; rounds: number }> {
  const model = Emu2.open(job.package_dir, { threads: job.threads });
  const llm = await model.llm();
  const settings = { ...PLAIN_GREEDY, maxNewTokens: job.new_tokens };
  const emu2: number[] = [];
  const peer: number[] = [];
  for (let round = 0; round < 2 * ALTERNATE_ROUNDS; round++) {
    let start = performance.now();
    const [{ ids }] = await llm.generateText([job.ids], null, settings);
    const emu2Ms = performance.now() - start;
    start = performance.now();
    await peerOnce();
    const peerMs = performance.now() - start;
    if (round === 0 && ids.join() !== peerIds.slice(0, ids.length).join())
      throw new Error("alternating run: emu2 and transformers.js generated different ids");
    if (round < ALTERNATE_ROUNDS) continue;
    emu2.push(emu2Ms);
    peer.push(peerMs);
  }
  return {
    emu2_ms: median(emu2),
    transformers_js_ms: median(peer),
    ratio: median(emu2.map((ms, i) => ms / peer[i])),
    rounds: ALTERNATE_ROUNDS,
  };
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stdout.write(`${JSON.stringify({ error: message.replace(/\s+/g, " ").trim() })}\n`);
  process.exit(1);
});
