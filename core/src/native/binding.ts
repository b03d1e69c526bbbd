/**
 * The one place that finds and loads the native addon. Everything else
 * imports `native` from here and sees only the typed surface in addon-types.ts.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { BpfhookError } from "../errors.js";
import type { NativeAddon } from "./addon-types.js";

function candidates(): string[] {
  const fromEnv = process.env.BPFHOOK_ADDON;
  // dist/native/binding.js -> ../../build/...
  const pkgRoot = path.resolve(__dirname, "..", "..");
  const list = [
    path.join(pkgRoot, "build", "Release", "bpfhook_core.node"),
    path.join(pkgRoot, "build", "bpfhook_core.node"),
    path.join(pkgRoot, "build", "addon", "bpfhook_core.node"),
  ];
  return fromEnv ? [fromEnv, ...list] : list;
}

let loaded: NativeAddon | undefined;

export function native(): NativeAddon {
  if (loaded) return loaded;
  const tried = candidates();
  const found = tried.find((p) => existsSync(p));
  if (!found) {
    throw new BpfhookError(
      "NATIVE_NOT_BUILT",
      `native addon not built: looked in ${tried.join(", ")}; run 'npm run build:native'`,
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addon = require(found) as NativeAddon;
  addon.setErrorClass(BpfhookError);
  loaded = addon;
  return addon;
}
