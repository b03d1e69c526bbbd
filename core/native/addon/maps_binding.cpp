// Node binding of the shared region and the maps (core/native/region,
// core/native/maps). Thin on purpose: data operations return 0 or a negative
// errno and TypeScript (core/src/maps) builds the error with the map's name
// and context; only misuse (wrong argument types, a closed handle, a buffer
// too small) throws here. Handles are Node-API externals carrying a type tag,
// so a foreign external can never be taken for a map.
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "addon.h"
#include "bpfhook/maps.h"
#include "bpfhook/region.h"

namespace bpfhook::addon {

namespace {

constexpr napi_type_tag kRegionTag = {0x6270666872656731ull, 0x3c6f5a1e2b9d4471ull};
constexpr napi_type_tag kMapTag = {0x627066686d617031ull, 0x91d2a7c44e0b5f13ull};

struct RegionRef {
  bh_region *region = nullptr;
};
struct MapRef {
  bh_map *map = nullptr;
};

// The region SharedRegionBounds reports (checked-mode programs may access
// it). Holds a reference so the mapping outlives a close() of its handle.
std::mutex g_default_mu;
bh_region *g_default_region = nullptr;

Napi::Error BadArg(Napi::Env env, const std::string &msg) { return MakeError(env, "BAD_ARGUMENT", msg); }

bh_region *GetRegion(const Napi::CallbackInfo &info, size_t i, const char *fn) {
  Napi::Value v = info[i];
  if (!v.IsExternal() || !v.As<Napi::External<RegionRef>>().CheckTypeTag(&kRegionTag)) {
    throw BadArg(info.Env(), std::string(fn) + ": argument " + std::to_string(i) + " is not a region handle");
  }
  RegionRef *ref = v.As<Napi::External<RegionRef>>().Data();
  if (ref->region == nullptr) throw BadArg(info.Env(), std::string(fn) + ": region is closed");
  return ref->region;
}

bh_map *GetMap(const Napi::CallbackInfo &info, const char *fn) {
  Napi::Value v = info[0];
  if (!v.IsExternal() || !v.As<Napi::External<MapRef>>().CheckTypeTag(&kMapTag)) {
    throw BadArg(info.Env(), std::string(fn) + ": argument 0 is not a map handle");
  }
  MapRef *ref = v.As<Napi::External<MapRef>>().Data();
  if (ref->map == nullptr) throw BadArg(info.Env(), std::string(fn) + ": map is closed");
  return ref->map;
}

struct Bytes {
  uint8_t *data = nullptr;
  size_t len = 0;
};

// A Uint8Array (Buffer) argument of at least `min` bytes; null/undefined
// gives {nullptr, 0} when `nullable`.
Bytes GetBytes(const Napi::CallbackInfo &info, size_t i, size_t min, bool nullable, const char *fn, const char *what) {
  Napi::Value v = info[i];
  if (nullable && (v.IsNull() || v.IsUndefined())) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw BadArg(info.Env(), std::string(fn) + ": " + what + " must be a Uint8Array");
  }
  auto arr = v.As<Napi::Uint8Array>();
  if (arr.ByteLength() < min) {
    throw BadArg(info.Env(), std::string(fn) + ": " + what + " has " + std::to_string(arr.ByteLength()) +
                                 " bytes, needs " + std::to_string(min));
  }
  return {arr.Data(), arr.ByteLength()};
}

// Keys: maps with key_size 0 (queue, stack, ring buffer) take none.
const void *GetKey(const Napi::CallbackInfo &info, size_t i, bh_map *m, bool nullable, const char *fn) {
  uint32_t ks = bh_map_get_info(m)->key_size;
  Bytes b = GetBytes(info, i, ks, nullable || ks == 0, fn, "key");
  return b.data;
}

uint64_t GetU64(const Napi::CallbackInfo &info, size_t i) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return uint64_t(v.As<Napi::Number>().Int64Value());
  return 0;
}

uint32_t GetU32(const Napi::CallbackInfo &info, size_t i, uint32_t def = 0) {
  Napi::Value v = info[i];
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : def;
}

Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
Napi::Value Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

Napi::Value WrapRegion(Napi::Env env, bh_region *r) {
  auto ext = Napi::External<RegionRef>::New(env, new RegionRef{r}, [](Napi::Env, RegionRef *ref) {
    // Garbage-collected without close(): drop our reference, as close would.
    if (ref->region != nullptr) bh_region_close(ref->region);
    delete ref;
  });
  ext.TypeTag(&kRegionTag);
  return ext;
}

Napi::Value WrapMap(Napi::Env env, bh_map *m) {
  auto ext = Napi::External<MapRef>::New(env, new MapRef{m}, [](Napi::Env, MapRef *ref) {
    if (ref->map != nullptr) bh_map_close(ref->map);
    delete ref;
  });
  ext.TypeTag(&kMapTag);
  return ext;
}

// ---- region ----

// regionCreate(name | null, size, maxMaps) -> handle | -errno (null: a random name)
Napi::Value RegionCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bool random_name = info[0].IsNull() || info[0].IsUndefined();
  if (!random_name && !info[0].IsString()) throw BadArg(env, "regionCreate: name must be a string or null");
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = uint64_t(info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0);
  o.max_maps = GetU32(info, 2);
  bh_region *r = nullptr;
  std::string name = random_name ? std::string() : info[0].As<Napi::String>().Utf8Value();
  int err = bh_region_create(random_name ? nullptr : name.c_str(), &o, &r);
  if (err != 0) return Num(env, err);
  return WrapRegion(env, r);
}

// regionOpen(name) -> handle | -errno
Napi::Value RegionOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw BadArg(env, "regionOpen: name must be a string");
  bh_region *r = nullptr;
  int err = bh_region_open(info[0].As<Napi::String>().Utf8Value().c_str(), &r);
  if (err != 0) return Num(env, err);
  return WrapRegion(env, r);
}

Napi::Value RegionClose(const Napi::CallbackInfo &info) {
  Napi::Value v = info[0];
  if (v.IsExternal() && v.As<Napi::External<RegionRef>>().CheckTypeTag(&kRegionTag)) {
    RegionRef *ref = v.As<Napi::External<RegionRef>>().Data();
    if (ref->region != nullptr) bh_region_close(ref->region);
    ref->region = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value RegionInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_region *r = GetRegion(info, 0, "regionInfo");
  auto *h = static_cast<const bh_region_header *>(bh_region_base(r));
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, bh_region_name(r)));
  o.Set("size", Num(env, double(bh_region_size(r))));
  o.Set("used", Num(env, double(bh_region_used(r))));
  o.Set("generation", Num(env, double(bh_region_generation(r))));
  o.Set("ncpus", Num(env, bh_region_ncpus(r)));
  o.Set("layoutVersion", Num(env, h->layout_version));
  o.Set("mapCount", Num(env, bh_region_map_count(r)));
  o.Set("maxMaps", Num(env, bh_region_map_capacity(r)));
  o.Set("owner", Napi::Boolean::New(env, bh_region_is_owner(r) != 0));
  o.Set("creatorPid", Num(env, h->creator_pid));
  o.Set("liveMaps", Num(env, bh_region_live_maps(r)));
  o.Set("freeBytes", Num(env, double(bh_region_free_bytes(r))));
  o.Set("baseAddress", Big(env, uint64_t(uintptr_t(bh_region_base(r)))));
  return o;
}

Napi::Object DescToObject(Napi::Env env, const bh_region_map_desc *d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", Num(env, d->index));
  o.Set("name", Napi::String::New(env, std::string(d->name, strnlen(d->name, BH_REGION_NAME_MAX))));
  o.Set("type", Num(env, d->type));
  o.Set("keySize", Num(env, d->key_size));
  o.Set("valueSize", Num(env, d->value_size));
  o.Set("maxEntries", Num(env, d->max_entries));
  o.Set("flags", Num(env, d->map_flags));
  o.Set("mapExtra", Big(env, d->map_extra));
  o.Set("storageOffset", Num(env, double(d->storage_off)));
  o.Set("storageSize", Num(env, double(d->storage_size)));
  return o;
}

Napi::Value RegionMaps(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_region *r = GetRegion(info, 0, "regionMaps");
  // A corrupt directory is an error, not a list of garbage entries.
  int err = bh_region_check_directory(r);
  if (err != 0) return Num(env, err);
  uint32_t n = bh_region_map_count(r);
  Napi::Array arr = Napi::Array::New(env);
  uint32_t k = 0;
  bh_region_map_desc d;
  for (uint32_t i = 0; i < n; i++) {
    if (bh_region_map_read(r, i, &d) == 0) arr.Set(k++, DescToObject(env, &d));  // freed entries are skipped
  }
  return arr;
}

// regionCleanStale() -> [{name, pid}] removed | -errno
Napi::Value RegionCleanStale(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<std::pair<std::string, uint32_t>> removed;
  // regionCleanStale(keep?: string[]): names spared.
  std::vector<std::string> keep;
  if (info.Length() > 0 && info[0].IsArray()) {
    Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      if (a.Get(i).IsString()) keep.push_back(a.Get(i).As<Napi::String>());
    }
  }
  std::vector<const char *> keep_ptrs;
  for (const std::string &k : keep) keep_ptrs.push_back(k.c_str());
  int rc = bh_region_clean_stale_except(
      keep_ptrs.data(), keep_ptrs.size(),
      [](void *cookie, const char *name, uint32_t pid) {
        static_cast<std::vector<std::pair<std::string, uint32_t>> *>(cookie)->emplace_back(name, pid);
      },
      &removed);
  if (rc < 0) return Num(env, rc);
  Napi::Array arr = Napi::Array::New(env, removed.size());
  for (size_t i = 0; i < removed.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", Napi::String::New(env, removed[i].first));
    o.Set("pid", Num(env, removed[i].second));
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

// regionSetDefault(handle | null): the region checked-mode programs may access.
Napi::Value RegionSetDefault(const Napi::CallbackInfo &info) {
  bh_region *r = info[0].IsNull() || info[0].IsUndefined() ? nullptr : GetRegion(info, 0, "regionSetDefault");
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (r != nullptr) bh_region_ref(r);
  if (g_default_region != nullptr) bh_region_unref(g_default_region);
  g_default_region = r;
  return info.Env().Undefined();
}

Napi::Value PossibleCpus(const Napi::CallbackInfo &info) { return Num(info.Env(), bh_possible_cpus()); }

// ---- maps ----

// mapCreate(region, {name, type, keySize, valueSize, maxEntries, flags, mapExtra}) -> handle | -errno
Napi::Value MapCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_region *r = GetRegion(info, 0, "mapCreate");
  if (!info[1].IsObject()) throw BadArg(env, "mapCreate: spec must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  auto u32 = [&](const char *k) -> uint32_t {
    Napi::Value v = o.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
  };
  std::string name = o.Get("name").IsString() ? o.Get("name").As<Napi::String>().Utf8Value() : "";
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.name = name.c_str();
  s.type = u32("type");
  s.key_size = u32("keySize");
  s.value_size = u32("valueSize");
  s.max_entries = u32("maxEntries");
  s.map_flags = u32("flags");
  Napi::Value extra = o.Get("mapExtra");
  if (extra.IsBigInt()) {
    bool lossless = false;
    s.map_extra = extra.As<Napi::BigInt>().Uint64Value(&lossless);
  } else if (extra.IsNumber()) {
    s.map_extra = uint64_t(extra.As<Napi::Number>().Int64Value());
  }
  bh_map *m = nullptr;
  int err = bh_map_create(r, &s, &m);
  if (err != 0) return Num(env, err);
  if (o.Get("freeOnClose").ToBoolean()) bh_map_free_on_close(m);
  return WrapMap(env, m);
}

// mapOpen(region, nameOrIndex) -> handle | -errno
Napi::Value MapOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_region *r = GetRegion(info, 0, "mapOpen");
  bh_map *m = nullptr;
  int err;
  if (info[1].IsString()) {
    err = bh_map_open_by_name(r, info[1].As<Napi::String>().Utf8Value().c_str(), &m);
  } else if (info[1].IsNumber()) {
    err = bh_map_open(r, info[1].As<Napi::Number>().Uint32Value(), &m);
  } else {
    throw BadArg(env, "mapOpen: expected a name or an index");
  }
  if (err != 0) return Num(env, err);
  return WrapMap(env, m);
}

Napi::Value MapClose(const Napi::CallbackInfo &info) {
  Napi::Value v = info[0];
  if (v.IsExternal() && v.As<Napi::External<MapRef>>().CheckTypeTag(&kMapTag)) {
    MapRef *ref = v.As<Napi::External<MapRef>>().Data();
    if (ref->map != nullptr) bh_map_close(ref->map);
    ref->map = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "mapInfo");
  const bh_map_info *i = bh_map_get_info(m);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, i->name));
  o.Set("type", Num(env, i->type));
  o.Set("keySize", Num(env, i->key_size));
  o.Set("valueSize", Num(env, i->value_size));
  o.Set("maxEntries", Num(env, i->max_entries));
  o.Set("flags", Num(env, i->map_flags));
  o.Set("index", Num(env, i->index));
  o.Set("ncpus", Num(env, i->ncpus));
  o.Set("userValueSize", Num(env, i->user_value_size));
  o.Set("mapExtra", Big(env, i->map_extra));
  o.Set("storageOffset", Num(env, double(i->storage_off)));
  o.Set("storageSize", Num(env, double(i->storage_size)));
  o.Set("address", Big(env, uint64_t(uintptr_t(m))));
  o.Set("corruptions", Num(env, double(bh_map_corruptions(m))));
  return o;
}

Napi::Value MapLockStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map_lock_stats st{};
  bh_map_get_lock_stats(GetMap(info, "mapLockStats"), &st);
  Napi::Object o = Napi::Object::New(env);
  o.Set("busy", Num(env, double(st.busy)));
  o.Set("takeovers", Num(env, double(st.takeovers)));
  return o;
}

Napi::Value MapCount(const Napi::CallbackInfo &info) {
  return Num(info.Env(), double(bh_map_count(GetMap(info, "mapCount"))));
}

// mapLookup(map, key, out) -> 0 | -errno
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapLookup");
  const void *key = GetKey(info, 1, m, false, "mapLookup");
  Bytes out = GetBytes(info, 2, bh_map_get_info(m)->user_value_size, false, "mapLookup", "value buffer");
  return Num(info.Env(), bh_map_lookup(m, key, out.data));
}

// mapUpdate(map, key, value, flags) -> 0 | -errno
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapUpdate");
  const void *key = GetKey(info, 1, m, false, "mapUpdate");
  Bytes value = GetBytes(info, 2, bh_map_get_info(m)->user_value_size, false, "mapUpdate", "value");
  return Num(info.Env(), bh_map_update(m, key, value.data, GetU64(info, 3)));
}

Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapDelete");
  return Num(info.Env(), bh_map_delete(m, GetKey(info, 1, m, false, "mapDelete")));
}

Napi::Value MapLookupAndDelete(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapLookupAndDelete");
  const void *key = GetKey(info, 1, m, false, "mapLookupAndDelete");
  Bytes out = GetBytes(info, 2, bh_map_get_info(m)->user_value_size, false, "mapLookupAndDelete", "value buffer");
  return Num(info.Env(), bh_map_lookup_and_delete(m, key, out.data));
}

// mapNextKey(map, key | null, out) -> 0 | -errno
Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapNextKey");
  const void *key = GetKey(info, 1, m, true, "mapNextKey");
  Bytes out = GetBytes(info, 2, bh_map_get_info(m)->key_size, false, "mapNextKey", "key buffer");
  return Num(info.Env(), bh_map_get_next_key(m, key, out.data));
}

Napi::Value MapValueAddress(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapValueAddress");
  return Big(info.Env(), bh_map_lddw_value_addr(m, GetU32(info, 1)));
}

// ---- program side: the helper functions, called as a program would ----

// mapHelperLookup(map, key) -> copy of the value the helper points at (this
// CPU's, for per-CPU maps) | null
Napi::Value MapHelperLookup(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapHelperLookup");
  const void *key = GetKey(info, 1, m, false, "mapHelperLookup");
  uint64_t p = bh_helper_map_lookup_elem(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(key)), 0, 0, 0);
  if (p == 0) return info.Env().Null();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t *>(uintptr_t(p)),
                                     bh_map_get_info(m)->value_size);
}

// mapHelperWrite(map, key, offset, bytes) -> whether the lookup found a value
// to write through (programs store into the pointer lookup returns).
Napi::Value MapHelperWrite(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "mapHelperWrite");
  const void *key = GetKey(info, 1, m, false, "mapHelperWrite");
  uint32_t offset = GetU32(info, 2);
  Bytes data = GetBytes(info, 3, 0, false, "mapHelperWrite", "data");
  if (uint64_t(offset) + data.len > bh_map_get_info(m)->value_size) {
    throw BadArg(env, "mapHelperWrite: write past the end of the value");
  }
  uint64_t p = bh_helper_map_lookup_elem(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(key)), 0, 0, 0);
  if (p == 0) return Napi::Boolean::New(env, false);
  memcpy(reinterpret_cast<uint8_t *>(uintptr_t(p)) + offset, data.data, data.len);
  return Napi::Boolean::New(env, true);
}

Napi::Value MapHelperUpdate(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapHelperUpdate");
  const void *key = GetKey(info, 1, m, false, "mapHelperUpdate");
  Bytes value = GetBytes(info, 2, bh_map_get_info(m)->value_size, false, "mapHelperUpdate", "value");
  uint64_t r = bh_helper_map_update_elem(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(key)),
                                         uint64_t(uintptr_t(value.data)), GetU64(info, 3), 0);
  return Num(info.Env(), double(int64_t(r)));
}

Napi::Value MapHelperDelete(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapHelperDelete");
  const void *key = GetKey(info, 1, m, false, "mapHelperDelete");
  uint64_t r = bh_helper_map_delete_elem(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(key)), 0, 0, 0);
  return Num(info.Env(), double(int64_t(r)));
}

// mapHelperPush(map, value, flags) / mapHelperPop(map, out) / mapHelperPeek(map, out)
Napi::Value MapHelperPush(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "mapHelperPush");
  Bytes value = GetBytes(info, 1, bh_map_get_info(m)->value_size, false, "mapHelperPush", "value");
  uint64_t r = bh_helper_map_push_elem(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(value.data)), GetU64(info, 2), 0, 0);
  return Num(info.Env(), double(int64_t(r)));
}

Napi::Value MapHelperPopOrPeek(const Napi::CallbackInfo &info, bool pop) {
  const char *fn = pop ? "mapHelperPop" : "mapHelperPeek";
  bh_map *m = GetMap(info, fn);
  Bytes out = GetBytes(info, 1, bh_map_get_info(m)->value_size, false, fn, "value buffer");
  auto helper = pop ? bh_helper_map_pop_elem : bh_helper_map_peek_elem;
  uint64_t r = helper(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(out.data)), 0, 0, 0);
  return Num(info.Env(), double(int64_t(r)));
}
Napi::Value MapHelperPop(const Napi::CallbackInfo &info) { return MapHelperPopOrPeek(info, true); }
Napi::Value MapHelperPeek(const Napi::CallbackInfo &info) { return MapHelperPopOrPeek(info, false); }

// ---- ring buffer ----

// ringbufOutput(map, data, flags) -> 0 | -errno (bpf_ringbuf_output)
Napi::Value RingbufOutput(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "ringbufOutput");
  Bytes data = GetBytes(info, 1, 0, false, "ringbufOutput", "data");
  uint64_t r =
      bh_helper_ringbuf_output(uint64_t(uintptr_t(m)), uint64_t(uintptr_t(data.data)), data.len, GetU64(info, 2), 0);
  return Num(info.Env(), double(int64_t(r)));
}

// ringbufReserve(map, data, discard) -> 0 | -EAGAIN: reserve, copy, then
// submit or discard (bpf_ringbuf_reserve / submit / discard).
Napi::Value RingbufReserve(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "ringbufReserve");
  Bytes data = GetBytes(info, 1, 0, false, "ringbufReserve", "data");
  bool discard = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  uint64_t p = bh_helper_ringbuf_reserve(uint64_t(uintptr_t(m)), data.len, 0, 0, 0);
  if (p == 0) return Num(info.Env(), -EAGAIN);
  memcpy(reinterpret_cast<void *>(uintptr_t(p)), data.data, data.len);
  if (discard) {
    bh_helper_ringbuf_discard(p, 0, 0, 0, 0);
  } else {
    bh_helper_ringbuf_submit(p, 0, 0, 0, 0);
  }
  return Num(info.Env(), 0);
}

struct Packer {
  std::vector<uint8_t> out;
  size_t max_bytes;
  void Put(const void *p, size_t n) {
    const auto *b = static_cast<const uint8_t *>(p);
    out.insert(out.end(), b, b + n);
    out.resize((out.size() + 7) & ~size_t(7), 0);
  }
  bool Full() const { return out.size() >= max_bytes; }
};

// ringbufConsume(map, maxRecords, maxBytes) -> Buffer | -errno. Records come
// packed as {u32 size, u32 0, data padded to 8}; the batch stops after the
// record that reaches maxBytes (a record is never split or lost).
Napi::Value RingbufConsume(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "ringbufConsume");
  Packer pk{{}, size_t(GetU32(info, 2, 1u << 20))};
  auto fn = [](void *ctx, const void *data, uint32_t size) -> int {
    auto *p = static_cast<Packer *>(ctx);
    uint32_t hdr[2] = {size, 0};
    p->Put(hdr, sizeof(hdr));
    p->Put(data, size);
    return p->Full() ? 1 : 0;
  };
  int n = bh_ringbuf_consume(m, fn, &pk, GetU32(info, 1));
  if (n < 0) return Num(info.Env(), n);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), pk.out.data(), pk.out.size());
}

Napi::Value RingbufStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "ringbufStats");
  bh_ringbuf_stats st{};
  int err = bh_ringbuf_get_stats(m, &st);
  if (err != 0) return Num(env, err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Num(env, double(st.size)));
  o.Set("producerPos", Num(env, double(st.producer_pos)));
  o.Set("consumerPos", Num(env, double(st.consumer_pos)));
  o.Set("available", Num(env, double(st.producer_pos - st.consumer_pos)));
  o.Set("drops", Num(env, double(st.drops)));
  return o;
}

// ---- perf event array ----

// perfOutput(map, index (-1 = current CPU), data) -> 0 | -errno
Napi::Value PerfOutput(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "perfOutput");
  int64_t index = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : -1;
  uint64_t flags = index < 0 ? BH_F_CURRENT_CPU : uint64_t(index);
  Bytes data = GetBytes(info, 2, 0, false, "perfOutput", "data");
  uint64_t r = bh_helper_perf_event_output(0, uint64_t(uintptr_t(m)), flags, uint64_t(uintptr_t(data.data)), data.len);
  return Num(info.Env(), double(int64_t(r)));
}

// perfConsume(map, ring (-1 = all), maxRecords, maxBytes) -> Buffer | -errno.
// Entries: {u16 kind (1 sample, 2 lost), u16 0, u32 ring, u32 size, u32 0}
// then the payload padded to 8 (lost: a u64 count).
Napi::Value PerfConsume(const Napi::CallbackInfo &info) {
  bh_map *m = GetMap(info, "perfConsume");
  int ring = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
  Packer pk{{}, size_t(GetU32(info, 3, 1u << 20))};
  auto sample = [](void *ctx, uint32_t r, const void *data, uint32_t size) -> int {
    auto *p = static_cast<Packer *>(ctx);
    uint32_t hdr[4] = {1, r, size, 0};
    p->Put(hdr, sizeof(hdr));
    p->Put(data, size);
    return p->Full() ? 1 : 0;
  };
  auto lost = [](void *ctx, uint32_t r, uint64_t n) {
    auto *p = static_cast<Packer *>(ctx);
    uint32_t hdr[4] = {2, r, 8, 0};
    p->Put(hdr, sizeof(hdr));
    p->Put(&n, 8);
  };
  int n = bh_perf_consume(m, ring, sample, lost, &pk, GetU32(info, 2));
  if (n < 0 && pk.out.empty()) return Num(info.Env(), n);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), pk.out.data(), pk.out.size());
}

Napi::Value PerfStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "perfStats");
  uint32_t rings = bh_map_get_info(m)->max_entries;
  Napi::Array arr = Napi::Array::New(env, rings);
  for (uint32_t r = 0; r < rings; r++) {
    bh_perf_ring_stats st{};
    int err = bh_perf_get_stats(m, r, &st);
    if (err != 0) return Num(env, err);
    Napi::Object o = Napi::Object::New(env);
    o.Set("ring", Num(env, r));
    o.Set("size", Num(env, double(st.size)));
    o.Set("head", Num(env, double(st.head)));
    o.Set("tail", Num(env, double(st.tail)));
    o.Set("lost", Num(env, double(st.lost)));
    arr.Set(r, o);
  }
  return arr;
}

}  // namespace

// ---- glue for the other bindings (addon.h) ----

void *UnwrapMap(Napi::Value value) {
  if (!value.IsExternal()) return nullptr;
  auto ext = value.As<Napi::External<MapRef>>();
  if (!ext.CheckTypeTag(&kMapTag)) return nullptr;
  return ext.Data()->map;
}

bool RegionBounds(Napi::Value value, const void **base, size_t *len) {
  if (!value.IsExternal() || !value.As<Napi::External<RegionRef>>().CheckTypeTag(&kRegionTag)) return false;
  RegionRef *ref = value.As<Napi::External<RegionRef>>().Data();
  if (ref->region == nullptr) return false;
  *base = bh_region_base(ref->region);
  *len = size_t(bh_region_size(ref->region));
  return true;
}

bh_region *UnwrapRegion(Napi::Value value) {
  if (!value.IsExternal() || !value.As<Napi::External<RegionRef>>().CheckTypeTag(&kRegionTag)) return nullptr;
  return value.As<Napi::External<RegionRef>>().Data()->region;
}

void SharedRegionBounds(const void **base, size_t *len) {
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (g_default_region == nullptr) {
    *base = nullptr;
    *len = 0;
    return;
  }
  *base = bh_region_base(g_default_region);
  *len = size_t(bh_region_size(g_default_region));
}

void InitMaps(Napi::Env env, Napi::Object exports) {
  struct Fn {
    const char *name;
    Napi::Value (*fn)(const Napi::CallbackInfo &);
  };
  static const Fn kFns[] = {
      {"possibleCpus", PossibleCpus},
      {"regionCreate", RegionCreate},
      {"regionOpen", RegionOpen},
      {"regionClose", RegionClose},
      {"regionInfo", RegionInfo},
      {"regionMaps", RegionMaps},
      {"regionSetDefault", RegionSetDefault},
      {"regionCleanStale", RegionCleanStale},
      {"mapCreate", MapCreate},
      {"mapOpen", MapOpen},
      {"mapClose", MapClose},
      {"mapInfo", MapInfo},
      {"mapLockStats", MapLockStats},
      {"mapCount", MapCount},
      {"mapLookup", MapLookup},
      {"mapUpdate", MapUpdate},
      {"mapDelete", MapDelete},
      {"mapLookupAndDelete", MapLookupAndDelete},
      {"mapNextKey", MapNextKey},
      {"mapValueAddress", MapValueAddress},
      {"mapHelperLookup", MapHelperLookup},
      {"mapHelperWrite", MapHelperWrite},
      {"mapHelperUpdate", MapHelperUpdate},
      {"mapHelperDelete", MapHelperDelete},
      {"mapHelperPush", MapHelperPush},
      {"mapHelperPop", MapHelperPop},
      {"mapHelperPeek", MapHelperPeek},
      {"ringbufOutput", RingbufOutput},
      {"ringbufReserve", RingbufReserve},
      {"ringbufConsume", RingbufConsume},
      {"ringbufStats", RingbufStats},
      {"perfOutput", PerfOutput},
      {"perfConsume", PerfConsume},
      {"perfStats", PerfStats},
  };
  for (const Fn &f : kFns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
}

}  // namespace bpfhook::addon
