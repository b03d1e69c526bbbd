#!/usr/bin/env bash
# Packs @bpfhook/sdk from this repository into vendor/, where package.json's
# "file:vendor/bpfhook-sdk-0.1.0.tgz" finds it: the plugin then installs the
# SDK exactly as a registry install would give it (only what the SDK's
# "files" ships: dist/, include/, native/hook sources), never the workspace.
# npm pack is deterministic (fixed mtimes, sorted entries): the same SDK
# sources give the same tarball. The lockfile records the tarball's sha512;
# this script writes the packed one's there, so `npm ci` installs exactly it
# (npm would otherwise install what its cache holds under the old sha512, or
# refuse with EINTEGRITY). After an SDK change the lockfile changes with it.
# SDK_DIR overrides where the SDK is (default: ../../sdk, built with tsc -b).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sdk="${SDK_DIR:-$here/../../sdk}"
if [ ! -f "$sdk/dist/index.js" ]; then
  echo "pack-sdk: $sdk/dist is not built (run 'npm run build' at the repository root)" >&2
  exit 1
fi
mkdir -p "$here/vendor"
(cd "$sdk" && npm pack --silent --pack-destination "$here/vendor" >/dev/null)
tarball="$here/vendor/bpfhook-sdk-0.1.0.tgz"
node - "$here/package-lock.json" "$tarball" <<'JS'
const fs = require("node:fs");
const crypto = require("node:crypto");
const [lockPath, tarball] = process.argv.slice(2);
const lock = JSON.parse(fs.readFileSync(lockPath, "utf8"));
const entry = lock.packages && lock.packages["node_modules/@bpfhook/sdk"];
if (!entry) throw new Error(`${lockPath}: no node_modules/@bpfhook/sdk entry (run npm install once)`);
const integrity = "sha512-" + crypto.createHash("sha512").update(fs.readFileSync(tarball)).digest("base64");
if (entry.integrity !== integrity) {
  entry.integrity = integrity;
  fs.writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
}
JS
echo "$tarball"
