// The device-KV rows of `npm run bench`, in a process of their own: per-token decode time on the WebGPU provider
// with the KV cache in host memory (HostKvCache: each step's new rows come back to the host, and the whole past goes
// out again as the next one) against the cache kept on the device (DeviceKvCache), at several context lengths, on
// emu2-tiny.
// Each decode step is what generation does per token: embed one id, decoder, lm_head of the last row, argmax.
// Prints one JSON object; {"skipped": "<why>"} where WebGPU is not available.
import { performance } from "node:perf_hooks";
import { Emu2 } from "../src/emu2.js";
import { DeviceKvCache, deviceCacheOutputs, deviceCacheSessions } from "../src/llm/device-kv-cache.js";
import { LlmGraphs } from "../src/llm/graphs.js";
import { HostKvCache, type KvCache, type KvCacheFactory } from "../src/llm/kv-cache.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../src/model/session.js";
import { listDevices } from "../src/model/devices.js";
import { median } from "./stats.js";

const CONTEXTS = [64, 512, 1536];
const STEPS = 12;
const WARMUP = 2;

async function main(): Promise<Record<string, unknown>> {
  const devices = await listDevices();
  if (!devices.webgpu.available) return { skipped: `no WebGPU device (${devices.webgpu.reason})` };
  const model = Emu2.open("fixtures/models/emu2-tiny", { device: "webgpu" });
  const m = model.manifest;
  const { num_layers: layers, num_heads: heads, head_dim: headDim, hidden_size: hidden } = m.llm;
  const shape = { layers, heads, headDim, dtype: m.dtype };
  const options = { ...DEFAULT_SESSION_OPTIONS, device: "webgpu" as const };
  const s = (role: Parameters<typeof model.pkg.session>[0]) => model.pkg.session(role);
  const common = {
    embedTokens: await s("embed_tokens"),
    projectUp: await s("project_up"),
    lmHead: await s("lm_head"),
    projectDown: await s("project_down"),
  };
  if (!m.llm.decoder_file) throw new Error("emu2-tiny's decoder is expected whole, not split into parts");
  const decoderPath = model.pkg.path(m.llm.decoder_file);
  const hostDecoder = await createSession(decoderPath, options);
  const deviceOutputs = deviceCacheOutputs(model.pkg.graphOutputs("decoder"), layers);
  const deviceDecoder = await createSession(decoderPath, options, { deviceOutputs });
  const cacheSessions = await deviceCacheSessions(shape, deviceOutputs, (_, graph, outputs) =>
    createSession(graph, options, { deviceOutputs: outputs }),
  );
  const strategies: { name: string; graphs: LlmGraphs; newCache: KvCacheFactory }[] = [
    {
      name: "host",
      graphs: new LlmGraphs({ ...common, decoder: hostDecoder }, m.dtype, hidden),
      // One free slot in the empty past: the WebGPU decoder cannot run a zero-length one.
      newCache: HostKvCache.factory(shape, 1),
    },
    {
      name: "device",
      graphs: new LlmGraphs({ ...common, decoder: deviceDecoder }, m.dtype, hidden),
      newCache: DeviceKvCache.factory(shape, cacheSessions),
    },
  ];
  const vocab = m.tokenizer.vocab_size;
  const rows = [];
  for (const context of CONTEXTS) {
    const ids = Array.from({ length: context }, (_, i) => 1 + ((i * 7919) % (vocab - 1)));
    const figures: Record<string, number> = {};
    const generated: Record<string, number[]> = {};
    for (const { name, graphs, newCache } of strategies) {
      const cache: KvCache = await newCache(1);
      let mask = ids.map(() => 1);
      let last = graphs.lastRows(await graphs.decoder(await graphs.embedTokens([ids]), [mask], cache), 1);
      const times: number[] = [];
      const out: number[] = [];
      for (let step = 0; step < WARMUP + STEPS; step++) {
        const start = performance.now();
        const logits = await graphs.lmHead(last, 1);
        let next = 0;
        for (let v = 1; v < logits.length; v++) if (logits[v] > logits[next]) next = v;
        mask = [...mask, 1];
        last = graphs.lastRows(await graphs.decoder(await graphs.embedTokens([[next]]), [mask], cache), 1);
        if (step >= WARMUP) times.push(performance.now() - start);
        out.push(next);
      }
      cache.release();
      figures[name] = median(times);
      generated[name] = out;
    }
    if (generated.host.join() !== generated.device.join())
      throw new Error(`context ${context}: host and device KV generated different ids`);
    rows.push({ context, host_ms_per_token: figures.host, device_ms_per_token: figures.device, steps: STEPS });
  }
  await model.release();
  return { adapter: devices.webgpu.adapters?.[0]?.name ?? "unknown (vulkaninfo not installed)", rows };
}

main().then(
  (result) => console.log(JSON.stringify(result)),
  (err: unknown) => {
    console.log(JSON.stringify({ error: (err as Error).message.split("\n")[0] }));
    process.exit(1);
  },
);
