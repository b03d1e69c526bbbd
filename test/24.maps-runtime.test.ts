import { strict as assert } from "node:assert";
import { assembleBytes, codec, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";

// The glue the runtime binding uses: map handles in loadProgram's `maps`
// become the bh_map* of lddw map-fd forms and value addresses of map-value
// forms, and the default region is what checked-mode programs may access.
describe("24 maps in programs", () => {
  let region: SharedRegion;
  before(() => {
    region = SharedRegion.create({ name: `/bpfhook-t24-${process.pid}`, size: 8 << 20 });
  });
  after(() => region.close());

  it("lddw map forms resolve to the map handle and to entry 0's value", () => {
    const hash = region.createMap({ name: "h", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 4 });
    const data = region.createMap({ name: ".data", type: "array", value: codec.bytes(16), maxEntries: 1 });
    const rt = new (native().NativeRuntime)();
    try {
      const load = (src: string) =>
        rt.loadProgram({ name: "p", insns: assembleBytes(src), maps: [hash.native, data.native] });
      assert.equal(load("lddw %r0, map_fd 0\nexit").run(), hash.address);
      assert.equal(load("lddw %r0, map_value 1, 4\nexit").run(), data.valueAddress(4));
      // A program writes the global through the map-value pointer; user space reads it.
      load("lddw %r1, map_value 1, 8\nmov %r2, 0x1234\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit").run();
      assert.equal(data.get(0)!.readBigUInt64LE(8), 0x1234n);
      assert.throws(() => load("lddw %r0, map_value 0, 0\nexit"), /not an array map, or out of range/);
      assert.throws(() => load("lddw %r0, map_value 1, 16\nexit"), /out of range/);
    } finally {
      rt.close();
    }
    hash.close();
    data.close();
  });

  it("refuses values that are not map handles", () => {
    const rt = new (native().NativeRuntime)();
    try {
      assert.throws(
        () => rt.loadProgram({ name: "p", insns: assembleBytes("mov %r0, 0\nexit"), maps: [{}] }),
        /maps\[0\] is not a map/,
      );
    } finally {
      rt.close();
    }
  });

  it("checked-mode programs may access the default region's maps", () => {
    const d = SharedRegion.default();
    const arr = d.createMap({ name: `chk-${process.pid}`, type: "array", value: codec.u64, maxEntries: 1 });
    const rt = new (native().NativeRuntime)();
    try {
      const p = rt.loadProgram({
        name: "p",
        insns: assembleBytes("lddw %r1, map_value 0, 0\nmov %r2, 7\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit"),
        maps: [arr.native],
        checked: true,
      });
      assert.equal(p.run(), 0n);
      assert.equal(arr.get(0), 7n);
    } finally {
      rt.close();
    }
    arr.close();
  });
});
