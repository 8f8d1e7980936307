import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { readPngText } from "../../src/diffusion/png.js";
import { spawnSync } from "node:child_process";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const tiny = resolve(packageDir("emu2-tiny"));
const fast = ["-m", tiny, "-q", "--steps", "3"];

test("text-to-image writes PNGs that carry their settings; stdout lists the files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-gen-"));
  const r = emu2([
    "generate",
    "a red car",
    ...fast,
    "--num-images",
    "2",
    "--seed",
    "7",
    "-o",
    join(dir, "car-{i}.png"),
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n"), [join(dir, "car-0.png"), join(dir, "car-1.png")]);
  const png = readFileSync(join(dir, "car-1.png"));
  const meta = await sharp(png).metadata();
  assert.equal(meta.width, 128);
  const text = readPngText(png);
  assert.equal(text.prompt, "a red car");
  assert.equal(text.seed, "8");
  assert.equal(text.steps, "3");
  assert.equal(text.model, "emu2-tiny");
});

test("the same seed gives the same image; -o - writes the PNG to stdout", () => {
  const a = spawnSync(process.execPath, [BIN, "generate", "a red car", ...fast, "--seed", "3", "-o", "-"]);
  const dir = mkdtempSync(join(tmpdir(), "emu2-gen-"));
  const b = emu2(["generate", "a red car", ...fast, "--seed", "3", "-o", join(dir, "b.png"), "--json"]);
  assert.equal(a.status, 0, a.stderr.toString());
  assert.equal(JSON.parse(b.stdout)[0].seed, 3);
  assert.ok(a.stdout.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])));
  // Same prompt, seed and settings: the same pixels (the text chunks are the same too).
  assert.ok(a.stdout.equals(readFileSync(join(dir, "b.png"))));
});

test("image-only autoencoding, reference images, and grounded YAML prompts", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-gen-"));
  const auto = emu2(["generate", "--image", "fixtures/images/night.jpg", ...fast, "-o", join(dir, "auto.png")]);
  assert.equal(auto.status, 0, auto.stderr);
  assert.equal(readPngText(readFileSync(join(dir, "auto.png"))).mode, "autoencode");
  const edit = emu2([
    "generate",
    "<image> wearing a red hat on the beach.",
    "--image",
    "fixtures/images/blocks.png",
    ...fast,
    "-o",
    join(dir, "edit.png"),
  ]);
  assert.equal(edit.status, 0, edit.stderr);
  const grounded = emu2(["generate", "-f", "fixtures/prompts/grounded.yaml", ...fast, "-o", join(dir, "grounded.png")]);
  assert.equal(grounded.status, 0, grounded.stderr);
});

test("without -m, generate draws with the embedded emu2-toy (64x64) and says so on stderr", async () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-gen-"));
  const r = emu2(["generate", "two red circles", "--steps", "3", "-o", join(dir, "toy.png")], {
    env: { EMU2_MODEL: "" },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /using the embedded package emu2-toy/);
  const png = readFileSync(join(dir, "toy.png"));
  assert.equal((await sharp(png).metadata()).width, 64);
  assert.equal(readPngText(png).model, "emu2-toy");
});

test("a package without a visual decoder cannot generate: one line, exit 2", () => {
  const r = emu2(["generate", "a red car", "-m", packageDir("emu2-chat-tiny"), "-q"]);
  assert.equal(r.status, 2);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /has no visual decoder/);
});
