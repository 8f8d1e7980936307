// One wording for a YAML document that fails its zod schema (manifests, eval task configs): the first problem, named
// by its field path, with the value found there, and how many more problems there are.
import type { z } from "zod";

/** A value as an error message quotes it: JSON, cut to 40 characters. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** "field a.b: expected ... (found ...)" for the first issue of a failed parse of `raw`. */
export function describeSchemaError(error: z.ZodError, raw: unknown): string {
  const issue = error.issues[0];
  const field = issue.path.map(String).join(".") || "(top level)";
  let detail = issue.message;
  if (issue.code === "unrecognized_keys") {
    detail = `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  } else if (
    issue.code === "invalid_type" ||
    issue.code === "invalid_value" ||
    issue.code === "too_small" ||
    issue.code === "too_big"
  ) {
    detail = `${issue.message.replace(/^Invalid input: /, "")} (found ${describeValue(valueAt(raw, issue.path))})`;
  }
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : "";
  return `field ${field}: ${detail}${more}`;
}
