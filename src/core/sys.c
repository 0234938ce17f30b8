#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fy_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int64_t fy_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fy_write_file_atomic(const char *path, const char *tmp_path, const void *data, size_t len,
                         mode_t mode)
{
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd == -1)
        return -errno;
    int rc = 0;
    if (fchmod(fd, mode) == -1)
        rc = -errno;
    if (rc == 0)
        rc = fy_write_all(fd, data, len);
    if (close(fd) == -1 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp_path, path) == -1)
        rc = -errno;
    if (rc < 0)
        unlink(tmp_path);
    return rc;
}
