/* The preloader (smart spawning; docs/protocol.md §5.4, docs/architecture.md "Smart
 * spawning"): a language host that loaded the app once serves the spawn server, an AbstractServer
 * (src/admin) on a thread of its own process with one handler, "spawn". The handler thread
 * receives the core's stdout and stderr pipes for the new worker, hands the request to the main
 * thread, which forks with the interpreter's own fork (host.h), and waits for the pid. The child
 * takes the request's connection as its control channel, sends the write end of its new owner pipe
 * on it, and goes on as a worker through fy_worker_host_serve: the same code path as a worker the
 * core spawned directly. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/abstract_server.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "ipc/channel.h"
#include "ipc/handshake.h"
#include "ipc/sock.h"
#include "worker/host.h"
#include "worker/worker.h"
#include "worker/worker_internal.h"

#define MODULE "preloader"
/* How long the main thread sleeps at most between two looks at exited workers to reap. */
#define REAP_INTERVAL_MS 1000
/* How long an exited worker stays a zombie before it is reaped: the core reads its exit status
 * (which signal killed it) from /proc while it is one (src/spawn/spawn.c), when the worker's
 * pidfd says it exited; a spawn request for its replacement can wake this process first. */
#define REAP_DELAY_MS 2000

/* One spawn request, on its handler thread's stack until the main thread answered it. */
typedef struct spawn_req {
    int conn_fd;      /* the core's connection: the worker's control channel */
    int out_fd;       /* write ends of the core's pipes for the worker's stdout and stderr */
    int err_fd;
    int result;       /* the child's pid, or a negative errno */
    bool done;
    struct spawn_req *next;
} spawn_req_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t answered = PTHREAD_COND_INITIALIZER;
static spawn_req_t *queue_head, *queue_tail; /* under <lock> */
static int notify_pipe[2] = {-1, -1};        /* handler threads wake the main thread */
static bool closing;                         /* under <lock>: the idle time is up */

/* Main thread only. */
static int preload_state = -1; /* -1 not read yet, 0 not a preloader, 1 preloader */
static unsigned idle_time_s;
static fy_abstract_server_t server;
static spawn_req_t *current; /* the request being forked for */
static int64_t last_activity_ms;
static unsigned forks;

int fy_worker_host_preloading(void)
{
    if (preload_state < 0) {
        const char *v = getenv(FY_HANDSHAKE_VAR_PRELOAD);
        preload_state = v != NULL && *v != '\0';
        if (preload_state) {
            char *end;
            errno = 0;
            unsigned long s = strtoul(v, &end, 10);
            idle_time_s = (errno == 0 && *end == '\0' && s <= UINT_MAX) ? (unsigned)s : 300;
        }
    }
    return preload_state;
}

/* ---- the spawn handler (a client thread of the spawn server) -------------------------------- */

static int on_spawn(fy_abstract_server_t *srv, fy_channel_t *client, const fy_array_t *msg,
                    void *data)
{
    (void)srv;
    (void)data;
    (void)msg;
    spawn_req_t req = {.conn_fd = client->fd, .out_fd = -1, .err_fd = -1};
    int rc = fy_channel_recv_fd(client, &req.out_fd);
    if (rc == 1)
        rc = fy_channel_recv_fd(client, &req.err_fd);
    if (rc != 1) {
        if (req.out_fd >= 0)
            close(req.out_fd);
        fy_log(FY_LOG_WARN, MODULE, "pid=%d: spawn request without its stdout and stderr pipes: "
               "%s", (int)getpid(), rc == 0 ? "end of channel" : strerror(-rc));
        return rc == 0 ? -EPROTO : rc;
    }
    pthread_mutex_lock(&lock);
    if (closing) {
        /* Exiting for the idle time: no fork, no reply. The core sees the connection end
         * before the owner pipe and asks the next preloader (docs/protocol.md §5.4). */
        pthread_mutex_unlock(&lock);
        close(req.out_fd);
        close(req.err_fd);
        return 0;
    }
    if (queue_tail)
        queue_tail->next = &req;
    else
        queue_head = &req;
    queue_tail = &req;
    ssize_t ignored = write(notify_pipe[1], "s", 1);
    (void)ignored;
    while (!req.done)
        pthread_cond_wait(&answered, &lock);
    pthread_mutex_unlock(&lock);
    close(req.out_fd);
    close(req.err_fd);
    if (req.result < 0) {
        char *summary = fy_xasprintf("the preloader could not fork a worker: %s",
                                     strerror(-req.result));
        fy_log(FY_LOG_ERROR, MODULE, "pid=%d: %s", (int)getpid(), summary);
        fy_channel_write_strings(client, 3, "error", summary, "step=fork");
        free(summary);
    }
    /* The server closes our copy of the connection; the child keeps its own. */
    return 0;
}

/* ---- the main thread ------------------------------------------------------------------------ */

int fy_worker_host_preload_start(void)
{
    int control_fd = fy_worker_host_control_fd();
    fy_worker_host_preloading();
    int rc = fy_abstract_server_init(&server, "preloader");
    if (rc == 0)
        rc = fy_abstract_server_add_handler(&server, FY_PRELOADER_SPAWN_MESSAGE, on_spawn, NULL);
    if (rc == 0 && pipe2(notify_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
        rc = -errno;
    if (rc == 0) {
        server.socket_dir = fy_worker_socket_dir();
        rc = fy_abstract_server_start_thread(&server);
    }
    if (rc != 0) {
        char *summary = fy_xasprintf("the preloader cannot start its spawn server: %s",
                                     strerror(-rc));
        fy_worker_report_error(control_fd, summary, "step=preload_start");
        free(summary);
        return rc;
    }
    char pid_text[24];
    snprintf(pid_text, sizeof pid_text, "%d", (int)getpid());
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, 5000);
    /* The fifth item says "a preloader" instead of a session protocol: it serves no requests. */
    rc = fy_channel_write_strings(&ch, 5, "ready", pid_text, server.address, server.password,
                                  FY_PRELOADER_READY_ITEM);
    if (rc != 0) {
        fy_log(FY_LOG_ERROR, MODULE, "pid=%d: cannot send ready: %s", (int)getpid(),
               strerror(-rc));
        return rc;
    }
    /* SIGTERM and the owner pipe's EOF end this process without a return to the host: they
     * remove the spawn server's socket file (when it is one) as a worker's. */
    fy_worker_runtime_set_socket_file(server.address);
    last_activity_ms = fy_monotonic_ms();
    fy_log(FY_LOG_INFO, MODULE, "pid=%d address=%s idle_time=%u: ready to fork workers",
           (int)getpid(), server.address, idle_time_s);
    return 0;
}

/* The workers this preloader forked (its children), and since when each has been a zombie (0:
 * alive). Main thread only. */
typedef struct {
    pid_t pid;
    int64_t dead_since_ms;
} forked_t;
static forked_t *forked;
static size_t forked_len, forked_cap;

static void track_forked(pid_t pid)
{
    if (forked_len == forked_cap) {
        forked_cap = forked_cap ? forked_cap * 2 : 16;
        forked = fy_xrealloc(forked, forked_cap * sizeof *forked);
    }
    forked[forked_len++] = (forked_t){.pid = pid, .dead_since_ms = 0};
}

/* Reaps the workers that exited REAP_DELAY_MS ago or more; the others stay zombies for now
 * (waitid with WNOWAIT only looks). */
static void reap_children(void)
{
    int64_t now = fy_monotonic_ms();
    for (size_t i = 0; i < forked_len;) {
        forked_t *f = &forked[i];
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)f->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
            forked[i] = forked[--forked_len]; /* not our child any more (ECHILD) */
            continue;
        }
        if (info.si_pid == f->pid && f->dead_since_ms == 0)
            f->dead_since_ms = now;
        if (f->dead_since_ms != 0 && now - f->dead_since_ms >= REAP_DELAY_MS) {
            int status;
            (void)waitpid(f->pid, &status, WNOHANG);
            fy_log(FY_LOG_DEBUG, MODULE, "pid=%d: reaped worker pid=%d", (int)getpid(),
                   (int)f->pid);
            forked[i] = forked[--forked_len];
            continue;
        }
        i++;
    }
}

int fy_worker_host_preload_wait(void)
{
    for (;;) {
        reap_children();
        pthread_mutex_lock(&lock);
        spawn_req_t *req = queue_head;
        if (req != NULL) {
            queue_head = req->next;
            if (queue_head == NULL)
                queue_tail = NULL;
            req->next = NULL;
        }
        pthread_mutex_unlock(&lock);
        if (req != NULL) {
            current = req;
            return 1;
        }
        int64_t now = fy_monotonic_ms();
        int timeout = REAP_INTERVAL_MS;
        if (idle_time_s > 0) {
            int64_t left = last_activity_ms + (int64_t)idle_time_s * 1000 - now;
            bool idle_over = false;
            if (left <= 0) {
                pthread_mutex_lock(&lock);
                idle_over = queue_head == NULL;
                closing = idle_over;
                pthread_mutex_unlock(&lock);
                if (!idle_over)
                    continue; /* a request came in meanwhile */
            }
            if (idle_over) {
                fy_log(FY_LOG_NOTICE, MODULE, "pid=%d forks=%u: no spawn for %u s "
                       "(max preloader idle time): exiting", (int)getpid(), forks, idle_time_s);
                fy_worker_runtime_set_socket_file(NULL);
                fy_abstract_server_stop(&server); /* removes its socket file */
                return 0;
            }
            if (left < timeout)
                timeout = (int)left;
        }
        struct pollfd pfd = {.fd = notify_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, timeout) > 0) {
            char buf[64];
            while (read(notify_pipe[0], buf, sizeof buf) > 0) {
            }
        }
    }
}

static void answer(spawn_req_t *req, int result)
{
    pthread_mutex_lock(&lock);
    req->result = result;
    req->done = true;
    pthread_cond_broadcast(&answered);
    pthread_mutex_unlock(&lock);
}

/* The child: everything of the preloader's that a worker must not hold is closed; the request's
 * fds become the worker's. */
static int become_worker(spawn_req_t *req)
{
    int conn_fd = req->conn_fd;
    fy_abstract_server_forget_in_child(&server);
    close(notify_pipe[0]);
    close(notify_pipe[1]);
    notify_pipe[0] = notify_pipe[1] = -1;
    /* Requests queued behind ours belong to siblings; their fds are not this worker's. The lock
     * may have been held by a thread that no longer exists: the queue is read without it. */
    for (spawn_req_t *r = queue_head; r; r = r->next) {
        close(r->conn_fd);
        close(r->out_fd);
        close(r->err_fd);
    }
    queue_head = queue_tail = NULL;
    current = NULL;
    preload_state = 0;
    unsetenv(FY_HANDSHAKE_VAR_PRELOAD);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    fy_random_reseed_libc();
    return fy_worker_forked_handover(conn_fd, req->out_fd, req->err_fd, "forked worker", "fork");
}

int fy_worker_forked_handover(int control_fd, int out_fd, int err_fd, const char *what,
                              const char *step)
{
    int rc = 0;
    if (dup2(out_fd, 1) == -1 || dup2(err_fd, 2) == -1)
        rc = -errno;
    close(out_fd);
    close(err_fd);
    if (rc != 0) {
        char *summary = fy_xasprintf("%s: cannot take its stdout and stderr: %s", what,
                                     strerror(-rc));
        char *details = fy_xasprintf("step=%s", step);
        fy_worker_report_error(control_fd, summary, details);
        free(summary);
        free(details);
        return rc;
    }
    int owner[2];
    rc = fy_owner_pipe_open(owner);
    if (rc == 0) {
        fy_channel_t ch;
        fy_channel_init(&ch, control_fd, 5000);
        /* First on the channel, before ready: the core holds the write end from now on. */
        rc = fy_channel_send_fd(&ch, owner[1]);
        close(owner[1]);
        if (rc != 0)
            close(owner[0]);
    }
    if (rc != 0) {
        char *summary = fy_xasprintf("%s: cannot hand its owner pipe to the core: %s", what,
                                     strerror(-rc));
        fy_worker_report_error(control_fd, summary, "step=owner_pipe");
        free(summary);
        return rc;
    }
    return fy_worker_runtime_rebind(owner[0], control_fd);
}

void fy_worker_preloader_adopt(unsigned idle_s)
{
    /* This process is a worker forked from the previous preloader: its copy of that preloader's
     * spawn server was forgotten at the fork (become_worker), and a handler thread may have held
     * the lock then; none of those threads exists here. */
    fy_abstract_server_dispose(&server);
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&answered, NULL);
    queue_head = queue_tail = NULL;
    current = NULL;
    closing = false;
    forks = 0;
    forked_len = 0; /* its siblings: not this process's children */
    preload_state = 1;
    idle_time_s = idle_s;
}

int fy_worker_host_preload_forked(int pid)
{
    spawn_req_t *req = current;
    if (req == NULL) {
        fy_log(FY_LOG_ERROR, MODULE, "pid=%d: fy_worker_host_preload_forked without a request",
               (int)getpid());
        return -EINVAL;
    }
    if (pid == 0)
        return become_worker(req);
    current = NULL;
    last_activity_ms = fy_monotonic_ms();
    if (pid > 0) {
        forks++;
        track_forked((pid_t)pid);
        fy_log(FY_LOG_DEBUG, MODULE, "pid=%d: forked worker pid=%d", (int)getpid(), pid);
    }
    answer(req, pid);
    return 1;
}
