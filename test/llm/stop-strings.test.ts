import assert from "node:assert/strict";
import { test } from "node:test";
import { StopStrings, trimAtStop } from "../../src/llm/stop-strings.js";

test("the earliest stop wins; the stop and what follows are trimmed; empty stops are ignored", () => {
  const stops = new StopStrings(["END", "\n\n", ""]);
  assert.equal(stops.find("abc\n\nxyz END"), 3);
  assert.equal(stops.trim("abc END\n\nxyz"), "abc ");
  assert.equal(stops.trim("no stop here"), "no stop here");
  assert.equal(trimAtStop("a</s>b", ["</s>"]), "a");
  assert.ok(new StopStrings([""]).empty);
});

test("a stream holds back exactly the tail that may still become a stop", () => {
  const stops = new StopStrings(["<END>", "xyz"]);
  assert.equal(stops.settledLength("hello <EN"), "hello ".length);
  assert.equal(stops.settledLength("hello <"), "hello ".length);
  assert.equal(stops.settledLength("hello xy"), "hello ".length);
  assert.equal(stops.settledLength("hello x"), "hello ".length);
  assert.equal(stops.settledLength("hello <E!"), "hello <E!".length);
  assert.equal(stops.settledLength("hello <END> more"), "hello ".length);
});
