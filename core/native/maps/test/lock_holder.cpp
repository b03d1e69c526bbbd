// Test helper for test/25.region-locks: opens a region and a map by name in
// a process of its own, takes one of the map's locks through the real lock
// functions (so the word holds this thread's tid), prints "held" and sleeps
// until it is killed. The test kills it with SIGKILL (a holder that died) or
// leaves it alive (a live holder), then checks that others go on.
//
//   region_lock_holder REGION MAP KIND [ARG]
//   KIND: hash KEY (u32 key's bucket), lpm, queue, ringbuf-prod, ringbuf-cons,
//         ringbuf-reserve (a record reserved, never submitted), perf-prod RING,
//         perf-cons RING, stack ID (bucket left half written), region (MAP
//         ignored: the directory lock), hammer-hash (updates in a loop with
//         the map's value size until killed; prints "running")
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "map_internal.h"

using namespace bpfhook::maps;
namespace shm = bpfhook::shm;

static int fail(const char *what, int err) {
  fprintf(stderr, "region_lock_holder: %s: %s\n", what, strerror(-err));
  return 2;
}

static void held_forever(const char *word) {
  printf("%s\n", word);
  fflush(stdout);
  for (;;) pause();
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: region_lock_holder REGION MAP KIND [ARG]\n");
    return 2;
  }
  const char *kind = argv[3];
  const uint32_t arg = argc > 4 ? uint32_t(strtoul(argv[4], nullptr, 0)) : 0;
  bh_region *r = nullptr;
  int err = bh_region_open(argv[1], &r);
  if (err != 0) return fail("open region", err);
  if (strcmp(kind, "region") == 0) {
    auto *h = static_cast<bh_region_header *>(bh_region_base(r));
    if (shm::spin_lock(&h->lock, shm::Wait::kUser) < 0) return fail("directory lock", -EBUSY);
    held_forever("held");
  }
  bh_map *m = nullptr;
  err = bh_map_open_by_name(r, argv[2], &m);
  if (err != 0) return fail("open map", err);
  int rc = 0;
  if (strcmp(kind, "hash") == 0) {
    rc = shm::SeqLock::write_lock(&bucket_for(m, hash_key(m, &arg))->seq, shm::Wait::kUser);
  } else if (strcmp(kind, "lpm") == 0) {
    rc = shm::SeqLock::write_lock(&m->hdr->seqlock, shm::Wait::kUser);
  } else if (strcmp(kind, "queue") == 0 || strcmp(kind, "ringbuf-prod") == 0) {
    rc = shm::spin_lock(&m->hdr->lock, shm::Wait::kUser);
  } else if (strcmp(kind, "ringbuf-cons") == 0) {
    rc = shm::spin_lock(&m->hdr->consumer_lock, shm::Wait::kUser);
  } else if (strcmp(kind, "ringbuf-reserve") == 0) {
    void *p = bh_ringbuf_reserve(m, 16, 0);
    if (p == nullptr) return fail("reserve", -ENOSPC);
    memset(p, 0xee, 16);
  } else if (strcmp(kind, "perf-prod") == 0 || strcmp(kind, "perf-cons") == 0) {
    if (arg >= m->pool_size) return fail("perf ring", -E2BIG);
    PerfRingCtl *c = reinterpret_cast<PerfRingCtl *>(m->a) + arg;
    rc = shm::spin_lock(strcmp(kind, "perf-prod") == 0 ? &c->lock : &c->consumer_lock, shm::Wait::kUser);
  } else if (strcmp(kind, "stack") == 0) {
    if (arg > m->bucket_mask) return fail("stack id", -E2BIG);
    auto *b = reinterpret_cast<StackBucket *>(m->a + uint64_t(arg) * m->elem_size);
    rc = shm::SeqLock::write_lock(&b->seq, shm::Wait::kUser);
    // Half a write: the frames change, the hash does not.
    auto *frames = reinterpret_cast<uint64_t *>(b + 1);
    for (uint32_t k = 0; k < m->value_size / 8; k++) frames[k] = 0xdead0000 + k;
    b->nr = m->value_size / 8;
  } else if (strcmp(kind, "hammer-hash") == 0) {
    std::vector<uint8_t> value(m->value_size, 0x5a);
    for (uint64_t i = 0;; i++) {
      const uint32_t key = uint32_t(i % 4);
      memcpy(value.data(), &i, sizeof(i));
      err = bh_map_update(m, &key, value.data(), 0);
      if (err != 0) return fail("update", err);
      if (i == 0) {
        printf("running\n");
        fflush(stdout);
      }
    }
  } else {
    fprintf(stderr, "region_lock_holder: unknown kind '%s'\n", kind);
    return 2;
  }
  if (rc < 0) return fail("lock", rc);
  held_forever("held");
}
