// LPM trie: a binary (path-compressed) trie over the key's data bits, keys
// being {u32 prefixlen; u8 data[key_size - 4]} as in the kernel. Each node
// holds a prefix; a node's children extend its prefix, chosen by the first
// bit past it. Intermediate nodes (no value) appear where two prefixes part
// and always have two children.
//
// Concurrency: writers serialise on the map-wide seqlock word (seqlock in the
// header); readers walk without locks and retry if the word changed (at most
// shm::kReadRetries times). A writer that takes the lock over from a dead one
// recounts the live entries (lpm_repair). Nodes are retired inside the
// write section and reused only by a later write section, so by the time a
// node is reused the word has changed and any reader that saw it retries.
#include "map_internal.h"

namespace bpfhook::maps {
namespace {

enum : uint32_t { kIntermediate = 1 };

struct Node {
  uint32_t child[2];
  uint32_t prefixlen;
  uint32_t flags;
};

Node *node_at(const bh_map *m, uint32_t idx) {
  return reinterpret_cast<Node *>(m->a + uint64_t(idx - 1) * m->elem_size);
}
uint8_t *node_data(Node *n) { return reinterpret_cast<uint8_t *>(n) + sizeof(Node); }
uint8_t *node_value(const bh_map *m, Node *n) { return node_data(n) + round8(m->key_size - 4); }
uint32_t data_bytes(const bh_map *m) { return m->key_size - 4; }
uint32_t max_prefix(const bh_map *m) { return data_bytes(m) * 8; }

uint32_t bit(const uint8_t *data, uint32_t index) { return (data[index / 8] >> (7 - index % 8)) & 1u; }

// Leading bits that `a` and `b` share, at most `limit`.
uint32_t common_bits(const uint8_t *a, const uint8_t *b, uint32_t limit) {
  uint32_t bits = 0;
  uint32_t i = 0;
  // Eight bytes at a time while both have them; big-endian so the first
  // differing bit is the highest set bit of the XOR.
  for (; bits + 64 <= limit; i += 8, bits += 64) {
    uint64_t x = __builtin_bswap64(load64(a + i)) ^ __builtin_bswap64(load64(b + i));
    if (x != 0) {
      uint32_t n = bits + uint32_t(__builtin_clzll(x));
      return n < limit ? n : limit;
    }
  }
  for (; bits < limit; i++, bits += 8) {
    uint32_t x = uint32_t(a[i] ^ b[i]);
    if (x != 0) {
      uint32_t n = bits + uint32_t(__builtin_clz(x)) - 24;
      return n < limit ? n : limit;
    }
  }
  return limit;
}

uint32_t match(const bh_map *m, Node *n, uint32_t node_prefix, const uint8_t *key_data, uint32_t key_prefix) {
  uint32_t limit = node_prefix < key_prefix ? node_prefix : key_prefix;
  if (limit > max_prefix(m)) limit = max_prefix(m);
  return common_bits(node_data(n), key_data, limit);
}

// Node pool, under the write lock only: plain loads and stores suffice
// between writers; each cursor is read once and checked, since another
// process can write any value. Returns 0 when full, kBadNode when corrupt.
constexpr uint32_t kBadNode = UINT32_MAX;
uint32_t node_alloc(bh_map *m) {
  MapHeader *h = m->hdr;
  uint32_t idx = shm::load_relaxed(&h->node_free);
  if (idx != 0) {
    if (!index_ok(m, idx)) return kBadNode;
    h->node_free = node_at(m, idx)->child[0];
    shm::fence_release();  // same reuse rule as the hash pool
    return idx;
  }
  uint32_t next = shm::load_relaxed(&h->node_next);
  if (next < m->pool_size) {
    h->node_next = next + 1;
    return next + 1;
  }
  return 0;
}

void node_free(bh_map *m, uint32_t idx) {
  Node *n = node_at(m, idx);
  shm::store_relaxed(&n->child[0], m->hdr->node_free);
  shm::store_relaxed(&n->child[1], 0u);
  m->hdr->node_free = idx;
}

uint32_t new_node(bh_map *m, uint32_t prefixlen, uint32_t flags, const uint8_t *data, const void *value) {
  uint32_t idx = node_alloc(m);
  if (idx == 0 || idx == kBadNode) return idx;
  Node *n = node_at(m, idx);
  n->child[0] = 0;
  n->child[1] = 0;
  n->prefixlen = prefixlen;
  n->flags = flags;
  memcpy(node_data(n), data, data_bytes(m));
  if (value != nullptr) memcpy(node_value(m, n), value, m->value_size);
  return idx;
}

// Lock-free longest-prefix match: the node index or 0; *bad set when a
// stable walk met an index or prefix length out of bounds (counted).
uint32_t find(const bh_map *m, const void *key, bool *bad) {
  const auto *k = static_cast<const uint8_t *>(key);
  uint32_t kp = load32(k);
  const uint8_t *kd = k + 4;
  const uint32_t max = max_prefix(m);
  if (kp > max) kp = max;
  for (uint32_t tries = 0;; tries++) {
    uint64_t seen = shm::SeqLock::read_begin(&m->hdr->seqlock);
    uint32_t found = 0;
    uint32_t steps = 0;
    *bad = false;
    for (uint32_t idx = shm::load_acquire(&m->hdr->root); idx != 0;) {
      if (idx > m->pool_size || ++steps > m->pool_size) {
        *bad = true;
        break;
      }
      Node *n = node_at(m, idx);
      uint32_t np = shm::load_relaxed(&n->prefixlen);
      if (np > max) {
        *bad = true;
        break;
      }
      uint32_t ml = match(m, n, np, kd, kp);
      bool real = (shm::load_relaxed(&n->flags) & kIntermediate) == 0;
      if (ml == max) {  // a full-length match cannot be beaten
        if (real) found = idx;
        break;
      }
      if (ml < np) break;
      if (real) found = idx;
      if (np >= kp) break;  // nothing below is a prefix of the key
      idx = shm::load_acquire(&n->child[bit(kd, np)]);
    }
    if (!shm::SeqLock::read_changed(&m->hdr->seqlock, seen)) {
      if (*bad) corrupt(m);
      return found;
    }
    if (tries == shm::kReadRetries) {
      count_busy(m);
      return 0;
    }
  }
}

// After a takeover: the dead writer may have linked or unlinked a node
// without fixing `count`. Recount the real nodes reachable from the root
// (bounded by the pool, without allocating: this can run inside a probe).
void lpm_repair(bh_map *m) {
  uint32_t stack[4 * 256 * 8 / 4 + 2];
  uint32_t depth = 0;
  uint32_t real = 0;
  uint32_t steps = 0;
  if (m->hdr->root != 0 && m->hdr->root <= m->pool_size) stack[depth++] = m->hdr->root;
  while (depth > 0 && ++steps <= m->pool_size) {
    Node *n = node_at(m, stack[--depth]);
    if ((n->flags & kIntermediate) == 0) real++;
    for (uint32_t c : n->child) {
      if (c != 0 && c <= m->pool_size && depth < sizeof(stack) / sizeof(stack[0])) stack[depth++] = c;
    }
  }
  m->hdr->count = real;
}

// Takes the writers' lock; false (and the caller returns *err) if it cannot.
bool write_lock(bh_map *m, bool user, long *err) {
  const int rc = shm::SeqLock::write_lock(&m->hdr->seqlock, wait_for(user));
  if (!locked(m, rc)) {
    *err = lock_failure(rc, user);
    return false;
  }
  if (rc == shm::kTakenOver) lpm_repair(m);
  return true;
}

// Releases the writers' lock at the end of a scope that holds it.
struct WriteUnlock {
  bh_map *m;
  ~WriteUnlock() { shm::SeqLock::write_unlock(&m->hdr->seqlock); }
};

}  // namespace

void *lpm_lookup(bh_map *m, const void *key) {
  bool bad = false;
  uint32_t idx = find(m, key, &bad);
  return idx != 0 ? node_value(m, node_at(m, idx)) : nullptr;
}

int lpm_lookup_copy(bh_map *m, const void *key, void *out) {
  // Copy inside a read section so the value is one node's, whole.
  for (uint32_t tries = 0;; tries++) {
    uint64_t seen = shm::SeqLock::read_begin(&m->hdr->seqlock);
    bool bad = false;
    uint32_t idx = find(m, key, &bad);
    if (idx != 0) memcpy(out, node_value(m, node_at(m, idx)), m->value_size);
    if (!shm::SeqLock::read_changed(&m->hdr->seqlock, seen)) {
      if (bad && idx == 0) return int(kCorrupt);  // find() counted it
      return idx != 0 ? 0 : -ENOENT;
    }
    if (tries == shm::kReadRetries) {
      count_busy(m);
      return -EBUSY;
    }
  }
}

long lpm_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool user) {
  if (flags > BH_EXIST) return -EINVAL;
  const auto *k = static_cast<const uint8_t *>(key);
  uint32_t kp = load32(k);
  const uint8_t *kd = k + 4;
  const uint32_t max = max_prefix(m);
  if (kp > max) return -EINVAL;
  MapHeader *h = m->hdr;
  uint32_t retired = 0;
  long ret = 0;
  {
    if (!write_lock(m, user, &ret)) return ret;
    WriteUnlock unlock{m};
    // Walk down while the node's prefix is a strict prefix of the key's.
    // Indices and prefix lengths come from the region: each is read once
    // and checked, and the walk is bounded by the pool.
    uint32_t *slot = &h->root;
    uint32_t idx = shm::load_relaxed(slot);
    uint32_t ml = 0;
    uint32_t np = 0;
    uint32_t steps = 0;
    while (idx != 0) {
      if (!index_ok(m, idx) || ++steps > m->pool_size) return corrupt(m);
      Node *n = node_at(m, idx);
      np = shm::load_relaxed(&n->prefixlen);
      ml = match(m, n, np, kd, kp);
      if (np != ml || np == kp || np == max) break;
      slot = &n->child[bit(kd, np)];
      idx = shm::load_relaxed(slot);
    }
    Node *n = idx != 0 ? node_at(m, idx) : nullptr;
    if (n != nullptr && np == kp && ml == kp) {
      // The prefix has a node: replace it by a fresh copy (readers see the
      // old value or the new, whole) that keeps its children.
      bool real = (n->flags & kIntermediate) == 0;
      if (real && flags == BH_NOEXIST) return -EEXIST;
      if (!real && flags == BH_EXIST) return -ENOENT;
      if (!real && h->count >= m->max_entries) return -ENOSPC;
      uint32_t fresh = new_node(m, kp, 0, kd, value);
      if (fresh == 0) return -ENOMEM;
      if (fresh == kBadNode) return corrupt(m);
      Node *f = node_at(m, fresh);
      f->child[0] = n->child[0];
      f->child[1] = n->child[1];
      shm::store_release(slot, fresh);
      if (!real) h->count++;
      retired = idx;
    } else {
      if (flags == BH_EXIST) return -ENOENT;
      // The kernel's trie reports a full map as -ENOSPC.
      if (h->count >= m->max_entries) return -ENOSPC;
      uint32_t fresh = new_node(m, kp, 0, kd, value);
      if (fresh == 0) return -ENOMEM;
      if (fresh == kBadNode) return corrupt(m);
      if (n == nullptr) {
        shm::store_release(slot, fresh);
      } else if (ml == kp) {
        // The new prefix is shorter and covers the node: it becomes the
        // node's parent.
        node_at(m, fresh)->child[bit(node_data(n), kp)] = idx;
        shm::store_release(slot, fresh);
      } else {
        // The prefixes part at bit ml: an intermediate node holds both.
        uint32_t im = new_node(m, ml, kIntermediate, kd, nullptr);
        if (im == 0 || im == kBadNode) {
          node_free(m, fresh);
          return im == 0 ? -ENOMEM : corrupt(m);
        }
        Node *i = node_at(m, im);
        uint32_t side = bit(kd, ml);
        i->child[side] = fresh;
        i->child[side ^ 1u] = idx;
        shm::store_release(slot, im);
      }
      h->count++;
    }
    if (retired != 0) node_free(m, retired);
  }
  return ret;
}

long lpm_delete(bh_map *m, const void *key, bool user) {
  const auto *k = static_cast<const uint8_t *>(key);
  uint32_t kp = load32(k);
  const uint8_t *kd = k + 4;
  if (kp > max_prefix(m)) return -EINVAL;
  MapHeader *h = m->hdr;
  long err = 0;
  if (!write_lock(m, user, &err)) return err;
  WriteUnlock unlock{m};
  uint32_t *slot = &h->root;
  uint32_t *parent_slot = nullptr;
  uint32_t parent = 0;
  uint32_t idx = shm::load_relaxed(slot);
  uint32_t ml = 0;
  uint32_t np = 0;
  uint32_t steps = 0;
  while (idx != 0) {
    if (!index_ok(m, idx) || ++steps > m->pool_size) return corrupt(m);  // as in lpm_update
    Node *n = node_at(m, idx);
    np = shm::load_relaxed(&n->prefixlen);
    ml = match(m, n, np, kd, kp);
    if (np != ml || np == kp) break;
    parent_slot = slot;
    parent = idx;
    slot = &n->child[bit(kd, np)];
    idx = shm::load_relaxed(slot);
  }
  if (idx == 0) return -ENOENT;
  Node *n = node_at(m, idx);
  if (np != kp || ml != kp || (n->flags & kIntermediate) != 0) return -ENOENT;
  h->count--;
  if (n->child[0] != 0 && n->child[1] != 0) {
    // Still needed as a branch point: it just stops holding a value.
    shm::store_release(&n->flags, uint32_t(kIntermediate));
    return 0;
  }
  if (parent != 0 && (node_at(m, parent)->flags & kIntermediate) != 0 && n->child[0] == 0 && n->child[1] == 0) {
    // A leaf under an intermediate node: the intermediate has no reason to
    // exist any more; its other child takes its place.
    Node *p = node_at(m, parent);
    uint32_t sibling = p->child[0] == idx ? p->child[1] : p->child[0];
    shm::store_release(parent_slot, sibling);
    node_free(m, parent);
    node_free(m, idx);
    return 0;
  }
  shm::store_release(slot, n->child[0] != 0 ? n->child[0] : n->child[1]);
  node_free(m, idx);
  return 0;
}

// Iterates real nodes in post-order (more specific prefixes before the
// prefixes that cover them, as the kernel's trie does). A missing or NULL
// key restarts from the first. Runs under the write lock: user space only.
int lpm_next_key(bh_map *m, const void *key, void *next) {
  MapHeader *h = m->hdr;
  long err = 0;
  if (!write_lock(m, true, &err)) return int(err);
  WriteUnlock unlock{m};
  const uint32_t db = data_bytes(m);
  // Iterative post-order with an explicit stack (depth <= max prefix + 1).
  struct Frame {
    uint32_t idx;
    uint8_t state;
  };
  Frame stack[4 * 256 * 8 / 4 + 2];
  uint32_t depth = 0;
  bool take_next = key == nullptr;
  bool matched = false;
  const auto *k = static_cast<const uint8_t *>(key);
  // Indices, prefix lengths and the walk's length all come from the
  // region: anything out of bounds (or a cycle) fails the call.
  const uint32_t root = shm::load_relaxed(&h->root);
  if (root != 0) {
    if (!index_ok(m, root)) return int(corrupt(m));
    stack[depth++] = {root, 0};
  }
  uint32_t first = 0;
  uint32_t steps = 0;
  while (depth > 0) {
    if (++steps > 4 * m->pool_size + 8) return int(corrupt(m));
    Frame &f = stack[depth - 1];
    Node *n = node_at(m, f.idx);
    if (f.state < 2) {
      uint32_t c = shm::load_relaxed(&n->child[f.state++]);
      if (c == 0) continue;
      if (!index_ok(m, c) || depth >= sizeof(stack) / sizeof(stack[0])) return int(corrupt(m));
      stack[depth++] = {c, 0};
      continue;
    }
    depth--;
    if ((n->flags & kIntermediate) != 0) continue;
    const uint32_t np = shm::load_relaxed(&n->prefixlen);
    if (np > max_prefix(m)) return int(corrupt(m));
    if (first == 0) first = f.idx;
    if (take_next) {
      memcpy(next, &np, 4);
      memcpy(static_cast<uint8_t *>(next) + 4, node_data(n), db);
      return 0;
    }
    if (!matched && load32(k) == np && common_bits(node_data(n), k + 4, np) == np) {
      matched = true;
      take_next = true;
    }
  }
  if (matched) return -ENOENT;  // key was the last one
  if (first == 0) return -ENOENT;
  Node *n = node_at(m, first);
  const uint32_t np = shm::load_relaxed(&n->prefixlen);
  if (np > max_prefix(m)) return int(corrupt(m));  // changed since the walk
  memcpy(next, &np, 4);
  memcpy(static_cast<uint8_t *>(next) + 4, node_data(n), db);
  return 0;
}

}  // namespace bpfhook::maps
