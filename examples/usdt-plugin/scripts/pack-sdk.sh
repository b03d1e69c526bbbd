#!/usr/bin/env bash
# Packs @bpfhook/sdk from this repository into vendor/, where package.json's
# "file:vendor/bpfhook-sdk-0.1.0.tgz" finds it: the plugin then installs the
# SDK exactly as a registry install would give it (only what the SDK's
# "files" ships: dist/, include/, native/hook sources), never the workspace.
# npm pack is deterministic (fixed mtimes, sorted entries): the same SDK
# sources give the same tarball and the lockfile's integrity stays valid, so
# `npm ci` works; after an SDK change run `npm install` to record the new one.
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
ls "$here/vendor"/bpfhook-sdk-*.tgz
