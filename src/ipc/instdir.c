/* The instance directory (see instdir.h). */
#include "instdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "ipc/sock.h"
#include "core/sys.h"

#define NAME_PREFIX "ferry."

const char *fy_instdir_base(void)
{
    const char *t = getenv("TMPDIR");
    if (t != NULL && t[0] == '/')
        return t;
    return "/tmp";
}

int fy_instdir_create(fy_instdir_t *dir)
{
    if (dir == NULL)
        return -EINVAL;
    const char *base = fy_instdir_base();
    /* Random names collide only by accident; a few tries make that harmless. */
    for (int attempt = 0; attempt < 8; attempt++) {
        uint32_t rnd;
        int rc = fy_random_bytes(&rnd, sizeof rnd);
        if (rc < 0)
            return rc;
        int n = snprintf(dir->path, sizeof dir->path, "%s/" NAME_PREFIX "%ld.%08x", base,
                         (long)getpid(), (unsigned)rnd);
        if (n < 0 || (size_t)n >= sizeof dir->path) {
            dir->path[0] = '\0';
            return -ENAMETOOLONG;
        }
        if (mkdir(dir->path, 0700) == -1) {
            if (errno == EEXIST)
                continue;
            rc = -errno;
            dir->path[0] = '\0';
            return rc;
        }
        /* mkdir honours the umask, which can only remove bits; state the mode exactly. */
        if (chmod(dir->path, 0700) == -1) {
            rc = -errno;
            rmdir(dir->path);
            dir->path[0] = '\0';
            return rc;
        }
        return 0;
    }
    dir->path[0] = '\0';
    return -EEXIST;
}

/* A file name inside the directory: non-empty, no '/', not "." or "..". */
static bool valid_name(const char *name)
{
    return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

int fy_instdir_write_file(const fy_instdir_t *dir, const char *name, const void *data, size_t len,
                          mode_t mode)
{
    if (dir == NULL || dir->path[0] == '\0' || !valid_name(name) || (data == NULL && len > 0) ||
        (mode & ~(mode_t)0777) != 0)
        return -EINVAL;
    uint32_t rnd;
    int rc = fy_random_bytes(&rnd, sizeof rnd);
    if (rc < 0)
        return rc;
    char final_path[512], tmp_path[512];
    int n = snprintf(final_path, sizeof final_path, "%s/%s", dir->path, name);
    int m = snprintf(tmp_path, sizeof tmp_path, "%s/.%s.%08x.tmp", dir->path, name, (unsigned)rnd);
    if (n < 0 || (size_t)n >= sizeof final_path || m < 0 || (size_t)m >= sizeof tmp_path)
        return -ENAMETOOLONG;
    return fy_write_file_atomic(final_path, tmp_path, data, len, mode);
}

/* Removes the directory at <path> and its entries (empty subdirectories too). */
static int remove_tree(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd == -1)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int rc = -errno;
        close(dfd);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dfd, e->d_name, 0) == -1) {
            int err = errno;
            if (err == EISDIR)
                err = unlinkat(dfd, e->d_name, AT_REMOVEDIR) == 0 ? 0 : errno;
            if (err != 0 && err != ENOENT && rc == 0)
                rc = -err;
        }
    }
    closedir(d);
    if (rmdir(path) == -1 && rc == 0)
        rc = -errno;
    return rc;
}

int fy_instdir_remove(fy_instdir_t *dir)
{
    if (dir == NULL || dir->path[0] == '\0')
        return -EINVAL;
    int rc = remove_tree(dir->path);
    if (rc == 0)
        dir->path[0] = '\0';
    return rc;
}

pid_t fy_instdir_name_pid(const char *name)
{
    if (name == NULL || strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) != 0)
        return -EINVAL;
    const char *p = name + strlen(NAME_PREFIX);
    long pid = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9') {
        pid = pid * 10 + (*p - '0');
        if (pid > INT32_MAX)
            return -EINVAL;
        p++;
    }
    if (p == digits || *p != '.' || p[1] == '\0' || pid <= 0)
        return -EINVAL;
    return (pid_t)pid;
}

/* True when no process <pid> exists. EPERM means it exists under another uid: alive. */
static bool pid_is_dead(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

int fy_instdir_clean_stale(void)
{
    const char *base = fy_instdir_base();
    int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bfd == -1)
        return -errno;
    DIR *d = fdopendir(bfd);
    if (d == NULL) {
        int rc = -errno;
        close(bfd);
        return rc;
    }
    int removed = 0;
    uid_t uid = getuid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = fy_instdir_name_pid(e->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        struct stat st;
        /* lstat through the dir fd: a symlink named like an instance is never followed. */
        if (fstatat(bfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
            continue;
        if (!S_ISDIR(st.st_mode) || st.st_uid != uid || !pid_is_dead(pid))
            continue;
        char path[512];
        int n = snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        int rc = remove_tree(path);
        if (rc < 0) {
            fy_log(FY_LOG_WARN, "ipc", "dir=%s pid=%ld: cannot remove stale instance dir: %s", path,
                   (long)pid, strerror(-rc));
            continue;
        }
        fy_log(FY_LOG_INFO, "ipc", "dir=%s pid=%ld: removed stale instance dir", path, (long)pid);
        removed++;
    }
    closedir(d);
    return removed;
}
