// Manifests, prompt files and --demos files go through one YAML reader: the same error, by file, line and column.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readDemos } from "../../src/cli/caption.js";
import { readManifest } from "../../src/model/manifest.js";
import { promptFromFile } from "../../src/prompt/parse.js";
import { PackageError, PromptError } from "../../src/util/errors.js";

test("a YAML syntax error reads the same in a manifest, a prompt file and a demos file", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-yaml-"));
  const broken = "- image: a.png\n  caption: [unclosed\n";
  for (const [name, read, kind] of [
    ["manifest.yaml", readManifest, PackageError],
    ["prompt.yaml", promptFromFile, PromptError],
    ["demos.yaml", readDemos],
  ] as const) {
    const file = join(dir, name);
    writeFileSync(file, broken);
    assert.throws(
      () => read(file),
      (err: Error) => {
        assert.ok(kind === undefined || err instanceof kind, `${name}: ${err.name}`);
        assert.match(
          err.message,
          new RegExp(`^${file.replace(/[.]/g, "\\.")}: YAML error at line \\d+, column \\d+: `),
        );
        assert.ok(!err.message.includes("\n"), err.message);
        return true;
      },
    );
  }
});

test("a demos item of the wrong shape is named by its number, line and column", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-yaml-"));
  writeFileSync(join(dir, "a.png"), "");
  const file = join(dir, "demos.yaml");
  writeFileSync(file, "- image: a.png\n  caption: fine\n- image: a.png\n  captoin: typo\n");
  assert.throws(
    () => readDemos(file),
    /demos\.yaml: item 2 \(line 3, column 3\): expected \{image: path, caption: text\}/,
  );
});
