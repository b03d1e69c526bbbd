/* The agent area: what a controller (`bpfhook run` / `bpfhook attach`) puts in
 * the shared region for the native agent preloaded or injected into a target
 * process, and what the agent writes back. Part of the region's layout
 * (region.h, layout version 3: the header's `agent_off` / `agent_size` say
 * where the area is; 0 when the region has none, as in embedded mode).
 *
 * LAYOUT (agent area version 1). Offsets are from the region's first byte;
 * every table has a fixed capacity chosen by the controller at creation.
 *
 *   bh_agent_area                   magic, version, sizes, futex words,
 *                                   controller identity and heartbeat,
 *                                   table offsets and capacities
 *   plugins  [cap_plugins]          bh_agent_plugin_rec: name, library path
 *   programs [cap_progs]            bh_agent_prog_rec: name, instructions
 *                                   (a blob), map references (a blob of
 *                                   bh_agent_map_ref), mode
 *   prog arrays [cap_prog_arrays]   bh_agent_prog_array_rec: slots (a blob of
 *                                   u32: program index + 1, 0 empty)
 *   attachments [cap_attach]        bh_agent_attach_rec: what the controller
 *                                   wants (plugin, program, type, private
 *                                   data blob, cookie) and what the agent
 *                                   did (result, errno, message)
 *   processes [cap_procs]           bh_agent_proc_rec: one per agent (a
 *                                   target and its forked children)
 *   blobs                           allocated with bh_region_alloc
 *
 * PROTOCOL
 * - The controller is the only writer of plugin, program, prog-array and
 *   attachment *requests*. Records are append-only: a record is written
 *   completely (its blobs first), then published by a release store of its
 *   `state`, then the count is raised (release). A request never changes in
 *   place except: an attachment's `state` (WANT -> REMOVED) and a prog-array
 *   slot (one u32 store). A re-attach is a new attachment record.
 * - After a batch of changes the controller raises `plan_seq` (release) and
 *   wakes it (FUTEX_WAKE, shared). An agent applies the plan: every
 *   attachment in state WANT that it has not applied gets attached, every
 *   one in state REMOVED that it holds gets detached; then it writes the
 *   attachment's result fields (its own pid in result_pid), sets its process
 *   record's `applied_seq` to the seq it applied, raises `agent_event` and
 *   wakes it.
 * - Agents are untrusting readers: every index, offset, length and count is
 *   checked against the capacities and the region's size before use; a
 *   string field is used only if it has a NUL inside the field. A bad record
 *   fails that record (result FAILED, -EPROTO, a message) and nothing else.
 * - Processes: an agent claims a free process record with a CAS on `pid`
 *   (0 -> its pid) and releases it (state GONE) when it leaves; records of
 *   dead pids are reclaimed by the next claimer. Forked children claim their
 *   own record.
 * - Liveness: the controller writes `heartbeat_ns` (CLOCK_MONOTONIC) at least
 *   every BH_AGENT_HEARTBEAT_MS. An agent treats the controller as gone when
 *   its pid no longer exists or has another start time; then it detaches
 *   everything unless BH_AGENT_F_KEEP_ON_EXIT is set, and leaves the program
 *   running either way. An agent writes its own `heartbeat_ns` likewise.
 * - Start (run): the controller writes the area and an empty plan (plan_seq
 *   0), starts the target with the agent preloaded and BH_AGENT_ENV_REGION
 *   set. The agent's constructor maps the region, claims a process record
 *   (state STARTING), raises agent_event, and waits (bounded by
 *   `start_wait_ms`) for plan_seq != 0; it applies that plan before main.
 *   Attach (attach -p): the controller writes the plan and publishes it,
 *   then injects the agent and calls bh_agent_attach_region(name) in the
 *   target; an agent already loaded is reused and switches to the region.
 *
 * C API: the controller side (create, add records, publish, read results)
 * and the agent side (open, read records) are both in agent_area.cpp, built
 * into the static library `bpfagentarea` that the Node addon and the agent
 * link. Functions return 0 / an index >= 0, or a negative errno with a
 * message in a caller-owned buffer where one is taken.
 */
#ifndef BPFHOOK_AGENT_AREA_H
#define BPFHOOK_AGENT_AREA_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/region.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BH_AGENT_AREA_MAGIC 0x31544e4547414842ULL /* "BHAGENT1" in memory order */
#define BH_AGENT_AREA_VERSION 1u

/* Environment of a target started under the agent. */
#define BH_AGENT_ENV_REGION "BPFHOOK_REGION" /* region name, "/bpfhook-..." */
#define BH_AGENT_ENV_LOG "BPFHOOK_AGENT_LOG" /* log file path, or "stderr"; unset: the region's log ring */
#define BH_AGENT_ENV_NOINHERIT                                                         \
  "BPFHOOK_AGENT_NOINHERIT" /* "1": remove LD_PRELOAD / BPFHOOK_* from the environment \
                               so exec'd programs run without the agent */

#define BH_AGENT_HEARTBEAT_MS 200u
#define BH_AGENT_NAME_MAX 64u
#define BH_AGENT_PATH_MAX 1024u
#define BH_AGENT_MSG_MAX 512u

/* bh_agent_area.flags */
#define BH_AGENT_F_KEEP_ON_EXIT 0x1u /* keep probes attached when the controller dies */

/* Record states (plugins, programs, prog arrays). */
#define BH_AGENT_REC_UNUSED 0u
#define BH_AGENT_REC_LIVE 1u

/* bh_agent_attach_rec.state (the controller's request) */
#define BH_AGENT_ATTACH_UNUSED 0u
#define BH_AGENT_ATTACH_WANT 1u
#define BH_AGENT_ATTACH_REMOVED 2u

/* bh_agent_attach_rec.result (the agent's answer) */
#define BH_AGENT_RESULT_PENDING 0u
#define BH_AGENT_RESULT_ATTACHED 1u
#define BH_AGENT_RESULT_FAILED 2u
#define BH_AGENT_RESULT_DETACHED 3u

/* bh_agent_proc_rec.state */
#define BH_AGENT_PROC_FREE 0u
#define BH_AGENT_PROC_STARTING 1u /* mapped the region, waiting for a plan */
#define BH_AGENT_PROC_RUNNING 2u  /* applied a plan; control thread running */
#define BH_AGENT_PROC_GONE 3u     /* left (exit, exec, detached) */

/* bh_agent_plugin_rec.flags */
#define BH_AGENT_PLUGIN_GLOBAL 0x1u /* dlopen RTLD_GLOBAL (BH_RUNTIME_PLUGIN_GLOBAL) */

/* bh_agent_prog_rec.flags */
#define BH_AGENT_PROG_CHECKED 0x1u
#define BH_AGENT_PROG_INTERPRETER 0x2u

/* bh_agent_map_ref.kind */
#define BH_AGENT_MAP_REGION 0u     /* a map of the region's directory: index + gen */
#define BH_AGENT_MAP_PROG_ARRAY 1u /* a prog array record of this area: index */

typedef struct bh_agent_plugin_rec {
  uint32_t state;
  uint32_t flags;
  char name[BH_AGENT_NAME_MAX]; /* must equal the library's ops->name */
  char path[BH_AGENT_PATH_MAX]; /* absolute path of the native piece */
} bh_agent_plugin_rec;

typedef struct bh_agent_map_ref {
  uint32_t kind;
  uint32_t index;
  uint32_t gen; /* region maps: the directory entry's gen */
  uint32_t reserved;
} bh_agent_map_ref;

typedef struct bh_agent_prog_rec {
  uint32_t state;
  uint32_t flags;
  char name[BH_AGENT_NAME_MAX];
  uint64_t insns_off; /* blob of insns_len bytes (multiple of 8) */
  uint32_t insns_len;
  uint32_t nmaps; /* entries in maps_off: the program's lddw map indexes */
  uint64_t maps_off;
  uint64_t budget; /* instruction budget, 0 none */
} bh_agent_prog_rec;

typedef struct bh_agent_prog_array_rec {
  uint32_t state;
  uint32_t max_entries;
  uint64_t slots_off; /* max_entries x u32: program index + 1, 0 = empty */
  uint32_t gen;       /* raised by the controller after every slot change */
  uint32_t reserved;
} bh_agent_prog_array_rec;

typedef struct bh_agent_attach_rec {
  /* Request (controller). */
  uint32_t state;
  uint32_t plugin; /* plugin record index */
  uint32_t prog;   /* program record index */
  uint32_t attach_type;
  uint64_t data_off; /* private data blob */
  uint32_t data_len;
  uint32_t reserved0;
  uint64_t cookie;
  /* Answer (agent). */
  uint32_t result; /* BH_AGENT_RESULT_* */
  int32_t error;   /* negative errno when FAILED */
  uint32_t result_pid;
  uint32_t reserved1;
  char message[BH_AGENT_MSG_MAX];
} bh_agent_attach_rec;

typedef struct bh_agent_proc_rec {
  uint32_t pid; /* 0 = free (claimed with a CAS) */
  uint32_t state;
  uint64_t start_time; /* /proc/<pid>/stat field 22 */
  uint32_t applied_seq;
  uint32_t attached; /* attachments it holds */
  uint32_t failed;   /* attachments that failed in it */
  uint32_t parent;   /* pid of the agent process it forked from, 0 */
  uint64_t heartbeat_ns;
  char comm[16];
} bh_agent_proc_rec;

typedef struct bh_agent_area {
  uint64_t magic;
  uint32_t version;
  uint32_t area_size; /* bytes of this struct (sizeof at the writer) */
  /* Futex words (shared futexes, 32-bit). */
  uint32_t plan_seq;      /* controller raises after changing requests */
  uint32_t agent_event;   /* agents raise after registering or applying */
  uint32_t flags;         /* BH_AGENT_F_* */
  uint32_t start_wait_ms; /* how long a starting agent waits for a plan; 0 = 5000 */
  uint32_t controller_pid;
  uint32_t reserved0;
  uint64_t controller_start; /* /proc/<pid>/stat field 22 */
  uint64_t heartbeat_ns;     /* controller's CLOCK_MONOTONIC */
  /* Tables: offset, capacity, and the count of records ever used (acquire). */
  uint64_t plugins_off;
  uint64_t progs_off;
  uint64_t prog_arrays_off;
  uint64_t attach_off;
  uint64_t procs_off;
  uint32_t cap_plugins, n_plugins;
  uint32_t cap_progs, n_progs;
  uint32_t cap_prog_arrays, n_prog_arrays;
  uint32_t cap_attach, n_attach;
  uint32_t cap_procs, reserved1;
  /* Ring buffers of the region (directory index + gen; index ~0u = none):
   * trace_printk lines (records: u32 pid, u32 tid, message bytes, no NUL) and
   * the agent's log (u32 pid, u32 level, message bytes). */
  uint32_t printk_map, printk_gen;
  uint32_t log_map, log_gen;
  uint64_t reserved[16];
} bh_agent_area;

/* ---- controller side ---------------------------------------------------- */

typedef struct bh_agent_area_opts {
  size_t sz;
  uint32_t cap_plugins;     /* 0 = 32 */
  uint32_t cap_progs;       /* 0 = 256 */
  uint32_t cap_prog_arrays; /* 0 = 64 */
  uint32_t cap_attach;      /* 0 = 1024 */
  uint32_t cap_procs;       /* 0 = 64 */
  uint32_t flags;           /* BH_AGENT_F_* */
  uint32_t start_wait_ms;
} bh_agent_area_opts;

/* Allocates the area and its tables in `r` (the owner's region, layout 3,
 * with no area yet: -EEXIST otherwise), records this process as the
 * controller and writes the header's agent_off / agent_size last. */
int bh_agent_area_create(bh_region *r, const bh_agent_area_opts *opts, char *err, size_t err_len);
/* The area of `r`, validated (magic, version, table geometry within the
 * region): 0 and *out, or -ENOENT (no area) / -EPROTO (malformed) with a
 * message. The pointer stays valid while `r` is mapped. */
int bh_agent_area_get(bh_region *r, bh_agent_area **out, char *err, size_t err_len);

/* Appends records (controller only). Return the new index, or -ENOSPC (table
 * full: the message names the table and its capacity) / -ENOMEM (region full:
 * the message gives the bytes asked and free). */
int bh_agent_area_add_plugin(bh_region *r, const char *name, const char *path, uint32_t flags, char *err,
                             size_t err_len);
int bh_agent_area_add_prog(bh_region *r, const char *name, const void *insns, size_t insns_len,
                           const bh_agent_map_ref *maps, uint32_t nmaps, uint32_t flags, uint64_t budget, char *err,
                           size_t err_len);
int bh_agent_area_add_prog_array(bh_region *r, uint32_t max_entries, char *err, size_t err_len);
/* prog: program index, or -1 to empty the slot. Raises the array's gen. */
int bh_agent_area_set_prog_array_slot(bh_region *r, uint32_t array, uint32_t slot, int32_t prog);
int bh_agent_area_add_attach(bh_region *r, uint32_t plugin, uint32_t prog, uint32_t attach_type, const void *data,
                             size_t data_len, uint64_t cookie, char *err, size_t err_len);
/* WANT -> REMOVED. -ENOENT for an unknown or already removed index. */
int bh_agent_area_remove_attach(bh_region *r, uint32_t index);
/* The ring buffers (region maps) for trace_printk lines and agent logs;
 * index ~0u for none. */
int bh_agent_area_set_rings(bh_region *r, uint32_t printk_index, uint32_t printk_gen, uint32_t log_index,
                            uint32_t log_gen);
/* Raises plan_seq and wakes every agent. Returns the new seq. */
uint32_t bh_agent_area_publish(bh_region *r);
/* Writes the controller heartbeat. */
void bh_agent_area_heartbeat(bh_region *r);

/* ---- shared ---------------------------------------------------------------- */

/* Nanoseconds of CLOCK_MONOTONIC. */
uint64_t bh_agent_now_ns(void);
/* Start time (field 22 of /proc/<pid>/stat), 0 if the process does not exist. */
uint64_t bh_agent_proc_start_time(uint32_t pid);
/* Waits until *word != seen or timeout_ms passes (FUTEX_WAIT on shared
 * memory). Returns the value read last. */
uint32_t bh_agent_futex_wait(const uint32_t *word, uint32_t seen, uint32_t timeout_ms);
void bh_agent_futex_wake(uint32_t *word);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_AGENT_AREA_H */
