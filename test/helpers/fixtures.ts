// Where the tiny packages and goldens are: fixtures/ in the checkout, or EMU2_FIXTURES (CI points it at packages the
// PyTorch reference has just rebuilt, so the parity tests check a fresh export, not only the committed one).
import { existsSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = process.env.EMU2_FIXTURES ?? "fixtures";

export function packageDir(name: string): string {
  return join(FIXTURES, "models", name);
}

export function goldenDir(name: string, part: string): string {
  return join(FIXTURES, "golden", name, part);
}

export const TINY_PACKAGES = ["emu2-tiny", "emu2-chat-tiny"].filter((name) =>
  existsSync(join(packageDir(name), "manifest.yaml")),
);
