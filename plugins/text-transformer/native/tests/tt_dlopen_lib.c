/* Loaded by tt_selftest after bh_tt_install: its syscall site exists only
 * in code mapped later, so only the watch on new code can patch it. */
long tt_lib_getppid(void) {
  long r;
  __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
  return r;
}
