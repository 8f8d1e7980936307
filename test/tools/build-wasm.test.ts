import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { assemble, moduleText, WASM_SOURCES } from "../../tools/build-wasm.js";

test("every committed WebAssembly module is its .wat source, freshly assembled", async () => {
  for (const { wat, module, name } of WASM_SOURCES) {
    const fresh = moduleText(wat, name, await assemble(wat));
    assert.equal(
      readFileSync(new URL(`../../${module}`, import.meta.url), "utf8"),
      fresh,
      `${module} differs from ${wat}: run tools/build-wasm.ts`,
    );
  }
});
