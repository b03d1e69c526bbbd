/**
 * `bpfhook new-plugin DIR`: writes a plugin package that builds and passes
 * its tests with no edit. TypeScript side (definePlugin, a zod schema, a
 * section prefix, a context layout, one custom helper with a signature),
 * native side (a CMake project against the SDK's include folder, built with
 * cmake-js: attach, detach, a `fire` call that runs the attached programs,
 * the helper), a mocha test with @bpfhook/testkit (the contract tests and a
 * program that counts into a map), README, tsconfig, .gitignore.
 *
 * Dependencies: @bpfhook/sdk, @bpfhook/core and @bpfhook/testkit are not on
 * the npm registry, so the package depends on the packages this command
 * runs from by `file:` (npm links them: their build, native addon included,
 * is used as it is). The rest (zod, typescript, mocha, cmake-js) comes from
 * the registry or npm's cache.
 */
import { existsSync, mkdirSync, readdirSync, realpathSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BpfhookError } from "../errors.js";

export interface NewPluginOptions {
  /** The package's folder (created; must be empty or absent). */
  dir: string;
  /** Plugin name (default: the folder's name without a "bpfhook-plugin-" prefix). */
  name?: string;
  /** Attach type id, 4096..65535 (third parties' range; default derived from the name). */
  attachTypeId?: number;
  /** Section prefix (default: the name with "-" as "_"). */
  prefix?: string;
  /** Where @bpfhook/sdk, core and testkit are (default: the packages this CLI runs from). */
  packages?: { sdk: string; core: string; testkit: string };
}

export interface NewPluginResult {
  dir: string;
  name: string;
  packageName: string;
  attachTypeId: number;
  helperId: number;
  prefix: string;
  files: string[];
}

/** Registry dependencies of the package (the versions this repository builds with). */
const REGISTRY_VERSIONS = {
  zod: "^4.6.7",
  typescript: "^7.0.2",
  mocha: "^12.0.3",
  "@types/mocha": "^10.0.10",
  "@types/node": "^20.19.43",
  "cmake-js": "^8.0.0",
} as const;

const NAME = /^[a-z][a-z0-9-]{0,40}$/;
const PREFIX = /^[a-z][a-z0-9_]{0,40}$/;

/** The directory of an installed package, symlinks resolved, found from this module. */
function packageDir(name: string): string {
  try {
    return path.dirname(realpathSync(require.resolve(`${name}/package.json`)));
  } catch (cause) {
    throw new BpfhookError(
      "NOT_FOUND",
      `new-plugin: package ${name} not found from ${__dirname}; run bpfhook from a bpfhook checkout (npm run build) or install ${name} beside @bpfhook/core`,
      { cause },
    );
  }
}

/** A stable id in 4096..65535 from the name, so two scaffolded plugins rarely clash. */
function idFromName(name: string): number {
  let h = 2166136261;
  for (const c of Buffer.from(name)) h = Math.imul(h ^ c, 16777619) >>> 0;
  return 4200 + (h % 50000);
}

export function scaffoldPlugin(opts: NewPluginOptions): NewPluginResult {
  const dir = path.resolve(opts.dir);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new BpfhookError("BAD_ARGUMENT", `new-plugin: ${dir} exists and is not empty`);
  }
  const name = opts.name ?? path.basename(dir).replace(/^bpfhook-plugin-/, "");
  if (!NAME.test(name)) {
    throw new BpfhookError(
      "BAD_ARGUMENT",
      `new-plugin: name '${name}' must be lowercase letters, digits and '-', starting with a letter (41 at most); give --name`,
    );
  }
  const prefix = opts.prefix ?? name.replace(/-/g, "_");
  if (!PREFIX.test(prefix)) {
    throw new BpfhookError("BAD_ARGUMENT", `new-plugin: prefix '${prefix}' must be lowercase letters, digits and '_', starting with a letter`);
  }
  const attachTypeId = opts.attachTypeId ?? idFromName(name);
  if (!Number.isInteger(attachTypeId) || attachTypeId < 4096 || attachTypeId > 65535) {
    throw new BpfhookError("BAD_ARGUMENT", `new-plugin: attach type id ${attachTypeId} must be an integer in 4096..65535 (third parties' range)`);
  }
  const helperId = 10000 + attachTypeId;
  const packages = opts.packages ?? {
    sdk: packageDir("@bpfhook/sdk"),
    core: packageDir("@bpfhook/core"),
    testkit: packageDir("@bpfhook/testkit"),
  };
  const packageName = `bpfhook-plugin-${name}`;
  const c = name.replace(/-/g, "_");
  const v: Vars = { name, c, C: c.toUpperCase(), prefix, attachTypeId, helperId, packageName, packages };

  const files: Record<string, string> = {
    "package.json": packageJson(v),
    "tsconfig.json": tsconfig(),
    ".gitignore": "node_modules/\ndist/\nbuild/\n*.tsbuildinfo\n",
    "README.md": readme(v),
    "src/index.ts": tsIndex(v),
    "native/CMakeLists.txt": cmake(v),
    "native/plugin.cpp": nativePlugin(v),
    "test/plugin.test.ts": testFile(v),
  };
  for (const [rel, text] of Object.entries(files)) {
    const file = path.join(dir, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  return { dir, name, packageName, attachTypeId, helperId, prefix, files: Object.keys(files) };
}

interface Vars {
  name: string;
  /** The name as a C identifier. */
  c: string;
  C: string;
  prefix: string;
  attachTypeId: number;
  helperId: number;
  packageName: string;
  packages: { sdk: string; core: string; testkit: string };
}

function packageJson(v: Vars): string {
  const manifest = {
    name: v.packageName,
    version: "0.1.0",
    description: `bpfhook plugin: attach type '${v.name}' (programs in ${v.prefix}/<channel>)`,
    license: "MIT",
    main: "dist/src/index.js",
    types: "dist/src/index.d.ts",
    files: ["dist/src", "native", "build/Release/*.so"],
    bpfhook: { plugin: "./dist/src/index.js" },
    scripts: {
      build: "npm run build:native && npm run build:ts",
      "build:native": "cmake-js build -d native -O build --CDCMAKE_BUILD_TYPE=Release",
      "build:ts": "tsc -p .",
      test: "mocha --timeout 60000 'dist/test/**/*.test.js'",
    },
    // @bpfhook/* are not on the registry: file: links to a bpfhook checkout
    // (or wherever they are installed). Replace with versions once published.
    dependencies: {
      "@bpfhook/sdk": `file:${v.packages.sdk}`,
      zod: REGISTRY_VERSIONS.zod,
    },
    devDependencies: {
      "@bpfhook/core": `file:${v.packages.core}`,
      "@bpfhook/testkit": `file:${v.packages.testkit}`,
      "@types/mocha": REGISTRY_VERSIONS["@types/mocha"],
      "@types/node": REGISTRY_VERSIONS["@types/node"],
      "cmake-js": REGISTRY_VERSIONS["cmake-js"],
      mocha: REGISTRY_VERSIONS.mocha,
      typescript: REGISTRY_VERSIONS.typescript,
    },
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

function tsconfig(): string {
  return `${JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        lib: ["ES2023"],
        types: ["node", "mocha"],
        strict: true,
        declaration: true,
        sourceMap: true,
        esModuleInterop: true,
        skipLibCheck: true,
        rootDir: ".",
        outDir: "dist",
      },
      include: ["src", "test"],
    },
    null,
    2,
  )}\n`;
}

function tsIndex(v: Vars): string {
  return `/**
 * The ${v.name} plugin: named event channels. A program in section
 * \`${v.prefix}/<channel>\` (or a config entry \`{ type: "${v.name}", channel }\`)
 * attaches to <channel>; \`fire(host, channel, value)\` runs the channel's
 * programs with a ${v.name}_event as context. Programs may call the custom
 * helper ${v.c}_event_seq() (id ${v.helperId}).
 */
import path from "node:path";
import { z } from "zod";
import { definePlugin, PLUGIN_ABI_VERSION, StructWriter } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, HelperDecl, NativeCaller } from "@bpfhook/sdk";

/** Private data: the channel a program attaches to. Checked before anything native runs. */
export const schema = z.object({
  channel: z
    .string()
    .min(1, "channel must not be empty")
    .max(255)
    .regex(/^[^\\0]+$/, "channel must not contain NUL"),
});
export type ${pascal(v.c)}PrivateData = z.infer<typeof schema>;

/**
 * The context every run gets (struct ${v.c}_event in native/plugin.cpp):
 * u64 value at 0, u64 seq at 8. Programs may read it, not write it.
 */
export const EVENT_LAYOUT: ContextLayout = Object.freeze({
  name: "${v.name} event",
  size: 16,
  readable: Object.freeze([{ offset: 0, size: 16 }]),
  writable: Object.freeze([]),
});

export const ATTACH_TYPE: AttachTypeSpec = Object.freeze({
  id: ${v.attachTypeId},
  name: "${v.name}",
  sectionPrefixes: Object.freeze(["${v.prefix}"]),
  contextLayout: EVENT_LAYOUT,
});

/** The custom helper the native piece registers; the verifier checks calls against its signature. */
export const EVENT_SEQ_HELPER: HelperDecl = {
  id: ${v.helperId},
  name: "${v.c}_event_seq",
  description: "the sequence number of the event being handled (0 outside a fire)",
  signature: { args: [], ret: "scalar" },
};

export const plugin = definePlugin<${pascal(v.c)}PrivateData>({
  name: "${v.name}",
  version: "0.1.0",
  abiVersion: PLUGIN_ABI_VERSION,
  attachTypes: [ATTACH_TYPE],
  privateDataSchema: schema,
  nativeLibrary: path.resolve(__dirname, "..", "..", "build", "Release", "libbpfhook_${v.c}.so"),
  helpers: [EVENT_SEQ_HELPER],
  parseSection: (_type, rest) => ({ channel: rest }),
  parseConfig: (_type, entry) => ({ channel: entry.channel }),
  encode: ({ data }) => new StructWriter().cstring(data.channel).finish(),
  describe: ({ data }) => \`${v.name} channel '\${data.channel}'\`,
});

export default plugin;

/**
 * Fires \`channel\` once with \`value\` (the native call "fire"): runs every
 * program attached to it, in this process. Returns how many ran.
 */
export function fire(host: NativeCaller, channel: string, value: bigint | number = 0): number {
  schema.parse({ channel });
  const input = new StructWriter().u64(value).cstring(channel).finish();
  return host.callNative("${v.name}", "fire", input, 0).rc;
}

/** Attachments alive in the native piece (the native call "attachments"). */
export function attachmentCount(host: NativeCaller): number {
  return host.callNative("${v.name}", "attachments", new Uint8Array(0), 0).rc;
}
`;
}

function pascal(s: string): string {
  return s.replace(/(^|_)([a-z0-9])/g, (_m, _u: string, ch: string) => ch.toUpperCase());
}

function cmake(v: Vars): string {
  return `cmake_minimum_required(VERSION 3.15)
project(bpfhook_plugin_${v.c} CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
# Only bh_plugin_entry is exported (BH_PLUGIN_EXPORT); the rest stays inside.
set(CMAKE_CXX_VISIBILITY_PRESET hidden)
add_compile_options(-O2 -Wall -Wextra)

# The SDK's C headers (bpfhook/plugin.h), from the installed @bpfhook/sdk;
# -DBPFHOOK_SDK_INCLUDE=... overrides.
if(NOT BPFHOOK_SDK_INCLUDE)
  execute_process(
    COMMAND node -p "require('path').join(require('path').dirname(require.resolve('@bpfhook/sdk/package.json')), 'include')"
    WORKING_DIRECTORY \${CMAKE_CURRENT_SOURCE_DIR}/..
    OUTPUT_VARIABLE BPFHOOK_SDK_INCLUDE
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE sdk_rc)
  if(NOT sdk_rc EQUAL 0 OR NOT EXISTS "\${BPFHOOK_SDK_INCLUDE}/bpfhook/plugin.h")
    message(FATAL_ERROR "@bpfhook/sdk not found (npm install first), or set -DBPFHOOK_SDK_INCLUDE")
  endif()
endif()

# A plain shared library (not a Node addon): the core dlopens it, in the
# Node process (embedded mode) or in the target (agent mode).
add_library(bpfhook_${v.c} SHARED plugin.cpp)
target_include_directories(bpfhook_${v.c} PRIVATE \${BPFHOOK_SDK_INCLUDE})
`;
}

function nativePlugin(v: Vars): string {
  return `// The ${v.name} plugin's native piece: the C ABI of bpfhook/plugin.h.
// Private data: the channel name, NUL-terminated. call("fire") runs every
// program attached to a channel; the helper ${v.c}_event_seq (id ${v.helperId})
// gives a program the sequence number of the event it handles.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bpfhook/plugin.h"

namespace {

// bpfhook/vm.h's BH_HELPER_ARGS_SCALAR: the helper dereferences no argument,
// so checked-mode programs may call it too.
constexpr uint32_t kHelperArgsScalar = 0x2u;
constexpr uint32_t kEventSeqHelperId = ${v.helperId};

// The context of every run (EVENT_LAYOUT in src/index.ts: 16 bytes, read-only).
struct Event {
  uint64_t value;
  uint64_t seq;
};

struct Attachment {
  int id;
  bh_prog_run_fn run;
  void *prog;
};

struct State {
  std::shared_mutex mu;  // fire reads; attach and detach write
  std::map<std::string, std::vector<Attachment>, std::less<>> channels;
  int next_id = 0;
  size_t live = 0;
  uint64_t seq = 0;  // guarded by mu (taken exclusively to bump it)
};

// The event being handled on this thread, for the helper: helpers get no
// state pointer, and fire runs programs on the calling thread.
thread_local const Event *t_current = nullptr;

int fail(char *err, size_t err_len, int rc, const char *msg) {
  if (err != nullptr && err_len > 0) snprintf(err, err_len, "${v.name}: %s", msg);
  return rc;
}

uint64_t event_seq_helper(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return t_current != nullptr ? t_current->seq : 0;
}

int plugin_init(void **state, const bh_host *, char *, size_t) {
  *state = new State();
  return 0;
}

void plugin_fini(void *state) { delete static_cast<State *>(state); }

int plugin_register_helpers(void *, bh_register_helper_fn reg, void *reg_ctx) {
  return reg(reg_ctx, kEventSeqHelperId, "${v.c}_event_seq", event_seq_helper, kHelperArgsScalar);
}

int plugin_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog) || opts->run == nullptr) {
    return fail(err, err_len, -EINVAL, "attach options too old or without a program");
  }
  if (opts->attach_type != ${v.attachTypeId}u) return fail(err, err_len, -EINVAL, "unknown attach type");
  const char *data = static_cast<const char *>(opts->private_data);
  const size_t n = opts->private_data_len;
  if (data == nullptr || n < 2 || data[n - 1] != '\\0' || strlen(data) != n - 1) {
    return fail(err, err_len, -EINVAL, "private data must be a non-empty NUL-terminated channel name");
  }
  std::unique_lock<std::shared_mutex> lock(s->mu);
  const int id = s->next_id++;
  s->channels[std::string(data, n - 1)].push_back({id, opts->run, opts->prog});
  s->live++;
  return id;
}

int plugin_detach(void *state, int id) {
  auto *s = static_cast<State *>(state);
  std::unique_lock<std::shared_mutex> lock(s->mu);
  for (auto it = s->channels.begin(); it != s->channels.end(); ++it) {
    auto &list = it->second;
    for (auto a = list.begin(); a != list.end(); ++a) {
      if (a->id != id) continue;
      list.erase(a);
      if (list.empty()) s->channels.erase(it);
      s->live--;
      return 0;
    }
  }
  return -ENOENT;  // unknown or already detached
}

// call("fire"): in = u64 value, then the channel name NUL-terminated.
// Returns the number of programs run, or the first program's fault.
int64_t fire(State *s, const void *in, size_t in_len) {
  const char *bytes = static_cast<const char *>(in);
  if (bytes == nullptr || in_len < sizeof(uint64_t) + 2 || bytes[in_len - 1] != '\\0') return -EINVAL;
  Event ev{};
  memcpy(&ev.value, bytes, sizeof ev.value);
  const char *channel = bytes + sizeof(uint64_t);
  {
    std::unique_lock<std::shared_mutex> lock(s->mu);
    ev.seq = ++s->seq;
  }
  // Detach waits for this lock: once it returns, no run of that attachment is in flight.
  std::shared_lock<std::shared_mutex> lock(s->mu);
  auto it = s->channels.find(channel);
  if (it == s->channels.end()) return 0;
  int64_t ran = 0;
  int rc = 0;
  t_current = &ev;
  for (const Attachment &a : it->second) {
    uint64_t r0 = 0;
    // A private copy each run: the context is read-only for programs, but
    // one program must never see another's leftovers.
    Event ctx = ev;
    const int run_rc = a.run(a.prog, &ctx, sizeof ctx, &r0);
    if (run_rc < 0 && rc == 0) rc = run_rc;
    if (run_rc >= 0) ran++;
  }
  t_current = nullptr;
  return rc < 0 ? rc : ran;
}

int64_t plugin_call(void *state, const char *name, const void *in, size_t in_len, void *, size_t) {
  auto *s = static_cast<State *>(state);
  if (strcmp(name, "fire") == 0) return fire(s, in, in_len);
  if (strcmp(name, "attachments") == 0) {
    std::shared_lock<std::shared_mutex> lock(s->mu);
    return static_cast<int64_t>(s->live);
  }
  return -ENOSYS;
}

bh_plugin_ops make_ops() {
  bh_plugin_ops ops{};
  ops.sz = sizeof ops;  // the core reads only the fields this covers
  ops.abi_version = BH_PLUGIN_ABI_VERSION;
  ops.name = "${v.name}";  // must equal the TypeScript side's name
  ops.init = plugin_init;
  ops.fini = plugin_fini;
  ops.attach = plugin_attach;
  ops.detach = plugin_detach;
  ops.register_helpers = plugin_register_helpers;
  ops.call = plugin_call;
  return ops;
}

const bh_plugin_ops kOps = make_ops();

}  // namespace

extern "C" BH_PLUGIN_EXPORT const bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }
`;
}

function testFile(v: Vars): string {
  return `/**
 * The ${v.name} plugin's tests: the contract every bpfhook plugin must pass
 * (@bpfhook/testkit), and a real program that counts events into a map.
 */
import { strict as assert } from "node:assert";
import path from "node:path";
import { loadProgram, readMap, requireClang, runContractTests, withRuntime } from "@bpfhook/testkit";
import { attachmentCount, fire } from "../src/index.js";

/** This package's folder (tests run from dist/test). */
const pluginDir = path.resolve(__dirname, "..", "..");

runContractTests(describe, {
  plugin: pluginDir,
  attachType: "${v.name}",
  validData: { channel: "contract" },
  invalidData: [
    { data: { channel: "" }, field: "channel" },
    { data: { channel: 7 }, field: "channel" },
  ],
  trigger: (rt, times) => {
    for (let i = 0; i < times; i++) fire(rt, "contract", i);
  },
  threads: { skip: "events are fired from TypeScript only; add a native event source to test firing from threads" },
  agent: { skip: "events are fired from TypeScript (call 'fire'), which agent mode does not reach; add a native event source and a target program" },
});

describe("${v.name}: a program counts events into a map", () => {
  before(function () {
    requireClang(this);
  });

  it("counts every event of its channel, sums their values, and reads the helper", () =>
    withRuntime({ plugins: [pluginDir] }, async (rt) => {
      const { object, program } = loadProgram(rt, {
        c: \`
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct ${v.c}_event { __u64 value; __u64 seq; };
/* The plugin's custom helper (id ${v.helperId}). */
static __u64 (*${v.c}_event_seq)(void) = (void *)${v.helperId};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps"); /* 0: events, 1: sum of values, 2: last seq */

static void add(__u32 key, __u64 n) {
  __u64 *v = bpf_map_lookup_elem(&counts, &key);
  if (v) __sync_fetch_and_add(v, n);
}

SEC("${v.prefix}/ticks")
int count_ticks(struct ${v.c}_event *ev) {
  add(0, 1);
  add(1, ev->value);
  __u32 key = 2;
  __u64 seq = ${v.c}_event_seq();
  bpf_map_update_elem(&counts, &key, &seq, BPF_ANY);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
\`,
      });
      const link = await program.attach(); // by its section: channel "ticks"
      assert.equal(attachmentCount(rt), 1);
      for (let i = 1; i <= 5; i++) assert.equal(fire(rt, "ticks", i * 10), 1, "one program ran");
      assert.equal(fire(rt, "other", 1000), 0, "another channel runs nothing");
      assert.equal(readMap(object, "counts", 0), 5n, "5 events counted");
      assert.equal(readMap(object, "counts", 1), 150n, "their values summed");
      assert.equal(readMap(object, "counts", 2), 5n, "the helper gave the sequence number of the last event it handled");
      link.detach();
      assert.equal(attachmentCount(rt), 0, "nothing left attached natively");
      assert.equal(fire(rt, "ticks", 1), 0);
    }));
});
`;
}

function readme(v: Vars): string {
  return `# ${v.packageName}

A bpfhook attach plugin, scaffolded by \`bpfhook new-plugin\`: attach type
\`${v.name}\` (id ${v.attachTypeId}), programs in sections \`${v.prefix}/<channel>\`
or config entries \`{ type: "${v.name}", channel: "..." }\`. \`fire(runtime,
channel, value)\` runs a channel's programs with a 16-byte context
(\`u64 value; u64 seq\`); programs may call the custom helper
\`${v.c}_event_seq()\` (id ${v.helperId}).

| command | what |
| --- | --- |
| \`npm install --prefer-offline --no-audit --no-fund\` | dependencies (see below) |
| \`npm run build\` | the native piece (cmake-js, \`build/Release/libbpfhook_${v.c}.so\`) and the TypeScript (\`dist/\`) |
| \`npm test\` | the contract tests (@bpfhook/testkit) and a program that counts events (needs clang and libbpf-dev) |

## Layout

- \`src/index.ts\`: the TypeScript side (\`definePlugin\`): the zod schema of the
  private data, the section prefix, the context layout the verifier proves
  programs against, the helper's signature, \`encode\` (the bytes the native
  attach gets), \`fire\` and \`attachmentCount\` over the native \`call\`.
- \`native/plugin.cpp\`: the C ABI of \`bpfhook/plugin.h\` (from @bpfhook/sdk):
  init, fini, attach, detach, register_helpers, call ("fire", "attachments").
- \`test/plugin.test.ts\`: the contract tests and one real program.

## Dependencies

\`@bpfhook/sdk\`, \`@bpfhook/core\` and \`@bpfhook/testkit\` are not on the npm
registry: \`package.json\` depends on them by \`file:\` paths to the bpfhook
checkout this package was scaffolded from (npm links them, using their build
as it is; build that checkout first). Once they are published, replace the
paths with versions. The other dependencies come from the registry or npm's
cache.

## Next steps

Rename the channel concept to your event source, give the context its real
layout (and \`EVENT_LAYOUT\` with it), and, if your events come from native
code, export a C function that fires them (see bpfhook's \`plugins/simple\`,
\`bh_simple_trigger\`); then give the contract tests a \`threads\` trigger and an
\`agent\` target. docs/PLUGINS.md in bpfhook explains the contract.
`;
}

/** The text `bpfhook new-plugin` prints. */
export function describeScaffold(r: NewPluginResult): string {
  const rel = path.relative(process.cwd(), r.dir) || ".";
  return [
    `created ${r.packageName} in ${r.dir}`,
    `  plugin '${r.name}', attach type id ${r.attachTypeId}, sections ${r.prefix}/<channel>, helper ${r.helperId}`,
    ...r.files.map((f) => `  ${f}`),
    "next:",
    `  cd ${rel} && npm install --prefer-offline --no-audit --no-fund && npm run build && npm test`,
  ].join("\n");
}
