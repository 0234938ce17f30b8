/* /proc/PID/smaps_rollup: see procmem.h. */
#include "ipc/procmem.h"

#include <errno.h>
#include <stdio.h>

int fy_procmem_read(pid_t pid, uint64_t *rss_kib, uint64_t *pss_kib)
{
    *rss_kib = *pss_kib = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    char line[256];
    uint64_t rss = 0, pss = 0;
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "Rss: %llu kB", &v) == 1) {
            rss = v;
            found |= 1;
        } else if (sscanf(line, "Pss: %llu kB", &v) == 1) {
            pss = v;
            found |= 2;
        }
    }
    fclose(f);
    if (found != 3)
        return -ENODATA;
    *rss_kib = rss;
    *pss_kib = pss;
    return 0;
}
