/* Direct spawning: one `ferry worker` child, its handshake, output capture and reaping.
 * See spawn.h for the lifecycle and README.md for the protocol. */
#include "spawn/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/abstract_server.h"
#include "core/alloc.h"
#include "core/log.h"
#include "ipc/handshake.h"
#include "core/sys.h"
#include "ipc/channel.h"
#include "proto/msgchan.h"
#include "spawn/spawn_internal.h"

extern char **environ;

/* One captured output stream (the child's stdout or stderr). */
typedef struct outcap {
    uv_pipe_t pipe;
    fy_proc_t *proc;
    const char *name; /* "stdout" or "stderr", for debug lines */
    char line[FY_SPAWN_LINE_MAX];
    size_t line_len;
    bool open; /* handle initialised and not yet closed */
    bool eof;
} outcap_t;

struct fy_proc {
    uv_loop_t *loop;
    fy_spawn_callbacks_t cbs;
    void *data;
    char *app_root;
    unsigned start_timeout_ms;

    uv_process_t process;
    bool process_open; /* initialised by uv_spawn (even a failed one) */
    bool spawned;      /* uv_spawn succeeded */
    pid_t pid;
    bool exited;
    int64_t exit_status;
    int term_signal;

    int owner_fd; /* write end of the owner pipe; -1 when closed */

    uv_pipe_t ctl;
    bool ctl_open;
    fy_msgparser_t parser;

    outcap_t out, err;
    char err_tail[FY_SPAWN_STDERR_TAIL]; /* ring buffer of the last stderr bytes */
    size_t err_tail_len, err_tail_pos;

    uv_timer_t start_timer; /* start timeout; also the deferred report of a failed exec */
    uv_timer_t kill_timer;  /* fy_proc_stop's SIGKILL deadline */
    int stop_signal;        /* the last signal fy_proc_stop sent */
    uv_timer_t drain_timer; /* bounds the output drain after exit */
    bool drain_expired;

    bool ready;          /* a valid ready message arrived */
    bool ready_reported; /* on_ready ran (with any status) */
    bool exit_reported;
    int fail_status; /* the boot failure's status, once known */
    bool fail_known; /* an error/malformed message or a timeout set the summary */
    char *summary;
    char *details;
    char address[FY_ADDRESS_MAX];
    char secret[FY_SECRET_HEX_LEN + 1];
    unsigned protocol; /* 1, or 2 when the ready message offered session protocol v2 */

    /* Smart spawning: a worker forked by a preloader (fy_proc_spawn_smart). It is not our child:
     * its exit is watched through a pidfd, its control channel is the spawn connection. */
    bool forked;
    bool is_preloader;       /* started with FERRY_PRELOAD */
    bool preloads;           /* ...and its ready said "preloader" (docs/protocol.md §5.4) */
    bool deferred_fail;      /* a failure known before any child: reported on the next turn */
    fy_preloader_t *preloader; /* while waiting for it to be ready; NULL otherwise */
    fy_proc_t *wait_next;    /* in the preloader's waiting list */
    int ctl_fd;              /* the spawn connection (-1: none) */
    bool keep_control;       /* opts->keep_control: the channel outlives the handshake */
    int kept_ctl_fd;         /* ...kept after ready for a re-fork request (-1: none) */
    uv_poll_t ctl_poll;
    bool want_owner_fd;      /* the owner pipe's write end has not arrived yet */
    int pid_fd;              /* pidfd of the forked worker, from its ready message */
    uv_poll_t pid_poll;
    bool pid_poll_open;
    int64_t spawn_started_ms;
    unsigned spawn_ms;       /* request → ready */

    const char *overdue_summary; /* static: why a worker that should have exited is killed */
    bool closing;
    bool closing_all; /* close_all ran: the last close callback frees the proc */
    int pending_closes;
};

static void maybe_finish(fy_proc_t *p);

/* --- validation ------------------------------------------------------------------------- */

int fy_spawn_check_ready(const char *pid, const char *address, const char *secret, pid_t *pid_out,
                         const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    long long v = 0;
    if (pid == NULL || pid[0] == '\0') {
        *why = "pid is empty";
        return -EPROTO;
    }
    for (const char *c = pid; *c; c++) {
        if (*c < '0' || *c > '9') {
            *why = "pid is not a decimal number";
            return -EPROTO;
        }
        v = v * 10 + (*c - '0');
        if (v > 0x7fffffff) {
            *why = "pid is out of range";
            return -EPROTO;
        }
    }
    if (v <= 0) {
        *why = "pid is not positive";
        return -EPROTO;
    }
    size_t alen = address ? strlen(address) : 0;
    size_t prefix = 0;
    if (alen > 9 && strncmp(address, "abstract:", 9) == 0)
        prefix = 9;
    else if (alen > 5 && strncmp(address, "unix:", 5) == 0)
        prefix = 5;
    if (prefix == 0) {
        *why = "address is not abstract:NAME or unix:PATH";
        return -EPROTO;
    }
    if (alen >= FY_ADDRESS_MAX) {
        *why = "address is too long";
        return -EPROTO;
    }
    if (secret == NULL || strlen(secret) != FY_SECRET_HEX_LEN) {
        *why = "secret is not 32 hex digits";
        return -EPROTO;
    }
    for (const char *c = secret; *c; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
            *why = "secret is not lowercase hex";
            return -EPROTO;
        }
    }
    if (pid_out)
        *pid_out = (pid_t)v;
    return 0;
}

/* --- output capture ---------------------------------------------------------------------- */

static void log_line(fy_proc_t *p, const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '\r')
        len--;
    fy_log(FY_LOG_INFO, "app", "app=%s pid=%d: %.*s", p->app_root, (int)p->pid, (int)len, s);
}

static void tail_append(fy_proc_t *p, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p->err_tail[p->err_tail_pos] = s[i];
        p->err_tail_pos = (p->err_tail_pos + 1) % sizeof p->err_tail;
        if (p->err_tail_len < sizeof p->err_tail)
            p->err_tail_len++;
    }
}

/* The captured stderr tail as a new string, starting at a line boundary when it was cut. */
static char *tail_string(const fy_proc_t *p)
{
    char *s = fy_xmalloc(p->err_tail_len + 1);
    size_t start = (p->err_tail_pos + sizeof p->err_tail - p->err_tail_len) % sizeof p->err_tail;
    for (size_t i = 0; i < p->err_tail_len; i++)
        s[i] = p->err_tail[(start + i) % sizeof p->err_tail];
    s[p->err_tail_len] = '\0';
    char *from = s;
    if (p->err_tail_len == sizeof p->err_tail) {
        char *nl = strchr(s, '\n');
        if (nl != NULL && nl[1] != '\0')
            from = nl + 1;
    }
    size_t n = strlen(from);
    while (n > 0 && (from[n - 1] == '\n' || from[n - 1] == '\r'))
        n--;
    char *out = fy_xstrndup(from, n);
    free(s);
    return out;
}

static void outcap_feed(outcap_t *oc, const char *buf, size_t len)
{
    fy_proc_t *p = oc->proc;
    if (oc == &p->err)
        tail_append(p, buf, len);
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t take = nl ? (size_t)(nl - buf) : len;
        size_t room = sizeof oc->line - oc->line_len;
        if (take >= room) {
            /* Over-long line: log what fits and go on with the rest. */
            memcpy(oc->line + oc->line_len, buf, room);
            log_line(p, oc->line, sizeof oc->line);
            oc->line_len = 0;
            buf += room;
            len -= room;
            continue;
        }
        memcpy(oc->line + oc->line_len, buf, take);
        oc->line_len += take;
        buf += take;
        len -= take;
        if (nl) {
            log_line(p, oc->line, oc->line_len);
            oc->line_len = 0;
            buf++;
            len--;
        }
    }
}

static void outcap_flush(outcap_t *oc)
{
    if (oc->line_len > 0) {
        log_line(oc->proc, oc->line, oc->line_len);
        oc->line_len = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536];
    (void)h;
    (void)suggested;
    /* One read at a time on the loop thread, consumed before the next: a static slab is safe. */
    buf->base = slab;
    buf->len = sizeof slab;
}

static void on_output(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    outcap_t *oc = s->data;
    if (nread > 0) {
        outcap_feed(oc, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    if (nread != UV_EOF)
        fy_log(FY_LOG_DEBUG, "spawn", "app=%s pid=%d: reading %s: %s", oc->proc->app_root,
               (int)oc->proc->pid, oc->name, uv_strerror((int)nread));
    uv_read_stop(s);
    outcap_flush(oc);
    oc->eof = true;
    maybe_finish(oc->proc);
}

/* --- closing --------------------------------------------------------------------------- */

static void handle_closed(fy_proc_t *p)
{
    FY_ASSERT(p->pending_closes > 0);
    /* The control channel may close early, on its own; the proc goes only after close_all. */
    if (--p->pending_closes > 0 || !p->closing_all)
        return;
    fy_msgparser_dispose(&p->parser);
    if (p->cbs.on_closed)
        p->cbs.on_closed(p, p->data);
    free(p->summary);
    free(p->details);
    free(p->app_root);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}
static void on_outcap_closed(uv_handle_t *h)
{
    handle_closed(((outcap_t *)h->data)->proc);
}

static void close_handle(fy_proc_t *p, uv_handle_t *h)
{
    p->pending_closes++;
    uv_close(h, on_handle_closed);
}

static void close_outcap(fy_proc_t *p, outcap_t *oc)
{
    if (oc->open) {
        oc->open = false;
        p->pending_closes++;
        uv_close((uv_handle_t *)&oc->pipe, on_outcap_closed);
    }
}

static void close_owner(fy_proc_t *p)
{
    if (p->owner_fd >= 0) {
        close(p->owner_fd);
        p->owner_fd = -1;
    }
}

static void on_ctl_poll_closed(uv_handle_t *h)
{
    fy_proc_t *p = h->data;
    close(p->ctl_fd);
    p->ctl_fd = -1;
    handle_closed(p);
}

static void on_pid_poll_closed(uv_handle_t *h)
{
    fy_proc_t *p = h->data;
    close(p->pid_fd);
    p->pid_fd = -1;
    handle_closed(p);
}

static void close_ctl(fy_proc_t *p)
{
    if (p->ctl_open) {
        p->ctl_open = false;
        if (p->forked) {
            p->pending_closes++;
            uv_close((uv_handle_t *)&p->ctl_poll, on_ctl_poll_closed);
        } else {
            close_handle(p, (uv_handle_t *)&p->ctl);
        }
    }
}

/* Closes every handle once the child is reaped (or was never started). */
static void close_kept_ctl(fy_proc_t *p)
{
    if (p->kept_ctl_fd >= 0) {
        close(p->kept_ctl_fd);
        p->kept_ctl_fd = -1;
    }
}

static void close_all(fy_proc_t *p)
{
    FY_ASSERT(!p->closing_all);
    p->closing_all = true;
    close_owner(p);
    close_ctl(p);
    close_kept_ctl(p);
    outcap_flush(&p->out);
    outcap_flush(&p->err);
    close_outcap(p, &p->out);
    close_outcap(p, &p->err);
    close_handle(p, (uv_handle_t *)&p->start_timer);
    close_handle(p, (uv_handle_t *)&p->kill_timer);
    close_handle(p, (uv_handle_t *)&p->drain_timer);
    if (p->process_open) {
        p->process_open = false;
        close_handle(p, (uv_handle_t *)&p->process);
    }
    if (p->pid_poll_open) {
        p->pid_poll_open = false;
        p->pending_closes++;
        uv_close((uv_handle_t *)&p->pid_poll, on_pid_poll_closed);
    }
}

/* --- failure and completion -------------------------------------------------------------- */

/* Records why the boot failed; the first reason wins. Takes ownership of nothing. */
static void set_failure(fy_proc_t *p, int status, const char *summary, const char *details)
{
    if (p->fail_known)
        return;
    p->fail_known = true;
    p->fail_status = status;
    free(p->summary);
    free(p->details);
    p->summary = fy_xstrdup(summary);
    p->details = details ? fy_xstrdup(details) : NULL;
}

static void forked_gone(fy_proc_t *p);

static void kill_now(fy_proc_t *p)
{
    if (p->forked) {
        if (p->exited)
            return;
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
            return;
        }
        /* Not ready, so its pid is not known: the EOF of its owner pipe (if it has sent it) or
         * of its control channel ends it, and there is nothing of it to wait for. */
        close_owner(p);
        close_ctl(p);
        forked_gone(p);
        return;
    }
    if (p->spawned && !p->exited)
        uv_process_kill(&p->process, SIGKILL);
}

/* Runs the final callback when the child has exited and its output is drained (or the drain
 * time is up). */
static void maybe_finish(fy_proc_t *p)
{
    if (p->closing || !p->exited)
        return;
    bool drained = (!p->out.open || p->out.eof) && (!p->err.open || p->err.eof);
    if (!drained && !p->drain_expired)
        return;
    uv_timer_stop(&p->drain_timer);
    uv_timer_stop(&p->start_timer);
    uv_timer_stop(&p->kill_timer);
    outcap_flush(&p->out);
    outcap_flush(&p->err);
    if (!p->ready_reported) {
        p->ready_reported = true;
        if (!p->fail_known) {
            char buf[128];
            if (p->term_signal)
                snprintf(buf, sizeof buf, "worker was killed by signal %d before it was ready",
                         p->term_signal);
            else
                snprintf(buf, sizeof buf, "worker exited with status %lld before it was ready",
                         (long long)p->exit_status);
            set_failure(p, -ENOEXEC, buf, NULL);
        }
        if (p->details == NULL || p->details[0] == '\0') {
            free(p->details);
            p->details = tail_string(p);
        }
        close_ctl(p);
        p->cbs.on_ready(p, p->fail_status, p->data);
        return;
    }
    if (!p->exit_reported) {
        p->exit_reported = true;
        if (p->cbs.on_exit)
            p->cbs.on_exit(p, p->exit_status, p->term_signal, p->data);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    fy_proc_t *p = t->data;
    p->drain_expired = true;
    maybe_finish(p);
}

/* The child is gone (reaped by libuv, or a forked worker's pidfd said so). */
static void child_exited(fy_proc_t *p, int64_t exit_status, int term_signal)
{
    p->exited = true;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    close_owner(p);
    if (p->closing) {
        close_all(p);
        return;
    }
    uv_timer_start(&p->drain_timer, on_drain_timeout, FY_SPAWN_DRAIN_MS, 0);
    maybe_finish(p);
}

static void on_process_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    child_exited(proc->data, exit_status, term_signal);
}

/* A forked worker that ended its handshake without ready: it was never ours to wait for. */
static void forked_gone(fy_proc_t *p)
{
    if (p->preloader)
        fy_preloader_unwait(p->preloader, p);
    if (!p->exited)
        child_exited(p, 0, 0);
}

/* A forked worker's exit status, read while it is a zombie (field 52 of /proc/PID/stat, the wait
 * status); 0 and 0 when its parent, the preloader, reaped it first. */
static void zombie_status(pid_t pid, int64_t *exit_status, int *term_signal)
{
    *exit_status = 0;
    *term_signal = 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *c = strrchr(buf, ')');
    if (c == NULL)
        return;
    /* After ")": field 3 (the state) onwards; the exit code is field 52. */
    int field = 2;
    long long last = 0;
    for (char *tok = strtok(c + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 52) {
            last = strtoll(tok, NULL, 10);
            int ws = (int)last;
            if (WIFSIGNALED(ws))
                *term_signal = WTERMSIG(ws);
            else
                *exit_status = WEXITSTATUS(ws);
            return;
        }
    }
}

static void on_pid_readable(uv_poll_t *h, int status, int events)
{
    fy_proc_t *p = h->data;
    (void)status;
    (void)events;
    uv_poll_stop(h);
    int64_t exit_status;
    int term_signal;
    zombie_status(p->pid, &exit_status, &term_signal);
    child_exited(p, exit_status, term_signal);
}

static void on_exit_overdue(uv_timer_t *t)
{
    fy_proc_t *p = t->data;
    set_failure(p, -ENOEXEC, p->overdue_summary, NULL);
    fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d step=handshake: %s; killing it", p->app_root,
           (int)p->pid, p->overdue_summary);
    kill_now(p);
}

/* The handshake is over without ready: the worker should exit now. If it has not within
 * FY_SPAWN_EXIT_GRACE_MS, it is killed, and <summary> (static) is the failure unless one is
 * known already. */
static void expect_exit(fy_proc_t *p, const char *summary)
{
    if (p->forked) {
        if (summary)
            set_failure(p, -ENOEXEC, summary, NULL);
        forked_gone(p);
        return;
    }
    p->overdue_summary = summary ? summary : "worker did not exit after its handshake ended";
    if (!p->exited)
        uv_timer_start(&p->start_timer, on_exit_overdue, FY_SPAWN_EXIT_GRACE_MS, 0);
}

static void on_start_timeout(uv_timer_t *t)
{
    fy_proc_t *p = t->data;
    if (!p->spawned || p->deferred_fail) {
        /* The deferred report of a failed exec: nothing runs, nothing to reap. */
        p->exited = true;
        p->drain_expired = true;
        maybe_finish(p);
        return;
    }
    char buf[96];
    snprintf(buf, sizeof buf, "worker did not become ready within %u s",
             (p->start_timeout_ms + 999) / 1000);
    fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d step=wait_ready: %s; killing it", p->app_root,
           (int)p->pid, buf);
    set_failure(p, -ETIMEDOUT, buf, NULL);
    kill_now(p);
}

/* --- control channel ------------------------------------------------------------------- */

static void handshake_failed(fy_proc_t *p, const char *summary, const char *details)
{
    fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d step=handshake: %s; killing it", p->app_root,
           (int)p->pid, summary);
    set_failure(p, -EPROTO, summary, details);
    close_ctl(p);
    kill_now(p);
}

static void handle_message(fy_proc_t *p, fy_array_t *msg)
{
    const char *name = msg->items[0];
    if (strcmp(name, "ready") == 0) {
        /* A fifth item "2" offers session protocol v2; items after it are for later versions
         * (docs/protocol.md §4.1). */
        if (msg->count < 4) {
            handshake_failed(p, "malformed ready message: expected at least 4 items", NULL);
            return;
        }
        pid_t pid;
        const char *why;
        if (fy_spawn_check_ready(msg->items[1], msg->items[2], msg->items[3], &pid, &why) != 0) {
            char buf[160];
            snprintf(buf, sizeof buf, "malformed ready message: %s", why);
            handshake_failed(p, buf, NULL);
            return;
        }
        if (p->forked) {
            /* docs/protocol.md §5.4: the owner pipe first, then ready. */
            if (p->owner_fd < 0) {
                handshake_failed(p, "ready from a forked worker without its owner pipe", NULL);
                return;
            }
            int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
            if (pfd < 0) {
                char buf[160];
                snprintf(buf, sizeof buf, "cannot watch forked worker pid %d: %s", (int)pid,
                         strerror(errno));
                handshake_failed(p, buf, NULL);
                return;
            }
            p->pid = pid;
            p->pid_fd = pfd;
            uv_poll_init(p->loop, &p->pid_poll, pfd);
            p->pid_poll.data = p;
            p->pid_poll_open = true;
            uv_poll_start(&p->pid_poll, UV_READABLE, on_pid_readable);
        } else if (pid != p->pid) {
            fy_log(FY_LOG_DEBUG, "spawn", "app=%s pid=%d: worker reports pid %d", p->app_root,
                   (int)p->pid, (int)pid);
        }
        p->spawn_ms = (unsigned)(fy_monotonic_ms() - p->spawn_started_ms);
        snprintf(p->address, sizeof p->address, "%s", msg->items[2]);
        snprintf(p->secret, sizeof p->secret, "%s", msg->items[3]);
        p->protocol = msg->count >= 5 && strcmp(msg->items[4], "2") == 0 ? 2 : 1;
        /* A preloader names itself; a loader that does not know FERRY_PRELOAD answers as a
         * worker (preloader.c then spawns directly). */
        p->preloads = p->is_preloader && msg->count >= 5 &&
                      strcmp(msg->items[4], FY_PRELOADER_READY_ITEM) == 0;
        if (p->preloads)
            p->protocol = 1;
        else if (msg->count >= 5 && p->protocol == 1)
            fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d: ready offers protocol \"%s\", which this "
                   "ferry does not know; speaking v1", p->app_root, (int)p->pid, msg->items[4]);
        p->ready = true;
        p->ready_reported = true;
        uv_timer_stop(&p->start_timer);
        /* The handshake is over; the owner pipe, not this channel, ties the worker to us. A
         * smart worker's channel is kept when the pool may ask it for a re-fork
         * (docs/protocol.md §5.5): a copy outlives the handle that read the handshake. */
        if (p->forked && p->keep_control && !p->is_preloader && p->ctl_fd >= 0) {
            p->kept_ctl_fd = fcntl(p->ctl_fd, F_DUPFD_CLOEXEC, 0);
            if (p->kept_ctl_fd >= 0)
                (void)fy_fd_set_nonblock(p->kept_ctl_fd, false);
        }
        close_ctl(p);
        p->cbs.on_ready(p, 0, p->data);
        return;
    }
    if (strcmp(name, "error") == 0 && msg->count >= 2) {
        const char *details = msg->count >= 3 ? msg->items[2] : "";
        set_failure(p, -ENOEXEC, msg->items[1][0] ? msg->items[1] : "worker reported an error",
                    details);
        fy_log(FY_LOG_DEBUG, "spawn", "app=%s pid=%d step=handshake: worker reported: %s",
               p->app_root, (int)p->pid, msg->items[1]);
        /* It exits by itself; if it does not, it is killed. */
        close_ctl(p);
        expect_exit(p, NULL);
        return;
    }
    char buf[160];
    snprintf(buf, sizeof buf, "unexpected message '%.64s' during the spawn handshake", name);
    handshake_failed(p, buf, NULL);
}

/* The control channel ended (<nread> UV_EOF) or failed. */
static void ctl_end(fy_proc_t *p, ssize_t nread)
{
    if (p->forked && p->want_owner_fd) {
        /* Not one byte from a child: the preloader closed the request without forking (it is
         * exiting) or died. Not the app's failure; the caller asks again (spawn.h). */
        char buf[FY_ADDRESS_MAX + 96];
        snprintf(buf, sizeof buf, "the preloader ended the spawn request without forking (%s)",
                 nread == UV_EOF ? "end of channel" : uv_strerror((int)nread));
        close_ctl(p);
        fy_proc_forked_fail(p, -EAGAIN, buf, NULL);
        return;
    }
    {
        if (nread != UV_EOF)
            fy_log(FY_LOG_DEBUG, "spawn", "app=%s pid=%d: control channel: %s", p->app_root,
                   (int)p->pid, uv_strerror((int)nread));
        else if (fy_msgparser_eof(&p->parser) != 0)
            set_failure(p, -EPROTO, "the control channel closed inside a message", NULL);
        /* Without ready: give it a moment to exit by itself (its exit status is the better
         * summary), then kill it. */
        close_ctl(p);
        expect_exit(p, "worker closed the control channel before it was ready");
    }
}

static void ctl_bytes(fy_proc_t *p, const uint8_t *data, size_t len)
{
    while (len > 0 && p->ctl_open) {
        size_t used = 0;
        int r = fy_msgparser_feed(&p->parser, data, len, &used);
        data += used;
        len -= used;
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            handshake_failed(
                p, r == -EMSGSIZE ? "control message too large" : "malformed control message",
                NULL);
            return;
        }
        fy_array_t msg = {0};
        if (fy_msgparser_take_array(&p->parser, &msg) != 0) {
            handshake_failed(p, "malformed control message", NULL);
            return;
        }
        handle_message(p, &msg);
        fy_array_dispose(&msg);
        if (p->ready || p->fail_known)
            break; /* nothing more is expected on this channel */
    }
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fy_proc_t *p = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        ctl_end(p, nread);
        return;
    }
    ctl_bytes(p, (const uint8_t *)buf->base, (size_t)nread);
}

/* Reads the one-byte fd message at the start of a forked worker's channel (docs/protocol.md
 * §5.4). Returns 1 (*fd set, or -1 when the byte came without one), 0 at EOF, or -errno. */
static int recv_first_byte(int sock, uint8_t *byte, int *fd)
{
    *fd = -1;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int) * 4)];
    } cbuf;
    struct iovec iov = {.iov_base = byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.space,
                       .msg_controllen = sizeof cbuf.space};
    ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == -1)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
            if (*fd < 0)
                *fd = got;
            else
                close(got); /* exactly one is expected; extras are closed */
        }
    }
    return n == 0 ? 0 : 1;
}

static void on_ctl_poll(uv_poll_t *h, int status, int events)
{
    fy_proc_t *p = h->data;
    (void)events;
    if (status < 0) {
        ctl_end(p, status);
        return;
    }
    uint8_t buf[4096];
    while (p->ctl_open) {
        if (p->want_owner_fd) {
            int fd;
            int r = recv_first_byte(p->ctl_fd, buf, &fd);
            if (r == -EAGAIN || r == -EINTR)
                return;
            if (r <= 0) {
                ctl_end(p, r == 0 ? UV_EOF : r);
                return;
            }
            p->want_owner_fd = false;
            if (fd >= 0) {
                p->owner_fd = fd;
                continue;
            }
            ctl_bytes(p, buf, 1); /* no fd: the first byte of a message (an error) */
            continue;
        }
        ssize_t n = read(p->ctl_fd, buf, sizeof buf);
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            ctl_end(p, n == 0 ? UV_EOF : -errno);
            return;
        }
        ctl_bytes(p, buf, (size_t)n);
    }
}

/* --- spawning ---------------------------------------------------------------------------- */

static bool is_ours(const char *entry)
{
    static const char *const names[] = {
        FY_HANDSHAKE_VAR_APP_ROOT "=",     FY_HANDSHAKE_VAR_APP_TYPE "=",
        FY_HANDSHAKE_VAR_ENV "=",          FY_HANDSHAKE_VAR_OWNER_FD "=",
        FY_HANDSHAKE_VAR_CONTROL_FD "=",   FY_HANDSHAKE_VAR_INSTANCE_DIR "=",
        FY_HANDSHAKE_VAR_PRELOAD "=",      "FERRY_CONNECT_PASSWORD="};
    for (size_t i = 0; i < FY_ARRAY_SIZE(names); i++) {
        if (strncmp(entry, names[i], strlen(names[i])) == 0)
            return true;
    }
    return false;
}

/* The core's environment plus the handshake variables. Freed with free_env. */
static char **build_env(const fy_spawn_options_t *o)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = fy_xcalloc(n + 9, sizeof *env);
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (!is_ours(*e))
            env[k++] = fy_xstrdup(*e);
    }
    env[k++] = fy_xasprintf(FY_HANDSHAKE_VAR_APP_ROOT "=%s", o->app_root);
    if (o->app_type)
        env[k++] = fy_xasprintf(FY_HANDSHAKE_VAR_APP_TYPE "=%s", o->app_type);
    env[k++] = fy_xasprintf(FY_HANDSHAKE_VAR_ENV "=%s",
                            o->environment ? o->environment : "production");
    env[k++] = fy_xstrdup(FY_HANDSHAKE_VAR_OWNER_FD "=" FY_HANDSHAKE_OWNER_FD_TEXT);
    env[k++] = fy_xstrdup(FY_HANDSHAKE_VAR_CONTROL_FD "=" FY_HANDSHAKE_CONTROL_FD_TEXT);
    if (o->instance_dir)
        env[k++] = fy_xasprintf(FY_HANDSHAKE_VAR_INSTANCE_DIR "=%s", o->instance_dir);
    if (o->preload)
        env[k++] = fy_xasprintf(FY_HANDSHAKE_VAR_PRELOAD "=%u", o->preload_idle_s);
    env[k] = NULL;
    return env;
}

static void free_env(char **env)
{
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

static void outcap_init(fy_proc_t *p, outcap_t *oc, const char *name)
{
    oc->proc = p;
    oc->name = name;
    uv_pipe_init(p->loop, &oc->pipe, 0);
    oc->pipe.data = oc;
    oc->open = true;
}

static void exec_failed(fy_proc_t *p, int err)
{
    char buf[FY_ADDRESS_MAX + 160];
    snprintf(buf, sizeof buf, "could not start the worker: %s", uv_strerror(err));
    fy_log(FY_LOG_ERROR, "spawn", "app=%s step=exec: %s", p->app_root, buf);
    set_failure(p, err, buf, NULL);
    /* No child to wait for; report on the next loop turn, never from inside fy_proc_spawn. */
    uv_timer_start(&p->start_timer, on_start_timeout, 0, 0);
}

static fy_proc_t *proc_new(uv_loop_t *loop, const fy_spawn_options_t *opts,
                           const fy_spawn_callbacks_t *cbs, void *data)
{
    fy_proc_t *p = fy_xcalloc(1, sizeof *p);
    p->loop = loop;
    p->cbs = *cbs;
    p->data = data;
    p->app_root = fy_xstrdup(opts->app_root);
    p->start_timeout_ms = opts->start_timeout_ms ? opts->start_timeout_ms : 60000;
    p->owner_fd = -1;
    p->ctl_fd = -1;
    p->kept_ctl_fd = -1;
    p->pid_fd = -1;
    p->is_preloader = opts->preload;
    p->keep_control = opts->keep_control;
    p->spawn_started_ms = fy_monotonic_ms();
    fy_msgparser_init(&p->parser);
    uv_timer_init(loop, &p->start_timer);
    uv_timer_init(loop, &p->kill_timer);
    uv_timer_init(loop, &p->drain_timer);
    p->start_timer.data = p->kill_timer.data = p->drain_timer.data = p;
    return p;
}

int fy_proc_spawn(uv_loop_t *loop, const fy_spawn_options_t *opts, const fy_spawn_callbacks_t *cbs,
                  void *data, fy_proc_t **out)
{
    if (loop == NULL || opts == NULL || cbs == NULL || out == NULL || opts->ferry_bin == NULL ||
        opts->app_root == NULL || cbs->on_closed == NULL || cbs->on_ready == NULL)
        return -EINVAL;

    fy_proc_t *p = proc_new(loop, opts, cbs, data);
    *out = p;

    int owner[2] = {-1, -1};
    int ctl[2] = {-1, -1};
    int r = fy_owner_pipe_open(owner);
    if (r < 0) {
        exec_failed(p, r);
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == -1) {
        r = -errno;
        close(owner[0]);
        close(owner[1]);
        exec_failed(p, r);
        return 0;
    }
    p->owner_fd = owner[1];
    uv_pipe_init(loop, &p->ctl, 0);
    p->ctl.data = p;
    p->ctl_open = true;
    r = uv_pipe_open(&p->ctl, ctl[0]);
    if (r < 0) {
        close(ctl[0]);
        close(ctl[1]);
        close(owner[0]);
        exec_failed(p, r);
        return 0;
    }
    outcap_init(p, &p->out, "stdout");
    outcap_init(p, &p->err, "stderr");

    char *args[6];
    size_t na = 0;
    args[na++] = (char *)opts->ferry_bin;
    args[na++] = (char *)"worker";
    args[na++] = (char *)opts->app_root;
    if (opts->app_type) {
        args[na++] = (char *)"--type";
        args[na++] = (char *)opts->app_type;
    }
    args[na] = NULL;
    char **env = build_env(opts);

    /* The child's fd numbers are the indexes: 0-2, then the handshake's two. */
    uv_stdio_container_t stdio[FY_HANDSHAKE_CONTROL_FD + 1];
    _Static_assert(FY_HANDSHAKE_OWNER_FD == 3 && FY_HANDSHAKE_CONTROL_FD == 4,
                   "stdio[] fills fds 0-4 in order");
    stdio[0].flags = UV_IGNORE; /* libuv gives the child /dev/null */
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;
    stdio[FY_HANDSHAKE_OWNER_FD].flags = UV_INHERIT_FD;
    stdio[FY_HANDSHAKE_OWNER_FD].data.fd = owner[0];
    stdio[FY_HANDSHAKE_CONTROL_FD].flags = UV_INHERIT_FD;
    stdio[FY_HANDSHAKE_CONTROL_FD].data.fd = ctl[1];

    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.exit_cb = on_process_exit;
    po.file = opts->ferry_bin;
    po.args = args;
    po.env = env;
    po.stdio = stdio;
    po.stdio_count = FY_HANDSHAKE_CONTROL_FD + 1;
    /* Its own session: a terminal's Ctrl-C reaches the core, which stops workers in order. */
    po.flags = UV_PROCESS_DETACHED;
    if (opts->set_user) {
        /* libuv drops the supplementary groups too (setgroups(0, NULL)) */
        po.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        po.uid = opts->uid;
        po.gid = opts->gid;
    }
    p->process.data = p;
    r = uv_spawn(loop, &p->process, &po);
    p->process_open = true; /* uv_spawn initialises the handle even when it fails */
    free_env(env);
    close(owner[0]);
    close(ctl[1]);
    if (r < 0) {
        exec_failed(p, r);
        return 0;
    }
    p->spawned = true;
    p->pid = p->process.pid;
    fy_log(FY_LOG_DEBUG, "spawn", "app=%s pid=%d: spawned %s worker", p->app_root, (int)p->pid,
           opts->app_type ? opts->app_type : "auto");
    uv_read_start((uv_stream_t *)&p->out.pipe, on_alloc, on_output);
    uv_read_start((uv_stream_t *)&p->err.pipe, on_alloc, on_output);
    uv_read_start((uv_stream_t *)&p->ctl, on_alloc, on_ctl_read);
    uv_timer_start(&p->start_timer, on_start_timeout, p->start_timeout_ms, 0);
    return 0;
}

/* --- control ----------------------------------------------------------------------------- */

pid_t fy_proc_pid(const fy_proc_t *p)
{
    return p->pid;
}
const char *fy_proc_address(const fy_proc_t *p)
{
    return p->address;
}
const char *fy_proc_secret(const fy_proc_t *p)
{
    return p->secret;
}
unsigned fy_proc_protocol(const fy_proc_t *p)
{
    return p->protocol ? p->protocol : 1;
}
unsigned fy_proc_spawn_ms(const fy_proc_t *p)
{
    return p->spawn_ms;
}
bool fy_proc_forked(const fy_proc_t *p)
{
    return p->forked;
}
bool fy_proc_preloads(const fy_proc_t *p)
{
    return p->preloads;
}

/* --- smart spawning: a worker forked by a preloader (spawn_internal.h) --------------------- */

fy_proc_t *fy_proc_forked_new(uv_loop_t *loop, const fy_spawn_options_t *opts,
                              const fy_spawn_callbacks_t *cbs, void *data)
{
    fy_proc_t *p = proc_new(loop, opts, cbs, data);
    p->forked = true;
    p->spawned = true; /* it runs, as far as fy_proc_exited goes, once asked for */
    outcap_init(p, &p->out, "stdout");
    outcap_init(p, &p->err, "stderr");
    uv_timer_start(&p->start_timer, on_start_timeout, p->start_timeout_ms, 0);
    return p;
}

void fy_proc_forked_fail(fy_proc_t *p, int status, const char *summary, const char *details)
{
    p->preloader = NULL;
    set_failure(p, status, summary, details);
    p->deferred_fail = true;
    /* Reported on the next loop turn, never from inside the caller. */
    uv_timer_start(&p->start_timer, on_start_timeout, 0, 0);
}

/* Sends the two output pipes of the process to come on <fd>, a connection on which the request
 * itself already went (a spawn or a re-fork), and reads the answer on the loop. Takes <fd>.
 * <what> names the request in the failure. Returns 0, or a negative errno after failing <p>
 * with -EAGAIN (reported on the next turn). */
static int forked_request(fy_proc_t *p, int fd, int r, const char *what)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (r == 0 && (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1))
        r = -errno;
    if (r == 0) {
        fy_channel_t ch;
        fy_channel_init(&ch, fd, FY_SPAWN_PRELOADER_TIMEOUT_MS);
        r = fy_channel_send_fd(&ch, out[1]);
        if (r == 0)
            r = fy_channel_send_fd(&ch, err[1]);
    }
    if (out[1] >= 0)
        close(out[1]);
    if (err[1] >= 0)
        close(err[1]);
    if (r == 0)
        r = fy_fd_set_nonblock(fd, true);
    if (r != 0) {
        if (fd >= 0)
            close(fd);
        if (out[0] >= 0)
            close(out[0]);
        if (err[0] >= 0)
            close(err[0]);
        char buf[FY_ADDRESS_MAX + 96];
        snprintf(buf, sizeof buf, "cannot %s: %s", what, strerror(-r));
        fy_log(FY_LOG_WARN, "spawn", "app=%s step=preloader_connect: %s", p->app_root, buf);
        fy_proc_forked_fail(p, -EAGAIN, buf, NULL);
        return r;
    }
    uv_pipe_open(&p->out.pipe, out[0]);
    uv_pipe_open(&p->err.pipe, err[0]);
    uv_read_start((uv_stream_t *)&p->out.pipe, on_alloc, on_output);
    uv_read_start((uv_stream_t *)&p->err.pipe, on_alloc, on_output);
    p->ctl_fd = fd;
    uv_poll_init(p->loop, &p->ctl_poll, fd);
    p->ctl_poll.data = p;
    p->ctl_open = true;
    p->want_owner_fd = true;
    uv_poll_start(&p->ctl_poll, UV_READABLE, on_ctl_poll);
    return 0;
}

int fy_proc_forked_connect(fy_proc_t *p, const char *address, const char *password)
{
    p->preloader = NULL;
    const char *items[] = {FY_PRELOADER_SPAWN_MESSAGE};
    int fd = fy_abstract_client_call(address, password, FY_SPAWN_PRELOADER_TIMEOUT_MS, items, 1);
    char what[FY_ADDRESS_MAX + 48];
    snprintf(what, sizeof what, "ask the preloader at %s for a worker", address);
    return forked_request(p, fd, fd < 0 ? fd : 0, what);
}

int fy_proc_take_control(fy_proc_t *p)
{
    int fd = p->kept_ctl_fd;
    p->kept_ctl_fd = -1;
    return fd;
}

int fy_proc_forked_refork(fy_proc_t *p, int control_fd, unsigned idle_s)
{
    p->preloader = NULL;
    char idle[16];
    snprintf(idle, sizeof idle, "%u", idle_s);
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, FY_SPAWN_PRELOADER_TIMEOUT_MS);
    int r = fy_channel_write_strings(&ch, 2, FY_REFORK_MESSAGE, idle);
    return forked_request(p, control_fd, r, "ask a worker to re-fork");
}

void fy_proc_forked_set_waiting(fy_proc_t *p, fy_preloader_t *pl)
{
    p->preloader = pl;
}

fy_proc_t **fy_proc_wait_next(fy_proc_t *p)
{
    return &p->wait_next;
}

const char *fy_proc_error_summary(const fy_proc_t *p)
{
    return p->summary ? p->summary : "";
}
const char *fy_proc_error_details(const fy_proc_t *p)
{
    return p->details ? p->details : "";
}
char *fy_proc_stderr_tail(const fy_proc_t *p)
{
    return tail_string(p);
}

bool fy_proc_exited(const fy_proc_t *p)
{
    return p->exited || !p->spawned;
}

static void on_kill_timer(uv_timer_t *t)
{
    fy_proc_t *p = t->data;
    if (!p->exited) {
        /* Planned escalation (the caller chose the grace period), so a state change. */
        fy_log(FY_LOG_NOTICE, "spawn",
               "app=%s pid=%d signal=%d: still running after its grace period; sending SIGKILL",
               p->app_root, (int)p->pid, p->stop_signal);
        kill_now(p);
    }
}

int fy_proc_stop(fy_proc_t *p, int sig, unsigned kill_after_ms)
{
    if (!p->spawned || p->exited)
        return 0;
    p->stop_signal = sig;
    int r;
    if (p->forked) {
        if (p->pid <= 0) {
            /* Still waiting for its preloader or its handshake: nothing runs that a signal
             * could stop in order; it ends now. */
            if (p->preloader)
                fy_preloader_unwait(p->preloader, p);
            kill_now(p);
            return 0;
        }
        r = kill(p->pid, sig) == -1 ? -errno : 0;
    } else {
        r = uv_process_kill(&p->process, sig);
    }
    if (kill_after_ms > 0)
        uv_timer_start(&p->kill_timer, on_kill_timer, kill_after_ms, 0);
    return r;
}

void fy_proc_close(fy_proc_t *p)
{
    FY_ASSERT(!p->closing);
    p->closing = true;
    close_owner(p);
    close_ctl(p);
    close_kept_ctl(p);
    if (p->forked) {
        if (p->preloader)
            fy_preloader_unwait(p->preloader, p);
        uv_timer_stop(&p->start_timer);
        uv_timer_stop(&p->kill_timer);
        uv_timer_stop(&p->drain_timer);
        if (p->pid > 0 && !p->exited) {
            kill(p->pid, SIGKILL); /* its pidfd says when it is gone, then close_all */
            return;
        }
        p->exited = true;
        close_all(p);
        return;
    }
    if (p->spawned && !p->exited) {
        /* Reap it before closing the process handle, or it would stay a zombie. */
        uv_timer_stop(&p->start_timer);
        uv_timer_stop(&p->kill_timer);
        uv_timer_stop(&p->drain_timer);
        kill_now(p);
        return;
    }
    close_all(p);
}
