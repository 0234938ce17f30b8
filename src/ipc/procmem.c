/* /proc/PID/smaps_rollup: see procmem.h. */
#include "ipc/procmem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int fy_procmem_read_all(pid_t pid, fy_procmem_t *out)
{
    memset(out, 0, sizeof *out);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    char line[256];
    fy_procmem_t m = {0};
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "Rss: %llu kB", &v) == 1) {
            m.rss_kib = v;
            found |= 1;
        } else if (sscanf(line, "Pss: %llu kB", &v) == 1) {
            m.pss_kib = v;
            found |= 2;
        } else if (sscanf(line, "Private_Clean: %llu kB", &v) == 1) {
            m.uss_kib += v;
        } else if (sscanf(line, "Private_Dirty: %llu kB", &v) == 1) {
            m.uss_kib += v;
        }
    }
    fclose(f);
    if (found != 3)
        return -ENODATA;
    *out = m;
    return 0;
}

int fy_procmem_read(pid_t pid, uint64_t *rss_kib, uint64_t *pss_kib)
{
    fy_procmem_t m;
    int rc = fy_procmem_read_all(pid, &m);
    *rss_kib = m.rss_kib;
    *pss_kib = m.pss_kib;
    return rc;
}
