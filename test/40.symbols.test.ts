/**
 * Symbol resolution (sdk/src/symbols): /proc/<pid>/maps parsing, ELF symbol
 * tables, load bias, module matching, and the resolved addresses checked
 * against dlsym() in helper processes built here with gcc (a PIE, a non-PIE
 * executable, and a library whose first segment is not at 0, dlopen()ed
 * after start-up).
 */
import { strict as assert } from "node:assert";
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  groupModules,
  loadBias,
  parseProcMaps,
  readElfImage,
  readSymbols,
  SymbolFile,
  SymbolFileCache,
  SymbolResolver,
  symbolTables,
} from "@bpfhook/sdk";
import type { SymbolError } from "@bpfhook/sdk";

const LIBC = fs.realpathSync("/lib/x86_64-linux-gnu/libc.so.6");
const NODE_EXE = fs.realpathSync(process.execPath);

/** Runs fn, expecting a symbol error with this code whose message matches every pattern. */
function expectError(fn: () => unknown, code: string, ...patterns: (string | RegExp)[]): SymbolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, "expected an error");
  const err = caught as SymbolError;
  assert.equal(err.code, code, err.message);
  for (const p of patterns) {
    if (typeof p === "string") assert.ok(err.message.includes(p), `'${err.message}' lacks '${p}'`);
    else assert.match(err.message, p);
  }
  return err;
}

function hasGcc(): boolean {
  try {
    execFileSync("gcc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("40 symbols", () => {
  describe("/proc/<pid>/maps", () => {
    const text = [
      "55d0c6a00000-55d0c6a28000 r--p 00000000 fe:01 1234                       /opt/my app/bin/app",
      "55d0c6a28000-55d0c6b00000 r-xp 00028000 fe:01 1234                       /opt/my app/bin/app",
      "55d0c8000000-55d0c8021000 rw-p 00000000 00:00 0                          [heap]",
      "7f0000000000-7f0000001000 r-xp 00000000 fe:01 99                         /tmp/libgone.so (deleted)",
      "7f0000100000-7f0000101000 rw-p 00000000 00:00 0 ",
      "7ffd1e5f3000-7ffd1e5f5000 r-xp 00000000 00:00 0                          [vdso]",
      "",
    ].join("\n");

    it("parses every field, paths with spaces and the deleted mark", () => {
      const entries = parseProcMaps(text);
      assert.equal(entries.length, 6);
      const [first, second, heap, gone, anon] = entries;
      assert.equal(first!.start, 0x55d0c6a00000n);
      assert.equal(first!.end, 0x55d0c6a28000n);
      assert.equal(first!.path, "/opt/my app/bin/app");
      assert.equal(first!.executable, false);
      assert.equal(second!.perms, "r-xp");
      assert.equal(second!.executable, true);
      assert.equal(second!.offset, 0x28000n);
      assert.equal(second!.dev, "fe:01");
      assert.equal(second!.inode, 1234n);
      assert.equal(heap!.path, "[heap]");
      assert.equal(heap!.writable, true);
      assert.equal(gone!.path, "/tmp/libgone.so");
      assert.equal(gone!.deleted, true);
      assert.equal(anon!.path, "");
    });

    it("groups file-backed mappings into modules, lowest first", () => {
      const modules = groupModules(parseProcMaps(text));
      assert.deepEqual(
        modules.map((m) => [m.path, m.ranges.length, m.base, m.end, m.deleted]),
        [
          ["/opt/my app/bin/app", 2, 0x55d0c6a00000n, 0x55d0c6b00000n, false],
          ["/tmp/libgone.so", 1, 0x7f0000000000n, 0x7f0000001000n, true],
        ],
      );
    });

    it("names the line it cannot parse", () => {
      expectError(() => parseProcMaps("55d0c6a00000-55d0c6a28000 r--p\n"), "BAD_ARGUMENT", "maps line 1");
    });
  });

  describe("ELF reading", () => {
    it("reads libc: a shared object with .dynsym, PT_LOADs from vaddr 0, IFUNCs and versions", () => {
      const image = readElfImage(LIBC);
      assert.equal(image.type, "dyn");
      assert.equal(image.machine, 62);
      assert.ok(image.loads.length >= 2);
      assert.ok(image.loads.some((l) => (l.flags & 1) !== 0), "an executable segment");
      assert.deepEqual(symbolTables(image).slice(0, 1), [".dynsym"]);
      const funcs = readSymbols(image, ".dynsym", "functions");
      const malloc = funcs.find((s) => s.name === "malloc");
      assert.equal(malloc?.kind, "func");
      assert.ok(malloc!.size > 0n);
      assert.equal(funcs.find((s) => s.name === "strlen")?.kind, "ifunc");
      // glibc keeps memcpy@GLIBC_2.2.5 (hidden) beside memcpy@@GLIBC_2.14.
      const memcpys = funcs.filter((s) => s.name === "memcpy");
      assert.ok(memcpys.some((s) => s.hiddenVersion) && memcpys.some((s) => !s.hiddenVersion), "both memcpy versions");
      const picked = new SymbolFile(image).findFunction("memcpy@@GLIBC_2.14");
      assert.equal(picked?.hiddenVersion, false);
    });

    it("reads the node executable, and finds an import by name", () => {
      const image = readElfImage(NODE_EXE);
      assert.ok(image.type === "exec" || image.type === "dyn");
      if (image.type === "exec") assert.ok(image.loads[0]!.vaddr > 0n, "ET_EXEC links at a fixed address");
      const entries = readSymbols(image, ".dynsym", { name: "malloc" });
      assert.ok(entries.some((s) => !s.defined), "node imports malloc");
    });

    it("refuses what is not an ELF file, and names a missing one", () => {
      const tmp = path.join(os.tmpdir(), `bpfhook-not-elf-${process.pid}`);
      fs.writeFileSync(tmp, "just text, long enough to hold an ELF header if it were one.............");
      try {
        expectError(() => readElfImage(tmp), "ELF_INVALID", tmp, "not an ELF file");
      } finally {
        fs.rmSync(tmp, { force: true });
      }
      expectError(() => readElfImage("/nonexistent/libx.so"), "NOT_FOUND", "/nonexistent/libx.so", "ENOENT");
    });
  });

  describe("in this Node process", () => {
    const resolver = new SymbolResolver();

    it("resolves libc malloc into libc's text, by file name, prefix and paths", () => {
      const r = resolver.resolveSymbol({ module: "libc.so.6", symbol: "malloc" });
      assert.equal(r.kind, "func");
      assert.equal(r.modulePath, LIBC);
      assert.equal(r.executable, true);
      assert.equal(r.pid, process.pid);
      const module = resolver.findModule("libc.so.6");
      assert.ok(r.address >= module.base && r.address < module.end);
      const image = readElfImage(LIBC);
      const sym = new SymbolFile(image).findFunction("malloc")!;
      assert.equal(r.address, loadBias(module, image) + sym.value);
      for (const name of ["libc", LIBC, "/lib/x86_64-linux-gnu/libc.so.6", "malloc@@GLIBC_2.2.5"]) {
        const again =
          name === "malloc@@GLIBC_2.2.5"
            ? resolver.resolveSymbol({ module: "libc", symbol: name })
            : resolver.resolveSymbol({ module: name, symbol: "malloc" });
        assert.equal(again.address, r.address, name);
      }
    });

    it("reports strlen as an IFUNC whose resolver lies in libc's text", () => {
      const r = resolver.resolveSymbol({ module: "libc", symbol: "strlen" });
      assert.equal(r.kind, "ifunc");
      assert.equal(r.executable, true);
    });

    it("resolves a symbol of the node executable under every main-module name", () => {
      const names = ["", "self", "main", "/proc/self/exe", `/proc/${process.pid}/exe`, NODE_EXE];
      const addresses = names.map((module) => resolver.resolveSymbol({ module, symbol: "uv_version" }).address);
      assert.equal(new Set(addresses).size, 1, addresses.map((a) => a.toString(16)).join(" "));
      const r = resolver.resolveSymbol({ module: "self", symbol: "uv_version" });
      assert.equal(r.modulePath, NODE_EXE);
      assert.equal(r.executable, true);
      if (readElfImage(NODE_EXE).type === "exec") {
        assert.equal(r.bias, 0n, "an ET_EXEC is loaded where it was linked");
        assert.equal(r.address, r.vaddr);
      }
    });

    it("turns a file offset into the same address as the symbol", () => {
      const r = resolver.resolveSymbol({ module: "libc", symbol: "free" });
      assert.notEqual(r.fileOffset, undefined);
      const back = resolver.resolveFileOffset({ module: "libc.so.6", offset: r.fileOffset! });
      assert.equal(back.address, r.address);
      assert.equal(back.kind, "offset");
    });

    it("says what is at an address", () => {
      const r = resolver.resolveSymbol({ module: "libc", symbol: "malloc" });
      const info = resolver.addressInfo(r.address);
      assert.equal(info?.module?.path, LIBC);
      assert.equal(info?.mapping.executable, true);
      assert.equal(info?.fileOffset, r.fileOffset);
      assert.equal(resolver.addressInfo(8n), undefined);
    });

    it("names a missing symbol, the file and the tables searched", () => {
      const err = expectError(
        () => resolver.resolveSymbol({ module: "libc.so.6", symbol: "mallocx" }),
        "NOT_FOUND",
        `symbol 'mallocx' not found in ${LIBC}`,
        ".dynsym",
      );
      assert.equal(err.detail.symbol, "mallocx");
    });

    it("names a module that is not mapped, and what is", () => {
      expectError(
        () => resolver.resolveSymbol({ module: "libfoo", symbol: "x" }),
        "NOT_FOUND",
        `module 'libfoo' is not mapped in process ${process.pid}; mapped: `,
        "libc.so.6",
      );
      expectError(() => resolver.findModule("/usr/lib/libnothere.so"), "NOT_FOUND", "'/usr/lib/libnothere.so' is not mapped");
      // "libc" must not match libcrypto and the like by a bare prefix.
      expectError(() => resolver.findModule("libc.so.7"), "NOT_FOUND");
    });

    it("says when a name is an import, data, or an offset runs past the function", () => {
      expectError(
        () => resolver.resolveSymbol({ module: "self", symbol: "malloc" }),
        "NOT_FOUND",
        "imports it",
        "exported by libc.so.6",
      );
      expectError(() => resolver.resolveSymbol({ module: "libc", symbol: "environ" }), "NOT_FOUND", "data object");
      expectError(
        () => resolver.resolveSymbol({ module: "libc", symbol: "malloc", offset: 1n << 20n }),
        "BAD_ARGUMENT",
        "past the end of 'malloc'",
      );
      expectError(
        () => resolver.resolveFileOffset({ module: "libc", offset: 1n << 40n }),
        "NOT_FOUND",
        "file offset 0x10000000000",
        "PT_LOAD",
      );
      expectError(() => resolver.resolveSymbol({ module: "libc", symbol: "malloc", offset: -1 }), "BAD_ARGUMENT");
    });

    it("reuses its reading of the maps while the module stays mapped (one read for many resolves)", () => {
      const mine = new SymbolResolver();
      const read = fs.readFileSync;
      let mapsReads = 0;
      (fs as { readFileSync: unknown }).readFileSync = (...args: Parameters<typeof fs.readFileSync>) => {
        if (String(args[0]).endsWith("/maps")) mapsReads++;
        return read(...args);
      };
      try {
        const first = mine.resolveSymbol({ module: "libc.so.6", symbol: "malloc" });
        for (let i = 0; i < 100; i++) {
          assert.equal(mine.resolveSymbol({ module: "libc.so.6", symbol: "malloc" }).address, first.address);
          mine.resolveSymbol({ module: "libc", symbol: "free" });
        }
        assert.equal(mapsReads, 1, "the maps were read once");
        // A module not in that reading makes it read again (and fail here).
        expectError(() => mine.resolveSymbol({ module: "libnot-mapped-here", symbol: "f" }), "NOT_FOUND", "not mapped");
        assert.equal(mapsReads, 2);
      } finally {
        (fs as { readFileSync: unknown }).readFileSync = read;
      }
    });

    it("caches symbol tables per file until the file changes", () => {
      const cache = new SymbolFileCache();
      const a = cache.open(LIBC);
      assert.equal(cache.open(LIBC), a);
      const tmp = path.join(os.tmpdir(), `bpfhook-cache-${process.pid}.so`);
      try {
        fs.copyFileSync(LIBC, tmp);
        const first = cache.open(tmp);
        assert.equal(cache.open(tmp), first);
        const libm = resolver.findModule("libm.so.6").path;
        fs.copyFileSync(libm, tmp);
        const second = cache.open(tmp);
        assert.notEqual(second, first);
        assert.ok(second.findFunction("cos"), "the new file's symbols");
        assert.equal(second.findFunction("malloc"), undefined);
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    });
  });

  describe("against dlsym() in helper processes", function () {
    // Compiling and loading the helpers takes a few seconds on 2 cores.
    this.timeout(120000);
    let dir = "";
    const resolver = new SymbolResolver();

    before(function () {
      if (!hasGcc()) {
        console.log("    (skipped: no gcc to build the helpers)");
        this.skip();
      }
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "bpfhook-symbols-"));
      fs.writeFileSync(path.join(dir, "helper.c"), HELPER_C);
      fs.writeFileSync(path.join(dir, "late.c"), LATE_C);
      const gcc = (...args: string[]) => execFileSync("gcc", args, { cwd: dir, stdio: "pipe" });
      gcc("-O1", "-fPIE", "-pie", "-rdynamic", "-o", "helper-pie", "helper.c", "-ldl");
      gcc("-O1", "-fno-pie", "-no-pie", "-rdynamic", "-o", "helper-nopie", "helper.c", "-ldl");
      // A library whose first PT_LOAD is at 0x200000 rather than 0.
      gcc("-O1", "-shared", "-fPIC", "-Wl,-Ttext-segment=0x200000", "-o", "libbhlate.so", "late.c");
      fs.writeFileSync(path.join(dir, "late2.c"), "int bh_late2_fn(int x) { return x + 43; }\n");
      gcc("-O1", "-shared", "-fPIC", "-o", "libbhlate2.so", "late2.c");
    });

    after(() => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    for (const variant of ["helper-pie", "helper-nopie"]) {
      describe(variant, () => {
        let helper: Helper;
        before(async function () {
          if (!dir) this.skip();
          helper = await Helper.start(path.join(dir, variant));
        });
        after(() => helper?.stop());

        it("is the kind of executable its name says", () => {
          assert.equal(readElfImage(path.join(dir, variant)).type, variant === "helper-pie" ? "dyn" : "exec");
        });

        it("resolves libc malloc to dlsym's address", () => {
          const r = resolver.resolveSymbol({ pid: helper.pid, module: "libc", symbol: "malloc" });
          assert.equal(hex(r.address), hex(helper.printed.get("malloc")!));
        });

        it("resolves an exported and a static function of the executable", () => {
          const exe = path.join(dir, variant);
          for (const module of ["main", exe, variant, "/proc/self/exe"]) {
            const r = resolver.resolveSymbol({ pid: helper.pid, module, symbol: "bh_exported_target" });
            assert.equal(hex(r.address), hex(helper.printed.get("bh_exported_target")!), module);
            assert.equal(r.table, ".dynsym");
          }
          const local = resolver.resolveSymbol({ pid: helper.pid, module: "main", symbol: "bh_local_target" });
          assert.equal(local.table, ".symtab");
          assert.equal(hex(local.address), hex(helper.printed.get("bh_local_target")!));
        });

        it("resolves a file offset to the same address", () => {
          const r = resolver.resolveSymbol({ pid: helper.pid, module: "main", symbol: "bh_exported_target" });
          const back = resolver.resolveFileOffset({ pid: helper.pid, module: "main", offset: r.fileOffset! });
          assert.equal(hex(back.address), hex(helper.printed.get("bh_exported_target")!));
        });

        it("finds IFUNC resolvers that return what dlsym returns (strlen, memcpy)", async () => {
          for (const name of ["strlen", "memcpy"]) {
            const r = resolver.resolveSymbol({ pid: helper.pid, module: "libc.so.6", symbol: name });
            assert.equal(r.kind, "ifunc", name);
            const chosen = await helper.command(`call ${r.address.toString(16)}`);
            assert.equal(hex(chosen), hex(helper.printed.get(name)!), name);
          }
        });

        it("finds a library dlopen()ed after start-up, linked at a non-zero address", async () => {
          expectError(
            () => resolver.resolveSymbol({ pid: helper.pid, module: "libbhlate", symbol: "bh_late_fn" }),
            "NOT_FOUND",
            `module 'libbhlate' is not mapped in process ${helper.pid}`,
          );
          // Occupy the library's preferred address so that it loads elsewhere.
          await helper.command("reserve");
          const handle = await helper.command(`dlopen ${path.join(dir, "libbhlate.so")}`);
          assert.notEqual(handle, 0n, "dlopen failed");
          const expected = await helper.command("dlsym bh_late_fn");
          const r = resolver.resolveSymbol({ pid: helper.pid, module: "libbhlate", symbol: "bh_late_fn" });
          assert.equal(hex(r.address), hex(expected));
          const image = readElfImage(path.join(dir, "libbhlate.so"));
          assert.equal(image.loads[0]!.vaddr, 0x200000n);
          assert.notEqual(r.bias, 0n, "the library was moved away from its link address");
          assert.equal(r.address, r.bias + r.vaddr);
        });

        it("reads the maps again when a module it resolved was unloaded and loaded elsewhere", async () => {
          // No dlsym before dlclose: a lookup through RTLD_DEFAULT would make
          // glibc keep the library loaded.
          const lib = path.join(dir, "libbhlate2.so");
          const first = await helper.command(`dlopen ${lib}`);
          assert.notEqual(first, 0n, "dlopen failed");
          const r1 = resolver.resolveSymbol({ pid: helper.pid, module: "libbhlate2", symbol: "bh_late2_fn" });
          const { base, end } = resolver.findModule("libbhlate2", helper.pid);
          assert.equal(await helper.command(`dlclose ${first.toString(16)}`), 0n, "dlclose failed");
          // Its old place taken, the next load goes elsewhere.
          assert.equal(await helper.command(`reserveat ${base.toString(16)} ${(end - base).toString(16)}`), base);
          assert.notEqual(await helper.command(`dlopen ${lib}`), 0n, "dlopen failed");
          const expected = await helper.command("dlsym bh_late2_fn");
          assert.notEqual(hex(expected), hex(r1.address), "it loaded elsewhere");
          const r2 = resolver.resolveSymbol({ pid: helper.pid, module: "libbhlate2", symbol: "bh_late2_fn" });
          assert.equal(hex(r2.address), hex(expected));
        });
      });
    }
  });
});

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/**
 * A helper process: prints dlsym() results at start, then answers one line
 * per command on stdin (see HELPER_C).
 */
class Helper {
  private buffered = "";
  private waiting: ((line: string) => void)[] = [];
  private lines: string[] = [];
  readonly printed = new Map<string, bigint>();

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf("\n")) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const waiter = this.waiting.shift();
        if (waiter) waiter(line);
        else this.lines.push(line);
      }
    });
  }

  static async start(exe: string): Promise<Helper> {
    const h = new Helper(spawn(exe, [], { stdio: ["pipe", "pipe", "pipe"] }));
    for (;;) {
      const line = await h.nextLine();
      if (line === "ready") return h;
      const [name, value] = line.split(" ");
      h.printed.set(name!, parsePointer(value!));
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends a command; returns the pointer its answer line ends with. */
  async command(cmd: string): Promise<bigint> {
    this.child.stdin.write(`${cmd}\n`);
    const line = await this.nextLine();
    const parts = line.split(" ");
    return parsePointer(parts[1] ?? "");
  }

  stop(): void {
    this.child.stdin.end("quit\n");
    this.child.kill();
  }

  private nextLine(): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("helper did not answer within 10 s")), 10000);
      this.waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }
}

/** printf("%p") output: "0x7f..." or "(nil)". */
function parsePointer(s: string): bigint {
  return s === "(nil)" ? 0n : BigInt(s);
}

/**
 * The helper: prints dlsym(RTLD_DEFAULT, ...) for a few names (for IFUNCs
 * that is the implementation the resolver picks) and the address of a static
 * function, then serves commands:
 *   dlopen <path>   dlopen(RTLD_NOW | RTLD_GLOBAL); answers "dlopened <handle>"
 *   dlsym <name>    answers "<name> <address>"
 *   call <hex>      calls the address as void *(*)(void) (an IFUNC resolver)
 *   reserve         maps PROT_NONE at 0x200000 so a library linked there moves
 *   reserveat <hex> <hexlen>  maps PROT_NONE there (another load of a library goes elsewhere)
 *   dlclose <hex>   dlclose(handle); answers "dlclosed <rc>"
 *   quit
 */
const HELPER_C = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

__attribute__((noinline, noclone, used)) int bh_exported_target(int x) { return x * 3 + 1; }
__attribute__((noinline, noclone, used)) static int bh_local_target(int x) { return x * 5 + 2; }
int (*volatile keep_local)(int) = bh_local_target;

static void print(const char *name, void *p) { printf("%s %p\n", name, p); }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  print("malloc", dlsym(RTLD_DEFAULT, "malloc"));
  print("strlen", dlsym(RTLD_DEFAULT, "strlen"));
  print("memcpy", dlsym(RTLD_DEFAULT, "memcpy"));
  print("bh_exported_target", dlsym(RTLD_DEFAULT, "bh_exported_target"));
  print("bh_local_target", (void *)keep_local);
  printf("ready\n");
  char line[4096];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "dlopen ", 7)) {
      void *h = dlopen(line + 7, RTLD_NOW | RTLD_GLOBAL);
      print("dlopened", h);
      if (!h) fprintf(stderr, "%s\n", dlerror());
    } else if (!strncmp(line, "dlsym ", 6)) {
      print(line + 6, dlsym(RTLD_DEFAULT, line + 6));
    } else if (!strncmp(line, "call ", 5)) {
      void *(*fn)(void) = (void *(*)(void))strtoull(line + 5, NULL, 16);
      print("called", fn());
    } else if (!strcmp(line, "reserve")) {
      void *p = mmap((void *)0x200000, 0x100000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      print("reserved", p == MAP_FAILED ? NULL : p);
    } else if (!strncmp(line, "reserveat ", 10)) {
      char *end;
      void *at = (void *)strtoull(line + 10, &end, 16);
      size_t len = strtoull(end, NULL, 16);
      void *p = mmap(at, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      print("reserved", p == MAP_FAILED ? NULL : p);
    } else if (!strncmp(line, "dlclose ", 8)) {
      print("dlclosed", (void *)(long)dlclose((void *)strtoull(line + 8, NULL, 16)));
    } else if (!strcmp(line, "quit")) {
      break;
    }
  }
  return 0;
}
`;

const LATE_C = String.raw`
int bh_late_fn(int x) { return x + 42; }
`;
