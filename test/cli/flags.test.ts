import assert from "node:assert/strict";
import { test } from "node:test";
import { wholeNumber } from "../../src/cli/flags.js";

test("one whole-number check: digits only, inside the range, a message naming flag, range and value", () => {
  assert.equal(wholeNumber("--steps", "25", { min: 1 }), 25);
  assert.equal(wholeNumber("--threads", "0"), 0);
  assert.equal(wholeNumber("--seed", "9007199254740991"), Number.MAX_SAFE_INTEGER);
  for (const bad of ["", " 3", "3 ", "-1", "1.5", "1e3", "0x10", "three"]) {
    assert.throws(
      () => wholeNumber("--threads", bad),
      new RegExp(
        `^UsageError: --threads: expected a whole number >= 0, got ${JSON.stringify(JSON.stringify(bad)).slice(1, -1).replace(/[.+]/g, "\\$&")}$`,
      ),
    );
  }
  assert.throws(
    () => wholeNumber("--steps", "0", { min: 1 }),
    /^UsageError: --steps: expected a whole number > 0, got "0"$/,
  );
  assert.throws(
    () => wholeNumber("--batch", "9", { min: 1, max: 8 }),
    /--batch: expected a whole number from 1 to 8, got "9"/,
  );
  // Past 2^53-1 a number no longer holds every integer: refused even when it would round into range.
  assert.throws(() => wholeNumber("--seed", "9007199254740992"), /--seed: expected/);
});
