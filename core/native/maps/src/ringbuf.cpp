// Ring buffer (BPF_MAP_TYPE_RINGBUF semantics): many producers, one
// consumer, records in reservation order.
//
// Each record is an 8-byte header {len | BUSY | DISCARD, offset / 8} and the
// sample, padded to 8 bytes. Producers serialise on a spinlock only to claim
// space (the kernel does the same): under the lock a producer checks room
// against consumer_pos, writes its header with BUSY set and publishes
// producer_pos; it then fills the sample without the lock and clears BUSY
// (submit) or sets DISCARD (discard). The consumer reads records in order up
// to the first BUSY one, so a slow producer holds back later records but
// never reorders them.
//
// The kernel maps the data area twice back to back so that a record may run
// over the end. A region is one mapping, so here a record that would cross
// the end is preceded by a padding record (DISCARD set) that fills the rest
// of the ring, and starts at offset 0. A full ring refuses the reservation
// and counts a drop.
//
// Producers may die (another process maps the region): a reservation whose
// producer died before submitting would stay BUSY and hold the consumer back
// forever. So each record header carries its producer's tid (in pg_off,
// whose kernel meaning, a page offset, has no use here), and a consumer that
// stops at the same BUSY record twice in a row asks whether that producer
// still exists; if not, it discards the record and goes on.
#include "map_internal.h"

namespace bpfhook::maps {
namespace {

constexpr uint32_t kFlagBits = BH_RINGBUF_BUSY_BIT | BH_RINGBUF_DISCARD_BIT;

RingRecordHeader *record_at(bh_map *m, uint64_t pos) {
  return reinterpret_cast<RingRecordHeader *>(m->a + (pos & (m->ring_size - 1)));
}

void finish(void *sample, uint32_t set) {
  auto *hdr = reinterpret_cast<RingRecordHeader *>(static_cast<uint8_t *>(sample) - BH_RINGBUF_HDR_SZ);
  uint32_t len = shm::load_relaxed(&hdr->len);
  // Release: the consumer that sees BUSY clear sees the sample's bytes.
  shm::store_release(&hdr->len, (len & ~BH_RINGBUF_BUSY_BIT) | set);
}

}  // namespace
}  // namespace bpfhook::maps

using namespace bpfhook::maps;

extern "C" {

void *bh_ringbuf_reserve(bh_map *m, uint64_t size, uint64_t flags) {
  if (m == nullptr || m->type != BH_MAP_TYPE_RINGBUF || flags != 0) return nullptr;
  const uint64_t cap = m->ring_size;
  if (size > cap || size > (uint64_t(1) << 28)) return nullptr;  // can never fit: not a drop
  const uint64_t total = align_up(size + BH_RINGBUF_HDR_SZ, 8);
  if (total > cap) return nullptr;
  MapHeader *h = m->hdr;
  // Nothing to repair after a takeover: nothing is visible before
  // producer_pos moves, and that is the last store under the lock.
  if (!locked(m, shm::spin_lock(&h->lock, shm::Wait::kProbe))) {
    // A record the producer could not write is a lost record to the
    // consumer, whatever the reason (full ring, or a lock held past the
    // probe budget): counted in drops as well as in the busy count.
    shm::fetch_add_relaxed(&h->drops, uint64_t(1));
    return nullptr;
  }
  const uint32_t me = shm::self_tid();
  uint64_t cons = shm::load_acquire(&h->consumer_pos);
  uint64_t prod = shm::load_relaxed(&h->producer_pos);
  if ((prod & 7) != 0) {
    // Records start at 8-byte positions, so headers never cross the ring's
    // end; a position another process misaligned would make them.
    shm::spin_unlock(&h->lock);
    corrupt(m);
    return nullptr;
  }
  uint64_t off = prod & (cap - 1);
  uint64_t pad = off + total > cap ? cap - off : 0;
  if (prod + pad + total - cons > cap) {
    shm::spin_unlock(&h->lock);
    shm::fetch_add_relaxed(&h->drops, uint64_t(1));
    return nullptr;
  }
  if (pad != 0) {
    RingRecordHeader *p = record_at(m, prod);
    p->pg_off = me;
    shm::store_relaxed(&p->len, uint32_t(pad - BH_RINGBUF_HDR_SZ) | BH_RINGBUF_DISCARD_BIT);
    prod += pad;
  }
  RingRecordHeader *r = record_at(m, prod);
  r->pg_off = me;
  shm::store_relaxed(&r->len, uint32_t(size) | BH_RINGBUF_BUSY_BIT);
  // Release: a consumer that sees the new position sees the headers above.
  shm::store_release(&h->producer_pos, prod + total);
  shm::spin_unlock(&h->lock);
  return reinterpret_cast<uint8_t *>(r) + BH_RINGBUF_HDR_SZ;
}

void bh_ringbuf_submit(void *sample, uint64_t) {
  if (sample != nullptr) finish(sample, 0);
}

void bh_ringbuf_discard(void *sample, uint64_t) {
  if (sample != nullptr) finish(sample, BH_RINGBUF_DISCARD_BIT);
}

long bh_ringbuf_output(bh_map *m, const void *data, uint64_t size, uint64_t flags) {
  if (m == nullptr || m->type != BH_MAP_TYPE_RINGBUF) return -EINVAL;
  if ((flags & ~(BH_RB_NO_WAKEUP | BH_RB_FORCE_WAKEUP)) != 0) return -EINVAL;
  void *sample = bh_ringbuf_reserve(m, size, 0);
  if (sample == nullptr) return -EAGAIN;  // the kernel's answer when there is no room
  memcpy(sample, data, size);
  finish(sample, 0);
  return 0;
}

uint64_t bh_ringbuf_query(bh_map *m, uint64_t flags) {
  if (m == nullptr || m->type != BH_MAP_TYPE_RINGBUF) return 0;
  MapHeader *h = m->hdr;
  switch (flags) {
    case BH_RB_AVAIL_DATA: return shm::load_acquire(&h->producer_pos) - shm::load_acquire(&h->consumer_pos);
    case BH_RB_RING_SIZE: return m->ring_size;
    case BH_RB_CONS_POS: return shm::load_acquire(&h->consumer_pos);
    case BH_RB_PROD_POS: return shm::load_acquire(&h->producer_pos);
    default: return 0;
  }
}

int bh_ringbuf_consume(bh_map *m, bh_ringbuf_sample_fn fn, void *ctx, uint32_t max_records) {
  if (m == nullptr || m->type != BH_MAP_TYPE_RINGBUF || fn == nullptr) return -EINVAL;
  MapHeader *h = m->hdr;
  // Another live consumer: -EBUSY; one that died holding it: taken over.
  const int lock_rc = shm::spin_trylock(&h->consumer_lock);
  if (lock_rc < 0) return -EBUSY;
  if (lock_rc == shm::kTakenOver) count_takeover(m);
  uint64_t cons = shm::load_relaxed(&h->consumer_pos);
  const uint64_t cap = m->ring_size;
  int delivered = 0;
  bool bad = false;
  for (;;) {
    uint64_t prod = shm::load_acquire(&h->producer_pos);
    if (cons == prod) break;
    // Positions and lengths come from the region. Producers never get more
    // than the ring ahead of the consumer, and a record never crosses the
    // end of the ring (padding records fill it) nor runs past `prod`: a
    // record that would is corrupt and is never handed out.
    if (cons > prod || prod - cons > cap || (cons & 7) != 0) {
      bad = true;
      break;
    }
    RingRecordHeader *r = record_at(m, cons);
    uint32_t len = shm::load_acquire(&r->len);
    if ((len & BH_RINGBUF_BUSY_BIT) != 0) {
      // Not submitted yet: keep order. Unless it was already in flight at
      // the last pass and its producer is gone: then it never will be.
      if (h->stalled_pos != cons + 1) {
        h->stalled_pos = cons + 1;  // + 1: position 0 is a real position
        break;
      }
      if (!shm::owner_dead(shm::load_relaxed(&r->pg_off))) break;
      uint32_t dead = (len & ~BH_RINGBUF_BUSY_BIT) | BH_RINGBUF_DISCARD_BIT;
      if (!__atomic_compare_exchange_n(&r->len, &len, dead, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
      count_takeover(m);
      len = dead;
    }
    uint32_t size = len & ~kFlagBits;
    uint64_t total = align_up(uint64_t(size) + BH_RINGBUF_HDR_SZ, 8);
    if (total > prod - cons || (cons & (cap - 1)) + total > cap) {
      bad = true;
      break;
    }
    bool stop = false;
    if ((len & BH_RINGBUF_DISCARD_BIT) == 0) {
      stop = fn(ctx, reinterpret_cast<uint8_t *>(r) + BH_RINGBUF_HDR_SZ, size) != 0;
      delivered++;
    }
    cons += total;
    // Release: the producer may overwrite the record only after we read it.
    shm::store_release(&h->consumer_pos, cons);
    if (stop || (max_records != 0 && uint32_t(delivered) >= max_records)) break;
  }
  shm::spin_unlock(&h->consumer_lock);
  // Records delivered before the corrupt one are not lost: they are
  // returned now, and the next call reports the corruption.
  if (bad) {
    corrupt(m);
    if (delivered == 0) return int(kCorrupt);
  }
  return delivered;
}

int bh_ringbuf_get_stats(bh_map *m, bh_ringbuf_stats *st) {
  if (m == nullptr || st == nullptr || m->type != BH_MAP_TYPE_RINGBUF) return -EINVAL;
  MapHeader *h = m->hdr;
  st->size = m->ring_size;
  st->consumer_pos = shm::load_acquire(&h->consumer_pos);
  st->producer_pos = shm::load_acquire(&h->producer_pos);
  st->drops = shm::load_relaxed(&h->drops);
  return 0;
}

}  // extern "C"
