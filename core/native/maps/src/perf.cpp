// Perf event array: one ring per slot (by default one per possible CPU), each
// a byte ring of records {type, misc, size} + payload padded to 8, like the
// kernel's perf buffers. perf_event_output copies the whole record while it
// holds the ring's spinlock (user-space threads sharing a CPU can interleave,
// unlike the kernel's per-CPU writers), then publishes `head`. Records may
// wrap around the end of the ring; both sides copy in two pieces then. A full
// ring refuses the sample and counts it lost; the consumer reports the
// number lost since its last pass, as libbpf's lost-sample callback does.
#include <vector>

#include "map_internal.h"

namespace bpfhook::maps {
namespace {

PerfRingCtl *ctl(bh_map *m, uint32_t ring) { return reinterpret_cast<PerfRingCtl *>(m->a) + ring; }
uint8_t *ring_data(bh_map *m, uint32_t ring) { return m->b + uint64_t(ring) * m->ring_size; }

void copy_in(uint8_t *ring, uint64_t size, uint64_t pos, const void *src, uint64_t len) {
  uint64_t off = pos & (size - 1);
  uint64_t first = len < size - off ? len : size - off;
  memcpy(ring + off, src, first);
  if (first < len) memcpy(ring, static_cast<const uint8_t *>(src) + first, len - first);
}

void copy_out(const uint8_t *ring, uint64_t size, uint64_t pos, void *dst, uint64_t len) {
  uint64_t off = pos & (size - 1);
  uint64_t first = len < size - off ? len : size - off;
  memcpy(dst, ring + off, first);
  if (first < len) memcpy(static_cast<uint8_t *>(dst) + first, ring, len - first);
}

}  // namespace
}  // namespace bpfhook::maps

using namespace bpfhook::maps;

extern "C" {

long bh_perf_event_output(bh_map *m, uint64_t flags, const void *data, uint64_t size) {
  if (m == nullptr || m->type != BH_MAP_TYPE_PERF_EVENT_ARRAY) return -EINVAL;
  if ((flags & ~BH_F_INDEX_MASK) != 0) return -EINVAL;
  uint64_t index = flags & BH_F_INDEX_MASK;
  if (index == BH_F_CURRENT_CPU) index = current_cpu(m);
  if (index >= m->pool_size) return -E2BIG;
  uint64_t total = sizeof(PerfRecordHeader) + align_up(size, 8);
  if (total > m->ring_size || size > 0xffffffffull) return -E2BIG;
  PerfRingCtl *c = ctl(m, uint32_t(index));
  uint8_t *ring = ring_data(m, uint32_t(index));
  shm::SpinGuard guard(&c->lock, shm::Wait::kProbe);
  if (!locked(m, guard.result())) {
    // Lost to the consumer, as a full ring's sample is (and counted busy).
    shm::fetch_add_relaxed(&c->lost, uint64_t(1));
    return -EBUSY;
  }
  uint64_t head = shm::load_relaxed(&c->head);
  uint64_t tail = shm::load_acquire(&c->tail);
  // Records start at 8-byte positions, so the header below never crosses
  // the ring's end; a head another process misaligned would.
  if ((head & 7) != 0) return corrupt(m);
  if (head + total - tail > m->ring_size) {
    shm::fetch_add_relaxed(&c->lost, uint64_t(1));
    return -ENOSPC;
  }
  PerfRecordHeader rec{kPerfSample, 0, uint32_t(size)};
  // Headers sit at 8-byte positions and the ring is a power of two >= 4096,
  // so a header never wraps; the payload may.
  memcpy(ring + (head & (m->ring_size - 1)), &rec, sizeof(rec));
  copy_in(ring, m->ring_size, head + sizeof(rec), data, size);
  shm::store_release(&c->head, head + total);
  shm::fetch_add_relaxed(&c->samples, uint64_t(1));
  return 0;
}

int bh_perf_consume(bh_map *m, int ring, bh_perf_sample_fn sample, bh_perf_lost_fn lost, void *ctx,
                    uint32_t max_records) {
  if (m == nullptr || m->type != BH_MAP_TYPE_PERF_EVENT_ARRAY || sample == nullptr) return -EINVAL;
  if (ring >= int(m->pool_size)) return -E2BIG;
  uint32_t first = ring < 0 ? 0 : uint32_t(ring);
  uint32_t last = ring < 0 ? m->pool_size : uint32_t(ring) + 1;
  std::vector<uint8_t> scratch;  // only for payloads that wrap
  int delivered = 0;
  bool stop = false;
  for (uint32_t r = first; r < last && !stop; r++) {
    PerfRingCtl *c = ctl(m, r);
    // Another live consumer: -EBUSY; one that died holding it: taken over.
    const int rc = shm::spin_trylock(&c->consumer_lock);
    if (rc < 0) return delivered > 0 ? delivered : -EBUSY;
    if (rc == shm::kTakenOver) count_takeover(m);
    uint64_t lost_now = shm::load_relaxed(&c->lost);
    if (lost_now != c->lost_seen) {
      if (lost != nullptr) lost(ctx, r, lost_now - c->lost_seen);
      c->lost_seen = lost_now;
    }
    const uint8_t *data = ring_data(m, r);
    const uint64_t size = m->ring_size;
    uint64_t tail = shm::load_relaxed(&c->tail);
    uint64_t head = shm::load_acquire(&c->head);
    // head, tail and each record's size come from the region: the ring
    // never holds more than its size, records sit at 8-byte positions and
    // none runs past `head`. Anything else is corrupt and is not read.
    bool bad = tail > head || head - tail > size || (tail & 7) != 0;
    while (!bad && tail < head) {
      PerfRecordHeader rec;
      memcpy(&rec, data + (tail & (size - 1)), sizeof(rec));
      if (sizeof(rec) + align_up(uint64_t(rec.size), 8) > head - tail) {
        bad = true;
        break;
      }
      uint64_t pos = tail + sizeof(rec);
      uint64_t off = pos & (size - 1);
      const void *payload = data + off;
      if (off + rec.size > size) {
        scratch.resize(rec.size);
        copy_out(data, size, pos, scratch.data(), rec.size);
        payload = scratch.data();
      }
      if (rec.type == kPerfSample) {
        stop = sample(ctx, r, payload, rec.size) != 0;
        delivered++;
      }
      tail += sizeof(rec) + align_up(rec.size, 8);
      shm::store_release(&c->tail, tail);
      if (stop || (max_records != 0 && uint32_t(delivered) >= max_records)) {
        stop = true;
        break;
      }
    }
    shm::spin_unlock(&c->consumer_lock);
    if (bad) {
      // As the ring buffer: what was delivered is returned first.
      corrupt(m);
      if (delivered == 0) return int(kCorrupt);
      break;
    }
  }
  return delivered;
}

int bh_perf_get_stats(bh_map *m, uint32_t ring, bh_perf_ring_stats *st) {
  if (m == nullptr || st == nullptr || m->type != BH_MAP_TYPE_PERF_EVENT_ARRAY) return -EINVAL;
  if (ring >= m->pool_size) return -E2BIG;
  PerfRingCtl *c = ctl(m, ring);
  st->size = m->ring_size;
  st->head = shm::load_acquire(&c->head);
  st->tail = shm::load_acquire(&c->tail);
  st->lost = shm::load_relaxed(&c->lost);
  return 0;
}

}  // extern "C"
