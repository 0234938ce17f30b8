/* systemd's notification and socket-activation protocols (see systemd.h). */
#include "cli/systemd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"

/* A decimal number without sign, spaces or leading junk, at most <max>. */
static int parse_number(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -EINVAL;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (max - (unsigned long)(*s - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    *out = v;
    return 0;
}

int fy_systemd_parse_listen(const char *pid, const char *fds, const char *names, pid_t self,
                            char names_out[][64], char *err, size_t err_len)
{
    if (pid == NULL || fds == NULL)
        return 0;
    unsigned long p, n;
    if (parse_number(pid, 4194304, &p) != 0 || p == 0) {
        snprintf(err, err_len, "LISTEN_PID=%s: not a pid", pid);
        return -EINVAL;
    }
    if ((pid_t)p != self)
        return 0;   /* meant for another process (a parent that did not clear it) */
    if (parse_number(fds, 1000000, &n) != 0 || n == 0 || n > FY_SYSTEMD_LISTEN_FDS_MAX) {
        snprintf(err, err_len, "LISTEN_FDS=%s: not a number of sockets from 1 to %d", fds,
                 FY_SYSTEMD_LISTEN_FDS_MAX);
        return -EINVAL;
    }
    for (unsigned long i = 0; i < n; i++)
        names_out[i][0] = '\0';
    const char *q = names;
    for (unsigned long i = 0; q != NULL && *q != '\0' && i < n; i++) {
        const char *end = strchr(q, ':');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > 63) {
            snprintf(err, err_len, "LISTEN_FDNAMES: the name of fd %lu is longer than 63 bytes",
                     i + FY_SYSTEMD_LISTEN_FDS_START);
            return -EINVAL;
        }
        memcpy(names_out[i], q, len);
        names_out[i][len] = '\0';
        q = end ? end + 1 : NULL;
    }
    return (int)n;
}

int fy_systemd_parse_notify(const char *value, fy_systemd_t *sd, char *err, size_t err_len)
{
    size_t len = value ? strlen(value) : 0;
    if (len == 0 || (value[0] != '/' && value[0] != '@')) {
        snprintf(err, err_len, "NOTIFY_SOCKET=%s: not an absolute path nor @name", value ? value : "");
        return -EINVAL;
    }
    if (len >= sizeof sd->notify_addr) {
        snprintf(err, err_len, "NOTIFY_SOCKET: longer than %zu bytes", sizeof sd->notify_addr - 1);
        return -EINVAL;
    }
    memcpy(sd->notify_addr, value, len);
    if (value[0] == '@')
        sd->notify_addr[0] = '\0';
    sd->notify_addr_len = len;   /* a path needs no NUL in the address; a name must not have one */
    return 0;
}

int fy_systemd_open(fy_systemd_t *sd, char *err, size_t err_len)
{
    memset(sd, 0, sizeof *sd);
    sd->notify_fd = -1;
    int rc = 0;
    const char *notify = getenv("NOTIFY_SOCKET");
    if (notify != NULL) {
        rc = fy_systemd_parse_notify(notify, sd, err, err_len);
        if (rc == 0) {
            sd->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (sd->notify_fd == -1) {
                snprintf(err, err_len, "NOTIFY_SOCKET: socket: %s", strerror(errno));
                rc = -EINVAL;
            }
        }
    }
    if (rc == 0) {
        int n = fy_systemd_parse_listen(getenv("LISTEN_PID"), getenv("LISTEN_FDS"),
                                        getenv("LISTEN_FDNAMES"), getpid(), sd->listen_names,
                                        err, err_len);
        if (n < 0)
            rc = n;
        else
            sd->listen_fds = (unsigned)n;
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}

void fy_systemd_notify(fy_systemd_t *sd, const char *text)
{
    if (sd->notify_fd < 0)
        return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, sd->notify_addr, sd->notify_addr_len);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sd->notify_addr_len);
    if (sendto(sd->notify_fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&addr, len) ==
        -1) {
        static bool warned;
        if (!warned)
            fy_log(FY_LOG_WARN, "start", "NOTIFY_SOCKET: cannot notify systemd: %s",
                   strerror(errno));
        warned = true;
    }
}

void fy_systemd_close(fy_systemd_t *sd)
{
    if (sd->notify_fd >= 0)
        close(sd->notify_fd);
    sd->notify_fd = -1;
}
