// --device-id N for WebGPU: from vulkaninfo's report to the variables of Mesa's device-select layer that leave Dawn
// only adapter N, and the one-line refusals where N cannot be chosen. Pure functions over recorded text: no Vulkan
// needed. The two-adapter reports with different or PCI-addressed GPUs are the recorded lavapipe report with the
// fields the mapping reads rewritten (this machine has no such GPUs); nothing here runs on two real GPUs.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { webGpuAdapterVariables } from "../../src/model/devices.js";
import { parseVulkanInfo } from "../../src/model/webgpu.js";

// Recorded on the project machine with Mesa's lavapipe listed twice (a.json and b.json: copies of
// /usr/share/vulkan/icd.d/lvp_icd.json), so the loader enumerates two llvmpipe devices with the same vendor:device:
//   VK_DRIVER_FILES=/tmp/icd2/a.json:/tmp/icd2/b.json vulkaninfo 2>/dev/null > fixtures/vulkaninfo/two-lavapipe.txt
const recorded = readFileSync("fixtures/vulkaninfo/two-lavapipe.txt", "utf8");
const [header, rest] = recorded.split(/^(?=GPU0:$)/m);
const gpu0 = rest.slice(0, rest.search(/^GPU1:$/m)).replace(/^GPU0:\n/, "");

interface Rewrite {
  vendorID: string;
  deviceID: string;
  deviceType: string;
  deviceName: string;
  /** domain, bus, device, function as vulkaninfo prints them (decimal) */
  pci?: [number, number, number, number];
}

/** The recorded device section with the fields the mapping reads set as vulkaninfo would print them. */
function section(r: Rewrite): string {
  let s = gpu0;
  for (const key of ["vendorID", "deviceID", "deviceType", "deviceName"] as const) {
    const value = key === "deviceType" ? `PHYSICAL_DEVICE_TYPE_${r[key]}` : r[key];
    s = s.replace(new RegExp(`^(\\t${key}\\s*= ).*$`, "m"), `$1${value}`);
  }
  if (r.pci) {
    const [domain, bus, device, fn] = r.pci;
    s +=
      "VkPhysicalDevicePCIBusInfoPropertiesEXT:\n----------------------------------------\n" +
      `\tpciDomain   = ${domain}\n\tpciBus      = ${bus}\n\tpciDevice   = ${device}\n\tpciFunction = ${fn}\n\n`;
  }
  return s;
}

const report = (...gpus: Rewrite[]) => header + gpus.map((g, i) => `GPU${i}:\n${section(g)}`).join("");

const intel: Rewrite = {
  vendorID: "0x8086",
  deviceID: "0xa7a0",
  deviceType: "INTEGRATED_GPU",
  deviceName: "Intel(R) Graphics (RPL-P)",
  pci: [0, 0, 2, 0],
};
const nvidia: Rewrite = {
  vendorID: "0x10de",
  deviceID: "0x2684",
  deviceType: "DISCRETE_GPU",
  deviceName: "NVIDIA GeForce RTX 4090",
  pci: [0, 1, 0, 0],
};
const h100 = (bus: number): Rewrite => ({
  vendorID: "0x10de",
  deviceID: "0x2330",
  deviceType: "DISCRETE_GPU",
  deviceName: "NVIDIA H100 80GB HBM3",
  pci: [0, bus, 0, 0],
});
const ONLY = { MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: "1" };

test("the recorded two-lavapipe report: two adapters of one vendor:device, no PCI address", () => {
  const adapters = parseVulkanInfo(recorded);
  assert.deepEqual(
    adapters.map((a) => [a.index, a.vulkanIndex, a.vendorId, a.deviceId, a.type, a.pci]),
    [
      [0, 0, 0x10005, 0, "cpu", undefined],
      [1, 1, 0x10005, 0, "cpu", undefined],
    ],
  );
});

test("different GPUs are chosen by vendor:device (hex), the discrete one first as Dawn ranks them, only that one exposed", () => {
  const adapters = parseVulkanInfo(report(intel, nvidia));
  assert.deepEqual(
    adapters.map((a) => [a.name, a.vulkanIndex, a.pci]),
    [
      ["NVIDIA GeForce RTX 4090", 1, { domain: 0, bus: 1, device: 0, function: 0 }],
      ["Intel(R) Graphics (RPL-P)", 0, { domain: 0, bus: 0, device: 2, function: 0 }],
    ],
  );
  assert.deepEqual(webGpuAdapterVariables(0, adapters, true, {}), { MESA_VK_DEVICE_SELECT: "10de:2684", ...ONLY });
  assert.deepEqual(webGpuAdapterVariables(1, adapters, true, {}), { MESA_VK_DEVICE_SELECT: "8086:a7a0", ...ONLY });
});

test("identical GPUs (one vendor:device) are chosen by PCI address through DRI_PRIME's pci- tag, bus in hex", () => {
  // Buses 65 and 193 (0x41, 0xc1), as vulkaninfo prints them.
  const adapters = parseVulkanInfo(report(h100(65), h100(193)));
  assert.deepEqual(webGpuAdapterVariables(0, adapters, true, {}), { DRI_PRIME: "pci-0000_41_00_0", ...ONLY });
  assert.deepEqual(webGpuAdapterVariables(1, adapters, true, {}), { DRI_PRIME: "pci-0000_c1_00_0", ...ONLY });
  // A third GPU of another model is still chosen by its ids.
  const three = parseVulkanInfo(report(h100(65), intel, h100(193)));
  assert.deepEqual(webGpuAdapterVariables(2, three, true, {}), { MESA_VK_DEVICE_SELECT: "8086:a7a0", ...ONLY });
  assert.deepEqual(webGpuAdapterVariables(1, three, true, {}), { DRI_PRIME: "pci-0000_c1_00_0", ...ONLY });
});

test("identical GPUs without a PCI address: index 0 stays Dawn's first, another index is refused with the reason", () => {
  const adapters = parseVulkanInfo(recorded);
  assert.deepEqual(webGpuAdapterVariables(0, adapters, true, {}), {});
  assert.throws(
    () => webGpuAdapterVariables(1, adapters, true, {}),
    /^\w+: --device-id 1: adapters 0 and 1 are the same model \(llvmpipe \(LLVM 15\.0\.6, 256 bits\), 10005:0\) and the driver reports no PCI address \(VK_EXT_pci_bus_info\) to tell them apart$/,
  );
});

test("without the device-select layer: index 0 as before, another refused naming the package or what disabled it", () => {
  const adapters = parseVulkanInfo(report(intel, nvidia));
  assert.deepEqual(webGpuAdapterVariables(0, adapters, false, {}), {});
  assert.throws(
    () => webGpuAdapterVariables(1, adapters, false, {}),
    /^\w+: --device-id 1: choosing a WebGPU adapter needs Mesa's device-select Vulkan layer, which is not active here \(install the package mesa-vulkan-drivers\); or hide the other GPUs from the Vulkan loader \(VK_LOADER_DRIVERS_SELECT\) and pass --device-id 0$/,
  );
  assert.throws(
    () => webGpuAdapterVariables(1, adapters, false, { NODEVICE_SELECT: "1" }),
    /not active here \(disabled by NODEVICE_SELECT=1\);/,
  );
});

test("a user's own MESA_VK_DEVICE_SELECT or DRI_PRIME is kept: checked against the devices, never overridden", () => {
  const adapters = parseVulkanInfo(report(intel, nvidia));
  assert.deepEqual(webGpuAdapterVariables(0, adapters, true, { MESA_VK_DEVICE_SELECT: "8086:a7a0!" }), {});
  assert.throws(
    () => webGpuAdapterVariables(0, adapters, true, { MESA_VK_DEVICE_SELECT: "1234:5678" }),
    /^\w+: MESA_VK_DEVICE_SELECT=1234:5678 names no Vulkan device of this machine \(it has: 10de:2684 NVIDIA GeForce RTX 4090, 8086:a7a0 Intel\(R\) Graphics \(RPL-P\)\); Mesa's device-select layer would quietly use another: correct or unset it$/,
  );
  assert.throws(
    () => webGpuAdapterVariables(0, adapters, true, { MESA_VK_DEVICE_SELECT: "list" }),
    /MESA_VK_DEVICE_SELECT=list: expected <vendorID>:<deviceID> in hex/,
  );
  for (const env of [{ MESA_VK_DEVICE_SELECT: "10de:2684" }, { DRI_PRIME: "1" }]) {
    const [[name, value]] = Object.entries(env);
    assert.deepEqual(webGpuAdapterVariables(0, adapters, true, env), {});
    assert.throws(
      () => webGpuAdapterVariables(1, adapters, true, env),
      new RegExp(
        `^\\w+: --device-id 1: the environment already chooses the Vulkan adapter \\(${name}=${value}\\); unset it to choose with --device-id, or leave --device-id at 0$`,
      ),
    );
  }
});

test("an index past the adapters is unknown, naming a loader variable that hides drivers; no vulkaninfo, only index 0", () => {
  const adapters = parseVulkanInfo(report(intel, nvidia));
  assert.throws(
    () => webGpuAdapterVariables(2, adapters, true, {}),
    /^\w+: --device-id 2: unknown WebGPU adapter index: this machine has 2 \(see emu2 info --devices\)$/,
  );
  assert.throws(
    () => webGpuAdapterVariables(2, adapters, true, { VK_LOADER_DRIVERS_SELECT: "*nvidia*" }),
    /this machine has 2 \(see emu2 info --devices\); VK_LOADER_DRIVERS_SELECT=\*nvidia\* limits the drivers the Vulkan loader uses$/,
  );
  assert.deepEqual(webGpuAdapterVariables(0, undefined, undefined, {}), {});
  assert.throws(
    () => webGpuAdapterVariables(1, undefined, undefined, {}),
    /vulkaninfo, which is not installed \(package vulkan-tools\)$/,
  );
});
