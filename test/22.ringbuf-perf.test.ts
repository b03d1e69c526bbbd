import { strict as assert } from "node:assert";
import { codec, SharedRegion, type PerfSample } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { testingAddon } from "./support/testing-addon.js";

const rec = codec.struct({ thread: codec.u32, pad: codec.u32, seq: codec.u64 });

const word = (v: number, size = 4) => {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(v);
  return b;
};

describe("22 ring buffer and perf buffer", () => {
  let region: SharedRegion;
  before(() => {
    region = SharedRegion.create({ name: `/bpfhook-t22-${process.pid}`, size: 64 << 20 });
  });
  after(() => region.close());

  describe("ring buffer", () => {
    it("delivers records in order; discarded and busy records are handled as the kernel does", () => {
      const rb = region.createMap({ name: "rb1", type: "ringbuf", maxEntries: 4096 });
      const c = rb.consumer();
      const got: number[] = [];
      c.on("data", (d: Buffer) => got.push(d.readUInt32LE(0)));
      for (let i = 0; i < 10; i++) assert.equal(rb.output(word(i)), true);
      assert.equal(native().ringbufReserve(rb.native, word(99), true), 0, "reserve + discard");
      assert.equal(native().ringbufReserve(rb.native, word(10), false), 0, "reserve + submit");
      assert.equal(c.poll(), 11);
      assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(rb.stats().available, 0);
      c.close();
      rb.close();
    });

    it("counts drops when the consumer does not keep up, and reports them", () => {
      const rb = region.createMap({ name: "rb2", type: "ringbuf", maxEntries: 4096 });
      const c = rb.consumer({ codec: codec.u32 });
      const drops: number[] = [];
      c.on("drop", (n: number) => drops.push(n));
      let accepted = 0;
      // 4-byte records take 16 bytes with their header: 256 fit.
      for (let i = 0; i < 1000; i++) if (rb.output(word(i))) accepted++;
      assert.equal(accepted, 256);
      assert.equal(rb.stats().drops, 744);
      const got: number[] = [];
      c.on("data", (v: number) => got.push(v));
      c.poll();
      assert.deepEqual(drops, [744]);
      assert.equal(got.length, 256);
      assert.deepEqual(got, Array.from({ length: 256 }, (_, i) => i), "the first 256, in order");
      assert.equal(c.drops, 744);
      c.close();
      rb.close();
    });

    it("a polling consumer keeps up with a native producer thread and loses nothing", async () => {
      const rb = region.createMap({ name: "rb3", type: "ringbuf", maxEntries: 1 << 20 });
      const c = rb.consumer({ codec: rec, intervalMs: 1 });
      let next = 1n;
      let outOfOrder = 0;
      let dropped = 0;
      c.on("data", (r: { thread: number; seq: bigint }) => {
        if (r.thread !== 0 || r.seq !== next) outOfOrder++;
        next = r.seq + 1n;
      });
      c.on("drop", (n: number) => (dropped += n));
      c.start();
      const iterations = 30000;
      // 1 producer thread, a record every 10 us, on a worker thread: the
      // event loop keeps polling meanwhile.
      const res = await testingAddon().mapStress(rb.native, { op: "produce", threads: 1, iterations, paceNs: 10000 });
      c.poll();
      c.close();
      assert.equal(res.ok, iterations);
      assert.equal(res.drops, 0);
      assert.equal(dropped, 0);
      assert.equal(outOfOrder, 0);
      assert.equal(c.received, iterations);
      assert.equal(rb.stats().drops, 0);
      rb.close();
    });

    it("is an async iterator that stops draining at its high-water mark", async () => {
      const rb = region.createMap({ name: "rb4", type: "ringbuf", maxEntries: 4096 });
      const c = rb.consumer({ codec: codec.u32, highWaterMark: 8, intervalMs: 1 });
      for (let i = 0; i < 20; i++) rb.output(word(i));
      const seen: number[] = [];
      let dropsReported = 0;
      c.on("drop", (n: number) => (dropsReported += n));
      for await (const v of c) {
        seen.push(v);
        if (seen.length === 5) {
          // The iterator's queue is full (8 buffered): the consumer leaves the
          // rest in the ring, so producers now see less room.
          await new Promise((r) => setTimeout(r, 20));
          assert.ok(rb.stats().available > 0, "records still in the ring");
        }
        if (seen.length === 30) break;
        if (seen.length === 20) {
          for (let i = 20; i < 30; i++) rb.output(word(i));
        }
      }
      assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => i));
      assert.equal(c.closed, true, "break closes the consumer");
      assert.equal(dropsReported, 0);
      rb.close();
    });
  });

  describe("perf event array", () => {
    it("one ring per slot, samples tagged with their ring, lost samples counted", () => {
      const pa = region.createMap({ name: "pe1", type: "perf_event_array", maxEntries: 2, mapExtra: 4096 });
      assert.equal(pa.maxEntries, 2);
      assert.equal(pa.ringSize, 4096);
      const c = pa.consumer({ codec: codec.u32 });
      const samples: [number, number][] = [];
      const lost: [number, number][] = [];
      c.on("data", (s: PerfSample<number>) => samples.push([s.cpu, s.data]));
      c.on("lost", (n: number, cpu: number) => lost.push([cpu, n]));
      assert.equal(pa.output(word(1), 0), true);
      assert.equal(pa.output(word(2), 1), true);
      assert.equal(pa.output(word(3), 0), true);
      c.poll();
      assert.deepEqual(samples, [
        [0, 1],
        [0, 3],
        [1, 2],
      ]);
      // 4-byte samples take 16 bytes: 256 fit in a 4096-byte ring.
      let ok = 0;
      for (let i = 0; i < 300; i++) if (pa.output(word(i), 1)) ok++;
      assert.equal(ok, 256);
      samples.length = 0;
      c.poll();
      assert.equal(samples.length, 256);
      assert.deepEqual(lost, [[1, 44]]);
      assert.equal(c.lost, 44);
      assert.equal(pa.stats()[1]!.lost, 44);
      c.close();
      pa.close();
    });

    it("defaults to a ring per possible CPU; the current CPU's ring is used", () => {
      const pa = region.createMap({ name: "pe2", type: "perf_event_array", maxEntries: 0 });
      assert.equal(pa.maxEntries, region.ncpus);
      assert.equal(pa.ringSize, 64 * 1024);
      assert.equal(pa.output(word(7)), true);
      const c = pa.consumer();
      const got: PerfSample[] = [];
      c.on("data", (s: PerfSample) => got.push(s));
      c.poll();
      assert.equal(got.length, 1);
      assert.ok(got[0]!.cpu < region.ncpus);
      assert.equal(got[0]!.data.readUInt32LE(0), 7);
      c.close();
      pa.close();
    });

    it("a polling consumer keeps up with native producers, in order per CPU and thread", async () => {
      const pa = region.createMap({ name: "pe3", type: "perf_event_array", maxEntries: 0, mapExtra: 1 << 20 });
      const c = pa.consumer({ codec: rec, intervalMs: 1 });
      const last = new Map<string, bigint>();
      let outOfOrder = 0;
      c.on("data", (s: PerfSample<{ thread: number; seq: bigint }>) => {
        const k = `${s.cpu}/${s.data.thread}`;
        if ((last.get(k) ?? 0n) >= s.data.seq) outOfOrder++;
        last.set(k, s.data.seq);
      });
      c.start();
      const res = await testingAddon().mapStress(pa.native, { op: "produce", threads: 2, iterations: 10000, paceNs: 20000 });
      c.poll();
      c.close();
      assert.equal(res.drops, 0);
      assert.equal(c.lost, 0);
      assert.equal(outOfOrder, 0);
      assert.equal(c.received, 20000);
      pa.close();
    });
  });
});
