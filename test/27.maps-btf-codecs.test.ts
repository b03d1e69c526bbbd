import { strict as assert } from "node:assert";
import path from "node:path";
import {
  BpfhookError,
  codec,
  describeHelper,
  describeMapType,
  disassemble,
  assembleBytes,
  helperId,
  helperName,
  mapTypeKernelName,
  Runtime,
  SharedRegion,
  type BpfMap,
  type QueueMap,
} from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");

function throwsBad(run: () => unknown, match: RegExp): void {
  assert.throws(run, (e: unknown) => e instanceof BpfhookError && e.code === "BAD_ARGUMENT" && match.test(e.message));
}

describe("27 maps: values decoded from BTF", () => {
  describe("codec.chars (char name[N])", () => {
    const c = codec.chars(8);
    const enc = (v: string | Buffer | number[]) => {
      const b = Buffer.alloc(8, 0xee);
      c.encode(v as string | Buffer, b, 0);
      return b;
    };

    it("encodes strings, Buffers and byte arrays, NUL-padded", () => {
      assert.deepEqual([...enc("abc")], [0x61, 0x62, 0x63, 0, 0, 0, 0, 0]);
      assert.deepEqual([...enc(Buffer.from([1, 2]))], [1, 2, 0, 0, 0, 0, 0, 0]);
      assert.deepEqual([...enc([1, 2, 3, 4, 5, 6, 7, 255])], [1, 2, 3, 4, 5, 6, 7, 255]);
      assert.deepEqual([...enc(Buffer.alloc(8, 9))], [9, 9, 9, 9, 9, 9, 9, 9], "a Buffer may fill every byte");
      throwsBad(() => enc("12345678"), /chars\(8\): '12345678' needs 9 bytes with its NUL/);
      throwsBad(() => enc(Buffer.alloc(9)), /9 bytes do not fit/);
      throwsBad(() => enc([1, 2]), /expected a string, a Buffer/);
      throwsBad(() => enc([1, 2, 3, 4, 5, 6, 7, 256]), /element 7 \(256\) is not a byte/);
      throwsBad(() => enc(5 as never), /expected a string/);
    });

    it("decodes NUL-terminated printable text to a string, anything else to a Buffer", () => {
      const dec = (bytes: number[]) => c.decode(Buffer.from(bytes), 0);
      assert.equal(dec([0x68, 0x69, 0, 0, 0, 0, 0, 0]), "hi");
      assert.equal(dec([0, 0, 0, 0, 0, 0, 0, 0]), "");
      assert.equal(dec([0xc3, 0xa9, 0x09, 0, 0, 0, 0, 0]), "é\t", "UTF-8 and tabs are text");
      for (const bytes of [
        [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68], // no NUL
        [0x61, 0, 0x62, 0, 0, 0, 0, 0], // data after the NUL
        [0x01, 0x02, 0, 0, 0, 0, 0, 0], // control bytes
        [0xff, 0xfe, 0, 0, 0, 0, 0, 0], // not UTF-8
      ]) {
        const v = dec(bytes);
        assert.ok(Buffer.isBuffer(v), `${bytes} -> ${String(v)}`);
        assert.deepEqual([...enc(v)], bytes, "a Buffer encodes back unchanged");
      }
    });

    it("byte arrays (__u8 x[N]) also take a Buffer", () => {
      const a = codec.array(codec.u8, 4);
      const b = Buffer.alloc(4);
      a.encode(Buffer.from([1, 2, 3, 4]) as never, b, 0);
      assert.deepEqual(a.decode(b, 0), [1, 2, 3, 4]);
      throwsBad(() => a.encode(Buffer.alloc(3) as never, b, 0), /expected 4 elements or a Buffer of as many bytes/);
    });
  });

  describe("one table of kernel names", () => {
    it("names helpers and map types by id, kernel and bpftime ones", () => {
      assert.equal(helperName(1), "bpf_map_lookup_elem");
      assert.equal(helperName(174), "bpf_get_attach_cookie");
      assert.equal(helperName(209), "bpf_user_ringbuf_drain");
      assert.equal(helperName(502), "bpf_get_globaltimer");
      assert.equal(helperName(0), undefined);
      assert.equal(helperName(9999), undefined);
      assert.equal(helperId("bpf_get_func_arg"), 183);
      assert.equal(helperId("override_return"), 58);
      assert.equal(describeHelper(6), "helper 6 (bpf_trace_printk)");
      assert.equal(describeHelper(502), "helper 502 (bpf_get_globaltimer, a CUDA helper)");
      assert.equal(describeHelper(9999), "helper 9999 (unknown)");
      assert.equal(mapTypeKernelName(1), "hash");
      assert.equal(mapTypeKernelName(27), "ringbuf");
      assert.equal(describeMapType(30), "map type 30 (bloom_filter)");
      assert.equal(describeMapType(1527), "map type 1527 (nv_gpu_ringbuf_map)");
      assert.equal(describeMapType(4242), "map type 4242 (unknown)");
    });

    it("the disassembler names helpers in a comment that still assembles", () => {
      const code = assembleBytes("mov %r1, 0\ncall 1\ncall 502\ncall 9999\nexit");
      const text = disassemble(code, { helperNames: true });
      assert.match(text, /^call 1 {2}# bpf_map_lookup_elem$/m);
      assert.match(text, /^call 502 {2}# bpf_get_globaltimer$/m);
      assert.match(text, /^call 9999$/m);
      assert.ok(assembleBytes(text).equals(code));
      assert.doesNotMatch(disassemble(code), /#/, "off by default");
    });

    it("map creation names an unsupported type by number and name, and the map once", async function () {
      const region = SharedRegion.create({ name: `/bpfhook-t25-${process.pid}`, size: 1 << 20 });
      try {
        assert.throws(
          () => region.createMap({ name: "ur", type: 31, keySize: 0, valueSize: 0, maxEntries: 4096 }),
          (e: unknown) =>
            e instanceof BpfhookError &&
            e.code === "BAD_ARGUMENT" &&
            e.message.startsWith("map 'ur': create: map type 31 (user_ringbuf) is not supported (supported: hash, array"),
        );
      } finally {
        region.close();
      }
      skipWithoutClang(this);
      const rt = await Runtime.create({});
      try {
        const file = compileFixture("runtime/unsupported_map.bpf.c");
        assert.throws(
          () => rt.load(file),
          (e: unknown) =>
            e instanceof BpfhookError &&
            e.message.startsWith(`${file}: map 'from_user' (section .maps): create: map type 31 (user_ringbuf) is not supported`) &&
            e.message.split("from_user").length === 2,
        );
      } finally {
        rt.close();
      }
    });
  });

  describe("maps of a clang-built object", () => {
    let rt: Runtime;
    before(function () {
      skipWithoutClang(this);
    });
    beforeEach(async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
    });
    afterEach(() => rt?.close());

    it("queue and stack values are decoded like other maps' (struct with a char array, u64)", () => {
      const obj = rt.load(compileFixture("runtime/codecs.bpf.c"));
      const jobs = obj.map<QueueMap<{ id: number; name: string | Buffer }>>("jobs");
      const lifo = obj.map<QueueMap<bigint>>("lifo");
      jobs.push({ id: 1, name: "from-ts" });
      lifo.push(5n);
      obj.program("use_codecs").run();
      assert.deepEqual(jobs.pop(), { id: 1, name: "from-ts" });
      assert.deepEqual(jobs.peek(), { id: 7, name: "from-bpf" });
      assert.deepEqual(jobs.pop(), { id: 7, name: "from-bpf" });
      assert.equal(jobs.pop(), undefined);
      assert.equal(lifo.pop(), 99n);
      assert.equal(lifo.pop(), 5n);
    });

    it("an LPM trie keyed by char data[64] takes a string or a Buffer, and the program matches it", () => {
      const obj = rt.load(compileFixture("runtime/codecs.bpf.c"));
      const trie = obj.map<BpfMap<{ prefixlen: number; data: string | Buffer }, number>>("prefixes");
      const prog = obj.program("use_codecs");
      assert.equal(prog.run(), 0n, "empty trie: no match");
      trie.set({ prefixlen: 8 * 8, data: "/usr/lib" }, 41);
      assert.equal(prog.run(), 41n, "the program's /usr/lib/libc.so.6 matches the /usr/lib prefix");
      trie.set({ prefixlen: 4 * 8, data: Buffer.from("/usr") }, 40);
      assert.equal(trie.get({ prefixlen: 512, data: "/usr/bin/sh" }), 40);
      assert.equal(trie.get({ prefixlen: 512, data: "/usr/lib/x" }), 41);
      const keys = [...trie.keys()].map((k) => k.data);
      assert.deepEqual(keys.sort(), ["/usr", "/usr/lib"], "keys decode to strings");
    });

    it("a hash keyed by char[16]: string keys, byte-array and string fields", () => {
      const obj = rt.load(compileFixture("runtime/codecs.bpf.c"));
      const byName = obj.map<BpfMap<string | Buffer, { addr: number[]; note: string | Buffer }>>("by_name");
      byName.set("eth0", { addr: Buffer.from([10, 0, 0, 1]) as never, note: "up" });
      byName.set(Buffer.from([1, 2, 3]), { addr: [127, 0, 0, 1], note: Buffer.from([0xff]) });
      assert.deepEqual(byName.get("eth0"), { addr: [10, 0, 0, 1], note: "up" });
      const binary = byName.get(Buffer.from([1, 2, 3]))!;
      assert.deepEqual(binary.note, Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0]));
      const keys = [...byName.keys()];
      assert.ok(keys.includes("eth0"));
      assert.ok(keys.some((k) => Buffer.isBuffer(k) && k.subarray(0, 3).equals(Buffer.from([1, 2, 3]))), "binary key stays a Buffer");
    });
  });
});
