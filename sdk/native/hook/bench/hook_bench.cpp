// Micro-benchmark: ns per call of tl_add (a noinline function in a shared
// library, called through a pointer) bare and with empty probes.  Each
// scenario is the median of several runs; "added" subtracts the bare call.
// Then the engine's cost of attaching many links to one function: µs per
// attach and per detach for `links` links, one by one and in one transaction.
//   hook_bench [calls_per_run] [runs] [links]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bpfhook/hook.h"
#include "testlib.h"

namespace {

int (*volatile p_add)(int, int) = tl_add;

uint64_t empty(void *, struct pt_regs *, struct bh_hook_call *) { return 0; }
uint64_t override_7(void *, struct pt_regs *, struct bh_hook_call *call) {
  bh_hook_call__override_return(call, 7);
  return 0;
}
uint64_t replace_7(void *, struct pt_regs *, struct bh_hook_call *) { return 7; }

double run_once(long n) {
  int (*f)(int, int) = p_add;
  int sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; i++) sink += f(int(i), 1);
  const auto t1 = std::chrono::steady_clock::now();
  if (sink == 42) puts("");
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / double(n);
}

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Attaches `count` empty entry listeners to tl_add (in one transaction if
// `txn`), then detaches them; prints µs per attach and per detach.
bool attach_many(bh_hook_engine *e, int count, bool txn) {
  std::vector<bh_hook_link *> links(size_t(count), nullptr);
  bh_hook_stats s0{};
  s0.sz = sizeof s0;
  bh_hook_get_stats(&s0);
  const double t0 = now_us();
  if (txn) bh_hook_begin_transaction();
  for (int i = 0; i < count; i++) {
    bh_hook_attach_opts o{};
    o.sz = sizeof o;
    if (bh_hook_attach(e, reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, empty, nullptr, &o, &links[size_t(i)]))
      return false;
  }
  if (txn && bh_hook_end_transaction(nullptr)) return false;
  const double t1 = now_us();
  bh_hook_stats s1{};
  s1.sz = sizeof s1;
  bh_hook_get_stats(&s1);
  for (bh_hook_link *l : links) bh_hook_detach(l);
  const double t2 = now_us();
  printf("%-30s %10.2f %10.2f   (%d links on tl_add, %llu pauses)\n", txn ? "in one transaction" : "one by one",
         (t1 - t0) / count, (t2 - t1) / count, count, (unsigned long long)(s1.pauses - s0.pauses));
  return true;
}

double median_ns(long n, int runs) {
  run_once(n / 10);  // warm up
  std::vector<double> v;
  for (int i = 0; i < runs; i++) v.push_back(run_once(n));
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Probe {
  bh_hook_kind kind;
  bh_hook_fn fn;
  uint32_t flags = 0;  // BH_HOOK_ATTACH_F_*
};
constexpr uint32_t kNoVec = BH_HOOK_ATTACH_F_NO_VECTOR;

}  // namespace

int main(int argc, char **argv) {
  const long n = argc > 1 ? atol(argv[1]) : 5000000;
  const int runs = argc > 2 ? atoi(argv[2]) : 7;
  bh_hook_engine_opts eo{};
  eo.sz = sizeof eo;
  bh_hook_engine *e = bh_hook_engine__new(&eo);
  if (!e) {
    perror("engine");
    return 1;
  }
  struct Scenario {
    const char *name;
    std::vector<Probe> probes;
  };
  const Scenario scenarios[] = {
      {"bare call", {}},
      {"empty entry probe", {{BH_HOOK_ENTRY, empty}}},
      {"empty return probe", {{BH_HOOK_RETURN, empty}}},
      {"entry + return probes", {{BH_HOOK_ENTRY, empty}, {BH_HOOK_RETURN, empty}}},
      {"override (entry, returns 7)", {{BH_HOOK_ENTRY, override_7}}},
      {"replace (returns 7)", {{BH_HOOK_REPLACE, replace_7}}},
      {"4 empty entry probes",
       {{BH_HOOK_ENTRY, empty}, {BH_HOOK_ENTRY, empty}, {BH_HOOK_ENTRY, empty}, {BH_HOOK_ENTRY, empty}}},
      // Listeners that touch no vector register: nothing is saved.
      {"empty entry, NO_VECTOR", {{BH_HOOK_ENTRY, empty, kNoVec}}},
      {"empty return, NO_VECTOR", {{BH_HOOK_RETURN, empty, kNoVec}}},
      {"entry + return, NO_VECTOR", {{BH_HOOK_ENTRY, empty, kNoVec}, {BH_HOOK_RETURN, empty, kNoVec}}},
  };
  printf("%-30s %10s %10s   (%ld calls x %d runs, median)\n", "scenario", "ns/call", "added", n, runs);
  double bare = 0;
  for (const Scenario &s : scenarios) {
    std::vector<bh_hook_link *> links;
    for (const Probe &p : s.probes) {
      bh_hook_link *l;
      char err[256] = "";
      bh_hook_attach_opts o{};
      o.sz = sizeof o;
      o.func_name = "tl_add";
      o.flags = p.flags;
      o.errbuf = err;
      o.errbuf_sz = sizeof err;
      if (bh_hook_attach(e, reinterpret_cast<void *>(tl_add), p.kind, p.fn, nullptr, &o, &l)) {
        fprintf(stderr, "%s\n", err);
        return 1;
      }
      links.push_back(l);
    }
    const double ns = median_ns(n, runs);
    if (s.probes.empty()) bare = ns;
    printf("%-30s %10.2f %10.2f\n", s.name, ns, ns - bare);
    for (bh_hook_link *l : links) bh_hook_detach(l);
  }
  const int many = argc > 3 ? atoi(argv[3]) : 10000;
  printf("\n%-30s %10s %10s\n", "attach many", "us/attach", "us/detach");
  if (!attach_many(e, many, false) || !attach_many(e, many, true)) {
    fprintf(stderr, "attach failed\n");
    return 1;
  }
  bh_hook_engine__destroy(e);
  return 0;
}
