/* systemd integration of `ferry start` without libsystemd (docs/deploying.md, "systemd"): the
 * two small protocols, as sd_notify(3) and sd_listen_fds(3) define them.
 *
 *  - Notification: datagrams "READY=1", "STATUS=...", "STOPPING=1", "RELOADING=1" to the Unix
 *    socket named by NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 *  - Socket activation: LISTEN_PID (must be our pid), LISTEN_FDS (that many listening sockets
 *    from fd 3 on), LISTEN_FDNAMES (their names, ':'-separated, optional).
 *
 * fy_systemd_open reads and removes these variables (workers must not take them for theirs).
 * Loop thread (or before the loop) only. */
#ifndef FY_CLI_SYSTEMD_H
#define FY_CLI_SYSTEMD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The first fd of socket activation, and a bound on how many ferry takes. */
#define FY_SYSTEMD_LISTEN_FDS_START 3
#define FY_SYSTEMD_LISTEN_FDS_MAX 8

typedef struct fy_systemd {
    int notify_fd;                     /* -1 when NOTIFY_SOCKET is not set */
    char notify_addr[108];             /* sun_path; a leading '\0' for the abstract namespace */
    size_t notify_addr_len;            /* bytes of notify_addr used */
    unsigned listen_fds;               /* 0 when not socket-activated */
    char listen_names[FY_SYSTEMD_LISTEN_FDS_MAX][64]; /* "" when unnamed */
} fy_systemd_t;

/* Parses the socket-activation variables (each may be NULL) for the process <self>. Returns the
 * number of fds (0 when LISTEN_PID or LISTEN_FDS is unset or LISTEN_PID is another process's,
 * as sd_listen_fds has it) and fills <names> (names[i] "" when not given); or -EINVAL for a
 * malformed number, LISTEN_FDS 0 or above FY_SYSTEMD_LISTEN_FDS_MAX, or a name longer than 63
 * bytes, after writing why into <err>. Pure. */
int fy_systemd_parse_listen(const char *pid, const char *fds, const char *names, pid_t self,
                            char names_out[][64], char *err, size_t err_len);

/* Parses NOTIFY_SOCKET <value> into <sd>'s address. Returns 0, or -EINVAL (empty, not absolute
 * nor '@', too long) after writing why into <err>. Pure. */
int fy_systemd_parse_notify(const char *value, fy_systemd_t *sd, char *err, size_t err_len);

/* Reads NOTIFY_SOCKET and the LISTEN_* variables of the environment into <sd>, removes them from
 * it, and opens the notification socket. Returns 0, or -EINVAL after writing why into <err>
 * (the variables are removed all the same). */
int fy_systemd_open(fy_systemd_t *sd, char *err, size_t err_len);

/* Sends <text> ("READY=1\nSTATUS=...") to systemd when NOTIFY_SOCKET was set; a failure is
 * logged once at warn, never fatal. */
void fy_systemd_notify(fy_systemd_t *sd, const char *text);

void fy_systemd_close(fy_systemd_t *sd);

#endif
