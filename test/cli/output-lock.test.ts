import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { lockPath, OutputLock } from "../../src/cli/output-lock.js";

const output = () => join(mkdtempSync(join(tmpdir(), "emu2-lock-")), "out.jsonl");

test("a claim is a lock file beside the output holding the owner's pid, removed on release", () => {
  const out = output();
  const lock = OutputLock.acquire(out);
  assert.equal(readFileSync(lockPath(out), "utf8"), `${process.pid}\n`);
  lock.release();
  assert.equal(existsSync(lockPath(out)), false);
});

test("a lock held by a live process refuses the claim, naming the pid and the lock file", async () => {
  const out = output();
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
  try {
    writeFileSync(lockPath(out), `${child.pid}\n`);
    assert.throws(
      () => OutputLock.acquire(out),
      new RegExp(`out\\.jsonl is being written by another run \\(pid ${child.pid}\\).*out\\.jsonl\\.lock`),
    );
    assert.equal(readFileSync(lockPath(out), "utf8"), `${child.pid}\n`);
  } finally {
    child.kill();
  }
});

test("a stale lock (its owner is dead, or it holds no pid) is taken over", () => {
  const out = output();
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  }).stdout;
  for (const content of [`${dead}\n`, "garbage"]) {
    writeFileSync(lockPath(out), content);
    const lock = OutputLock.acquire(out);
    assert.equal(readFileSync(lockPath(out), "utf8"), `${process.pid}\n`);
    lock.release();
  }
});

test("release leaves a lock that another process has taken alone", () => {
  const out = output();
  const lock = OutputLock.acquire(out);
  writeFileSync(lockPath(out), "1\n");
  lock.release();
  assert.equal(readFileSync(lockPath(out), "utf8"), "1\n");
});
