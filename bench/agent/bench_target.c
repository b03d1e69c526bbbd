// The program bench:agent runs under `bpfhook run`: calls bh_target_empty
// (test/native's targets library, the function bench:uprobe probes) in
// timed loops, or just reports when main began.
//
//   bench_target start            prints "main <CLOCK_REALTIME ns>"
//   bench_target loop RUNS CALLS  prints "run <ns per call>" RUNS times
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern int bh_target_empty(void);

static long long now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double time_calls(long calls) {
  long long t0 = now_ns(CLOCK_MONOTONIC);
  for (long i = 0; i < calls; i++) bh_target_empty();
  return (double)(now_ns(CLOCK_MONOTONIC) - t0) / (double)calls;
}

int main(int argc, char **argv) {
  long long at_main = now_ns(CLOCK_REALTIME);
  if (argc >= 2 && strcmp(argv[1], "start") == 0) {
    printf("main %lld\n", at_main);
    return 0;
  }
  if (argc < 4 || strcmp(argv[1], "loop") != 0) {
    fprintf(stderr, "usage: bench_target start | loop RUNS CALLS\n");
    return 2;
  }
  int runs = atoi(argv[2]);
  long calls = atol(argv[3]);
  time_calls(calls / 10);  // warm-up
  for (int r = 0; r < runs; r++) printf("run %.3f\n", time_calls(calls));
  return 0;
}
