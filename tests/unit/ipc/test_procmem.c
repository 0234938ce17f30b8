/* Unit tests of src/ipc/procmem.c: Rss and Pss from /proc/PID/smaps_rollup. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/procmem.h"

Test(procmem, reads_rss_and_pss_of_this_process)
{
    uint64_t rss = 0, pss = 0;
    cr_assert_eq(fy_procmem_read(getpid(), &rss, &pss), 0);
    cr_assert_gt(pss, 0);
    cr_assert_geq(rss, pss, "rss=%llu pss=%llu", (unsigned long long)rss, (unsigned long long)pss);
}

Test(procmem, pss_grows_with_touched_memory)
{
    uint64_t rss0, pss0, rss1, pss1;
    cr_assert_eq(fy_procmem_read(getpid(), &rss0, &pss0), 0);
    size_t len = 16u << 20;
    volatile char *p = malloc(len);
    cr_assert_not_null(p);
    for (size_t i = 0; i < len; i += 4096)
        p[i] = 1;
    cr_assert_eq(fy_procmem_read(getpid(), &rss1, &pss1), 0);
    cr_assert_geq(pss1, pss0 + 15 * 1024, "pss %llu -> %llu", (unsigned long long)pss0,
                  (unsigned long long)pss1);
    free((void *)p);
}

Test(procmem, gone_process_is_enoent_with_zero_outputs)
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0)
        _exit(0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    uint64_t rss = 1, pss = 1;
    cr_assert_eq(fy_procmem_read(child, &rss, &pss), -ENOENT);
    cr_assert_eq(rss, 0);
    cr_assert_eq(pss, 0);
}
