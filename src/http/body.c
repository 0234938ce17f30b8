/* Request-body buffering: memory up to a threshold, then an unlinked temp file, so the body of
 * a slow upload is complete before a worker is checked out, and a large one costs no memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_internal.h"
#include "core/sys.h"

void fy_http_body_init(fy_http_body_t *b, size_t threshold, const char *tmp_dir)
{
    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->threshold = threshold;
    b->tmp_dir = tmp_dir;
}

bool fy_http_body_in_memory(const fy_http_body_t *b) { return b->fd == -1; }

/* An O_TMPFILE file in <dir>, or where the file system lacks it, mkstemp + unlink. */
static int open_temp(const char *dir)
{
    if (dir == NULL || dir[0] == '\0') {
        dir = getenv("TMPDIR");
        if (dir == NULL || dir[0] == '\0')
            dir = "/tmp";
    }
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd != -1)
        return fd;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/ferry-body.XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    fd = mkostemp(path, O_CLOEXEC);
    if (fd == -1)
        return -errno;
    unlink(path);
    return fd;
}

static int spill(fy_http_body_t *b)
{
    int fd = open_temp(b->tmp_dir);
    if (fd < 0) {
        fy_log(FY_LOG_ERROR, "http", "dir=%s: cannot create a temp file for a request body: %s",
               b->tmp_dir ? b->tmp_dir : "$TMPDIR", strerror(-fd));
        return fd;
    }
    int rc = fy_write_all(fd, b->mem, (size_t)b->len);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    b->fd = fd;
    return 0;
}

int fy_http_body_append(fy_http_body_t *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (b->fd == -1 && b->len + len > b->threshold) {
        int rc = spill(b);
        if (rc < 0)
            return rc;
    }
    if (b->fd != -1) {
        int rc = fy_write_all(b->fd, data, len);
        if (rc < 0) {
            fy_log(FY_LOG_ERROR, "http", "cannot write a request body to its temp file: %s",
                   strerror(-rc));
            return rc;
        }
        b->len += len;
        return 0;
    }
    size_t need = (size_t)b->len + len;
    if (need > b->mem_cap) {
        size_t cap = b->mem_cap ? b->mem_cap : 4096;
        while (cap < need)
            cap *= 2;
        if (cap > b->threshold && b->threshold >= need)
            cap = b->threshold;
        b->mem = fy_xrealloc(b->mem, cap);
        b->mem_cap = cap;
    }
    memcpy(b->mem + b->len, data, len);
    b->len += len;
    return 0;
}

ssize_t fy_http_body_read(const fy_http_body_t *b, uint64_t offset, void *buf, size_t cap)
{
    if (offset >= b->len)
        return 0;
    uint64_t left = b->len - offset;
    size_t n = left < cap ? (size_t)left : cap;
    if (b->fd == -1) {
        memcpy(buf, b->mem + offset, n);
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t got = pread(b->fd, buf, n, (off_t)offset);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1)
            return -errno;
        if (got == 0)
            return -EIO;   /* the file is shorter than what we wrote: someone truncated it */
        return got;
    }
}

void fy_http_body_reset(fy_http_body_t *b)
{
    if (b->fd != -1)
        close(b->fd);
    b->fd = -1;
    b->len = 0;
}

void fy_http_body_dispose(fy_http_body_t *b)
{
    fy_http_body_reset(b);
    free(b->mem);
    b->mem = NULL;
    b->mem_cap = 0;
}
