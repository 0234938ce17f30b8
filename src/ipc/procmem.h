/* A process's memory as the kernel counts it: /proc/PID/smaps_rollup. Blocking (a read of /proc,
 * which walks the process's page tables: about 1 ms for 100 MiB resident), so callers in the
 * event loop read it rarely. Any thread. */
#ifndef FY_IPC_PROCMEM_H
#define FY_IPC_PROCMEM_H

#include <stdint.h>
#include <sys/types.h>

/* Reads the resident set (Rss) and the proportional set (Pss: shared pages divided among the
 * processes that map them, so copy-on-write sharing after fork is counted once) of <pid>, in KiB.
 * Returns 0; -ENOENT when the process is gone (or /proc is not mounted), another -errno when the
 * file cannot be opened (-EACCES: another user's process), -ENODATA when it lacks either line
 * (a kernel older than 4.14 has no smaps_rollup: -ENOENT). Both outputs are 0 on failure. */
int fy_procmem_read(pid_t pid, uint64_t *rss_kib, uint64_t *pss_kib);

/* Rss, Pss and USS (the pages only this process maps: Private_Clean + Private_Dirty) of <pid>,
 * in KiB. Returns as fy_procmem_read; every field 0 on failure. */
typedef struct fy_procmem {
    uint64_t rss_kib, pss_kib, uss_kib;
} fy_procmem_t;
int fy_procmem_read_all(pid_t pid, fy_procmem_t *out);

#endif
