// An ordinary program for the agent-mode example: it knows nothing of
// bpfhook. It hashes a few words and allocates a little memory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) unsigned long hash_word(const char *w) {
  unsigned long h = 5381;
  while (*w) h = h * 33 + (unsigned char)*w++;
  return h;
}

int main(void) {
  const char *words[] = {"alpha", "beta", "gamma", "delta", "epsilon"};
  unsigned long total = 0;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 5; i++) {
      char *copy = strdup(words[i]);
      total += hash_word(copy);
      free(copy);
    }
  }
  printf("app: done, checksum %lx\n", total);
  return 0;
}
