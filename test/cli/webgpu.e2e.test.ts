// --device webgpu through the real binary: the errors a user meets (no Vulkan loader, an adapter index that does
// not exist or cannot be chosen), --cpu-fallback, --device-id through Mesa's device-select layer, and `info --devices`.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { deviceSelectLayerActive } from "../../src/model/webgpu.js";
import { emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";
import { NO_WEBGPU } from "../helpers/webgpu.js";

const chat = resolve(packageDir("emu2-chat-tiny"));
const ask = ["chat", "-m", chat, "-q", "--greedy", "-n", "4", "-p", "What is in a picture?"];

/** stderr without Dawn's own warnings, which its Vulkan backend writes to stderr directly (README, "GPU"). */
function emu2Lines(stderr: string): string {
  return stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("Warning: ") && !/^\s+at /.test(l))
    .join("\n");
}

// A directory searched before the system's, holding an empty libvulkan.so.1: the dynamic linker stops there, so
// for this process the Vulkan loader is as good as not installed.
const hidden = mkdtempSync(join(tmpdir(), "emu2-no-vulkan-"));
writeFileSync(join(hidden, "libvulkan.so.1"), "");
const noLoader = { LD_LIBRARY_PATH: hidden };

test("without a usable Vulkan loader: one line naming the package to install, exit 1; --cpu-fallback runs on the CPU instead", () => {
  const r = emu2([...ask, "--device", "webgpu"], { env: noLoader });
  assert.equal(r.status, 1, r.stderr);
  const lines = emu2Lines(r.stderr);
  assert.ok(oneLine(lines), lines);
  assert.match(lines, /Vulkan loader libvulkan\.so\.1 cannot be loaded .*libvulkan1.*NVIDIA.*--device cpu/);
  assert.equal(r.stdout, "");
  const cpu = emu2(ask);
  // Without -q, so the fallback notice is shown.
  const fallback = emu2([...ask.filter((a) => a !== "-q"), "--device", "webgpu", "--cpu-fallback"], { env: noLoader });
  assert.equal(fallback.status, 0, fallback.stderr);
  assert.equal(fallback.stdout, cpu.stdout);
  assert.match(emu2Lines(fallback.stderr), /^emu2: WebGPU is not available: .*; running on the CPU$/m);
});

test("an adapter index this machine does not have: one line, exit 1", () => {
  const r = emu2([...ask, "--device", "webgpu", "--device-id", "7"]);
  assert.equal(r.status, 1, r.stderr);
  const lines = emu2Lines(r.stderr);
  assert.ok(oneLine(lines), lines);
  let vulkaninfo = true;
  try {
    execFileSync("vulkaninfo", ["--summary"], { stdio: "ignore" });
  } catch {
    vulkaninfo = false;
  }
  assert.match(
    lines,
    vulkaninfo
      ? /--device-id 7: unknown WebGPU adapter index: this machine has \d+ \(see emu2 info --devices\)/
      : /--device-id 7: /,
  );
});

test(
  "info --devices names the CPU and says whether WebGPU and CUDA are usable; --json for scripts",
  { skip: NO_WEBGPU },
  () => {
    const r = emu2(["info", "--devices"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^cpu {5}.+, \d+ cores$/m);
    assert.match(r.stdout, /^webgpu {2}available \(Vulkan\), float16 (yes|no)/m);
    assert.match(r.stdout, /^cuda {4}/m);
    const j = JSON.parse(emu2(["info", "--devices", "--json"]).stdout);
    assert.equal(j.webgpu.available, true);
    const hiddenLoader = JSON.parse(emu2(["info", "--devices", "--json"], { env: noLoader }).stdout);
    assert.equal(hiddenLoader.webgpu.available, false);
    assert.match(hiddenLoader.webgpu.reason, /libvulkan1/);
    const usage = emu2(["info"]);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /name a model package folder, or pass --devices/);
  },
);

test(
  "--device-map splits the decoder across the CPU and WebGPU (part1=webgpu, and --device webgpu with part0=cpu): the answer is the whole decoder's on the CPU",
  { skip: NO_WEBGPU },
  () => {
    const question = ["chat", "-q", "--greedy", "-n", "6", "-p", "Describe a long and winding road."];
    const whole = emu2([...question, "-m", chat]);
    assert.equal(whole.status, 0, whole.stderr);
    const split = resolve(packageDir("emu2-chat-tiny-split"));
    for (const placement of [
      ["--device-map", "part0=cpu,part1=webgpu"],
      ["--device", "webgpu", "--device-map", "part0=cpu"],
    ]) {
      const r = emu2([...question, "-m", split, ...placement]);
      assert.equal(r.status, 0, emu2Lines(r.stderr));
      assert.equal(r.stdout, whole.stdout, placement.join(" "));
    }
  },
);

const NO_LAYER =
  NO_WEBGPU || (deviceSelectLayerActive() ? false : "skipped: Mesa's device-select layer is not active here");

test("--device-id 0 through Mesa's device-select layer: the same answer as the CPU", { skip: NO_LAYER }, () => {
  // The layer lists what it enumerates on stderr with MESA_VK_DEVICE_SELECT_DEBUG: it is in emu2's Vulkan instance.
  const r = emu2([...ask, "--device", "webgpu", "--device-id", "0"], { env: { MESA_VK_DEVICE_SELECT_DEBUG: "1" } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^selectable devices:$/m);
  assert.equal(r.stdout, emu2(ask).stdout);
});

test(
  "a MESA_VK_DEVICE_SELECT of the user's that names a device this machine lacks: one line, exit 1",
  { skip: NO_LAYER },
  () => {
    const r = emu2([...ask, "--device", "webgpu"], { env: { MESA_VK_DEVICE_SELECT: "1234:5678" } });
    assert.equal(r.status, 1, r.stderr);
    const lines = emu2Lines(r.stderr);
    assert.ok(oneLine(lines), lines);
    assert.match(
      lines,
      /^emu2: MESA_VK_DEVICE_SELECT=1234:5678 names no Vulkan device of this machine \(it has: .+\); .*correct or unset it$/,
    );
  },
);

// Two Vulkan adapters on a machine without GPUs: the loader given lavapipe's driver manifest twice enumerates two
// llvmpipe devices of the same vendor:device (and lavapipe has no PCI address).
const LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json";
const twice = mkdtempSync(join(tmpdir(), "emu2-two-lavapipe-"));
const twoLavapipe = { VK_DRIVER_FILES: `${join(twice, "a.json")}:${join(twice, "b.json")}` };
if (existsSync(LAVAPIPE_ICD)) for (const name of ["a.json", "b.json"]) copyFileSync(LAVAPIPE_ICD, join(twice, name));

test(
  "two adapters: info --devices lists both; --device-id 1 is refused with the reason, with and without the device-select layer",
  { skip: NO_LAYER || (existsSync(LAVAPIPE_ICD) ? false : `skipped: no ${LAVAPIPE_ICD}`) },
  () => {
    const listed = JSON.parse(emu2(["info", "--devices", "--json"], { env: twoLavapipe }).stdout);
    assert.equal(listed.webgpu.adapters.length, 2);
    const twins = emu2([...ask, "--device", "webgpu", "--device-id", "1"], { env: twoLavapipe });
    assert.equal(twins.status, 1, twins.stderr);
    assert.ok(oneLine(emu2Lines(twins.stderr)), twins.stderr);
    assert.match(
      emu2Lines(twins.stderr),
      /^emu2: --device-id 1: adapters 0 and 1 are the same model \(llvmpipe .*, 10005:0\) and the driver reports no PCI address/,
    );
    const hidden = { ...twoLavapipe, VK_LOADER_LAYERS_DISABLE: "VK_LAYER_MESA_device_select" };
    const noLayer = emu2([...ask, "--device", "webgpu", "--device-id", "1"], { env: hidden });
    assert.equal(noLayer.status, 1, noLayer.stderr);
    assert.ok(oneLine(emu2Lines(noLayer.stderr)), noLayer.stderr);
    assert.match(
      emu2Lines(noLayer.stderr),
      /^emu2: --device-id 1: choosing a WebGPU adapter needs Mesa's device-select Vulkan layer, which is not active here \(disabled by VK_LOADER_LAYERS_DISABLE=VK_LAYER_MESA_device_select\)/,
    );
  },
);
