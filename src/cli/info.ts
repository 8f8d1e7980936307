// emu2 info <package>: what a package holds and whether it validates. emu2 info --devices: where it can run.
import type { Command } from "commander";
import type { Manifest } from "../model/manifest.js";
import { listDevices, type DeviceReport } from "../model/devices.js";
import { ModelPackage } from "../model/package.js";
import { join } from "node:path";
import { EXIT_FAILURE } from "./exit-codes.js";
import { UsageError } from "../util/errors.js";
import { writeJson } from "./io.js";

function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** "greedy", "1 beam" (then sampling, said after) or "N beams": the search the manifest's defaults run. */
function describeDecoding(g: Manifest["generation"]): string {
  if (g.num_beams > 1) return `${g.num_beams} beams`;
  return g.do_sample ? "1 beam" : "greedy";
}

/** "int4/16 asym, v_proj down_proj int8" for a graph stored as MatMulNBits weights, "" for a float one. */
function quantizationTag(m: Manifest, role: string): string {
  const q = m.quantization?.[role as keyof NonNullable<Manifest["quantization"]>];
  if (!q) return "";
  const mixed = q.int8_layers.length > 0 ? `, ${q.int8_layers.join(" ")} int8` : "";
  return `int${q.bits}/${q.block_size} ${q.symmetric ? "sym" : "asym"}${q.scale_search ? " searched" : ""}${mixed}`;
}

/**
 * Whether any graph holds int8 MatMulNBits weights at accuracy level 0, which ONNX Runtime 1.30's CPU provider runs
 * on a slow path (npm run bench:quantized: one Emu2-width layer 9.3 s per token against 30 ms at level 4).
 */
function slowInt8OnCpu(m: Manifest): boolean {
  return Object.values(m.quantization ?? {}).some(
    (q) => q !== undefined && q.accuracy_level === 0 && (q.bits === 8 || q.int8_layers.length > 0),
  );
}

export function registerInfo(program: Command): void {
  program
    .command("info")
    .description(
      "show what a model package holds and check that it is valid; --devices: what ONNX Runtime can run on here",
    )
    .argument("[package]", "model package folder")
    .option("--devices", "list the devices (CPU, WebGPU adapters with their limits, CUDA)")
    .option("--json", "print JSON")
    .action(async (dir: string | undefined, options: { json?: boolean; devices?: boolean }) => {
      if (options.devices) {
        const report = await listDevices();
        if (options.json) writeJson(report);
        else process.stdout.write(`${formatDevices(report).join("\n")}\n`);
        return;
      }
      if (dir === undefined) throw new UsageError("info: name a model package folder, or pass --devices");
      const pkg = ModelPackage.open(dir);
      const m = pkg.manifest;
      const files = pkg.fileReport();
      const total = files.reduce((sum, f) => sum + f.bytes + f.externalDataBytes, 0);
      const problems = pkg.checkGraphs();
      // Each problem is one line on stderr naming its file; the report still shows what the package holds.
      for (const p of problems) process.stderr.write(`emu2: ${join(dir, p.file)}: ${p.problem}\n`);
      if (problems.length > 0) process.exitCode = EXIT_FAILURE;
      if (options.json) {
        writeJson({ valid: problems.length === 0, dir: pkg.dir, manifest: m, files, totalBytes: total, problems });
        return;
      }
      const vd = m.visual_decoder;
      const lines = [
        `${m.name} (${m.variant}, ${m.dtype}): ${m.description}`,
        `  package     ${dir}`,
        `  valid       ${problems.length === 0 ? "yes" : `no: ${problems.length} problem${problems.length === 1 ? "" : "s"} (see stderr)`} (${m.format})`,
        `  vision      ${m.vision.image_size}px, patch ${m.vision.patch_size}, width ${m.vision.width}, ${m.vision.layers} layers, ${m.vision.n_query} tokens per image`,
        `  llm         hidden ${m.llm.hidden_size}, ${m.llm.num_layers} layers, ${m.llm.num_heads} heads, vocabulary ${m.tokenizer.vocab_size}, context ${m.llm.max_position_embeddings}`,
        `  decoder     ${vd ? `${vd.latent_size * vd.vae_scale_factor}x${vd.latent_size * vd.vae_scale_factor} images, Euler ${vd.num_inference_steps} steps, guidance ${vd.guidance_scale}` : "none (this package cannot generate images)"}`,
        `  template    ${m.prompt.template}`,
        ...(m.quantization
          ? [
              `  weights     ${m.dtype}; linear layers of the marked graphs as MatMulNBits (bits/block size, asym: with zero points, searched: error-minimizing scales)`,
            ]
          : []),
        ...(slowInt8OnCpu(m)
          ? [
              "  note        int8 weights at MatMulNBits accuracy level 0 take ONNX Runtime's slow CPU path (about 300x level 4 at Emu2's width): for CPU decoding, export with --accuracy-level 4",
            ]
          : []),
        `  generation  ${describeDecoding(m.generation)}, max ${m.generation.max_new_tokens} new tokens${m.generation.num_beams > 1 ? `, length penalty ${m.generation.length_penalty}` : ""}${m.generation.do_sample ? `, sampling T=${m.generation.temperature}` : ""}`,
        "  files",
        ...files.map((f) =>
          `    ${f.role.padEnd(15)} ${f.file.padEnd(22)} ${formatBytes(f.bytes + f.externalDataBytes).padEnd(9)} ${quantizationTag(m, f.role)}`.trimEnd(),
        ),
        `  total       ${formatBytes(total)}`,
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}

function formatDevices(r: DeviceReport): string[] {
  const lines = [`cpu     ${r.cpu.model}, ${r.cpu.cores} cores`];
  if (!r.webgpu.available)
    lines.push(`webgpu  unavailable: ${r.webgpu.reason?.replace(/^WebGPU is not available: /, "")}`);
  else {
    lines.push(
      `webgpu  available (Vulkan), float16 ${r.webgpu.float16 ? "yes (shader-f16)" : "no (float32 packages only)"}`,
    );
    if (r.webgpu.adapters === undefined) lines.push("  adapters: install vulkan-tools (vulkaninfo) to list them");
    for (const a of r.webgpu.adapters ?? []) {
      const limits = [
        a.maxStorageBufferRange !== undefined ? `storage binding ${formatBytes(a.maxStorageBufferRange)}` : undefined,
        a.maxMemoryAllocationSize !== undefined ? `allocation ${formatBytes(a.maxMemoryAllocationSize)}` : undefined,
      ].filter(Boolean);
      // vendor:device and the PCI address are what --device-id selects the adapter by (README, "GPU").
      const pci = a.pci
        ? ` at ${[a.pci.domain.toString(16).padStart(4, "0"), a.pci.bus.toString(16).padStart(2, "0"), a.pci.device.toString(16).padStart(2, "0")].join(":")}.${a.pci.function}`
        : "";
      lines.push(
        `  ${a.index}: ${a.name} (${a.type}, ${a.vendorId.toString(16)}:${a.deviceId.toString(16)}${pci}; ${a.driver})${limits.length ? `; max ${limits.join(", ")}` : ""}${a.index === 0 ? " <- default" : ""}`,
      );
    }
  }
  lines.push(r.cuda.available ? "cuda    provider libraries installed" : `cuda    unavailable: ${r.cuda.reason}`);
  return lines;
}
