// The transformers.js peer of `npm run bench`: greedy decoding with @huggingface/transformers (its own generation
// loop, on the same onnxruntime-node) of a package's LLaMA text decoder exported in the layout it loads
// (bench/export_hf_layout.py). Job JSON on stdin: {"model_dir", "ids", "new_tokens", "threads", "warmup",
// "repeats"}; prints one JSON object: the generated ids, the median time of a whole generation and the peak RSS.
import { performance } from "node:perf_hooks";
import { median } from "./stats.js";

interface Job {
  model_dir: string;
  ids: number[];
  new_tokens: number;
  threads: number;
  warmup: number;
  repeats: number;
}

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
  process.stdout.write(
    `${JSON.stringify({
      ids,
      greedy_ms: median(times),
      session_ms: sessionMs,
      rss_baseline_kb: Math.round(baseline / 1024),
      rss_peak_kb: process.resourceUsage().maxRSS,
    })}\n`,
  );
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stdout.write(`${JSON.stringify({ error: message.replace(/\s+/g, " ").trim() })}\n`);
  process.exit(1);
});
