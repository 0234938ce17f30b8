/* The C worker's main loop (docs/protocol.md §5, after Passenger's RequestHandler): load the
 * app, listen, report ready, then accept → serve → close, one connection at a time.
 *
 * Stopping: SIGUSR1 sets a flag and wakes the loop through a self-pipe, so an idle worker exits
 * at once and a busy one after its current request. SIGTERM removes the socket file and kills
 * the process. A watcher thread blocks on the owner pipe and, at EOF, removes the socket file
 * and calls _exit: that works even while the app is stuck inside a request. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ipc/channel.h"
#include "ipc/handshake.h"
#include "ipc/sock.h"
#include "worker/host.h"
#include "worker/worker.h"
#include "worker/worker_internal.h"

#define LISTEN_BACKLOG 50
#define CONTROL_TIMEOUT_MS 5000
/* Two errors outside a request closer than this end the worker (docs/protocol.md §6, "Shared
 * constants"). */
#define ERROR_RETRY_WINDOW_S 10

/* State the signal handlers and the owner watcher read. Written before they are installed. */
static char socket_file[FY_ADDRESS_MAX]; /* "" for abstract sockets */
static char busy_path[512];
static char busy_request_id[80];
static int wake_pipe[2] = {-1, -1};
static volatile sig_atomic_t soft_stop;
static int owner_fd_watched = -1;
static void (*sigquit_hook)(void); /* the host's, after the C stacks (host.h) */
static bool host_booted;
static int host_control_fd = -1;
static bool reforked; /* the child of a re-fork: the app's preloader now (refork.c) */

bool fy_worker_reforked(void)
{
    return reforked;
}

void fy_worker_runtime_mark_reforked(void)
{
    reforked = true;
}

int fy_worker_report_error(int control_fd, const char *summary, const char *details)
{
    fy_log(FY_LOG_ERROR, "worker", "pid=%d step=boot: %s", (int)getpid(), summary);
    if (control_fd < 0)
        return -EBADF;
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, CONTROL_TIMEOUT_MS);
    int rc = fy_channel_write_strings(&ch, 3, "error", summary, details ? details : "");
    if (rc != 0)
        fy_log(FY_LOG_ERROR, "worker", "fd=%d: cannot write the error message: %s", control_fd,
               strerror(-rc));
    return rc;
}

void fy_sig_append(char *buf, size_t cap, size_t *len, const char *s)
{
    while (*s && *len + 1 < cap)
        buf[(*len)++] = *s++;
    buf[*len] = '\0';
}

void fy_sig_append_int(char *buf, size_t cap, size_t *len, long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0 && n < sizeof digits);
    if (v < 0)
        fy_sig_append(buf, cap, len, "-");
    while (n > 0 && *len + 1 < cap) {
        buf[(*len)++] = digits[--n];
        buf[*len] = '\0';
    }
}

static void on_sigterm(int sig)
{
    if (socket_file[0] != '\0')
        unlink(socket_file);
    fy_log_sigsafe(FY_LOG_NOTICE, "worker", "SIGTERM: exiting now");
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_sigusr1(int sig)
{
    (void)sig;
    int saved = errno;
    soft_stop = 1;
    if (wake_pipe[1] != -1) {
        ssize_t ignored = write(wake_pipe[1], "u", 1);
        (void)ignored;
    }
    errno = saved;
}

static void on_sigquit(int sig)
{
    (void)sig;
    int saved = errno;
    char line[700];
    size_t len = 0;
    line[0] = '\0';
    fy_sig_append(line, sizeof line, &len, "SIGQUIT: pid=");
    fy_sig_append_int(line, sizeof line, &len, (long)getpid());
    fy_sig_append(line, sizeof line, &len, " busy=");
    fy_sig_append(line, sizeof line, &len, busy_path[0] ? busy_path : "idle");
    if (busy_request_id[0]) {
        fy_sig_append(line, sizeof line, &len, " request_id=");
        fy_sig_append(line, sizeof line, &len, busy_request_id);
    }
    fy_log_sigsafe(FY_LOG_WARN, "worker", line);
    fy_worker_backtraces_write();
    if (sigquit_hook != NULL)
        sigquit_hook();
    errno = saved;
}

static void *owner_watch(void *arg)
{
    (void)arg;
    fy_worker_backtraces_skip_thread((pid_t)syscall(SYS_gettid));
    for (;;) {
        struct pollfd pfd = {.fd = owner_fd_watched, .events = POLLIN};
        if (poll(&pfd, 1, -1) == -1) {
            if (errno == EINTR)
                continue;
            break;
        }
        char buf[64];
        ssize_t n = read(owner_fd_watched, buf, sizeof buf);
        if (n > 0 || (n == -1 && (errno == EINTR || errno == EAGAIN)))
            continue;
        break;
    }
    if (socket_file[0] != '\0')
        unlink(socket_file);
    fy_log_sigsafe(FY_LOG_NOTICE, "worker", "owner pipe closed: exiting");
    _exit(0);
    return NULL;
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_sigterm;
    if (sigaction(SIGTERM, &sa, NULL) == -1)
        return -errno;
    sa.sa_handler = on_sigusr1;
    if (sigaction(SIGUSR1, &sa, NULL) == -1)
        return -errno;
    sa.sa_handler = on_sigquit;
    if (sigaction(SIGQUIT, &sa, NULL) == -1)
        return -errno;
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGHUP, &sa, NULL) == -1 || sigaction(SIGPIPE, &sa, NULL) == -1)
        return -errno;
    return 0;
}

/* Starts the owner watcher with every signal blocked, so signals reach the main thread. */
static int start_owner_watch(int owner_fd)
{
    owner_fd_watched = owner_fd;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, NULL, owner_watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    pthread_detach(tid);
    return 0;
}

static void drain_wake_pipe(void)
{
    char buf[16];
    while (read(wake_pipe[0], buf, sizeof buf) > 0) {
    }
}

static bool transient_accept_error(int err)
{
    return err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED ||
           err == EPROTO;
}

int fy_worker_serve_loop(fy_worker_ctx_t *ctx, int listen_fd)
{
    time_t last_error = 0;
    /* The listener is non-blocking so that, under load, the next connection is taken straight
     * away and poll() only runs when none is waiting (one syscall fewer per request). */
    int rc = fy_fd_set_nonblock(listen_fd, true);
    if (rc < 0) {
        fy_log(FY_LOG_ERROR, "worker", "pid=%d: cannot make the listener non-blocking: %s",
               (int)getpid(), strerror(-rc));
        return 1;
    }
    while (!soft_stop && !fy_worker_reforked()) {
        int err = 0;
        /* Without SOCK_NONBLOCK, Linux's accept4 returns a blocking socket whatever the
         * listener's flags are: what the connection code expects. */
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfds[3] = {
                    {.fd = listen_fd, .events = POLLIN},
                    {.fd = wake_pipe[0], .events = POLLIN},
                    {.fd = host_control_fd, .events = POLLIN},
                };
                if (poll(pfds, 3, -1) == -1) {
                    if (errno == EINTR)
                        continue;
                    err = errno;
                } else {
                    if (pfds[1].revents != 0)
                        drain_wake_pipe();
                    if (pfds[2].revents != 0)
                        fy_worker_control_event(ctx);
                    continue;
                }
            } else if (transient_accept_error(errno)) {
                continue;
            } else {
                err = errno;
            }
        }
        if (err != 0) {
            time_t now = time(NULL);
            if (last_error != 0 && now - last_error < ERROR_RETRY_WINDOW_S) {
                fy_log(FY_LOG_ERROR, "worker",
                       "pid=%d: accept failed again: %s; second error outside a request "
                       "within %d s: exiting",
                       (int)getpid(), strerror(err), ERROR_RETRY_WINDOW_S);
                return 1;
            }
            fy_log(FY_LOG_WARN, "worker", "pid=%d: accept failed: %s; retrying", (int)getpid(),
                   strerror(err));
            last_error = now;
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        fy_worker_conn_serve(ctx, fd);
        close(fd);
    }
    if (!fy_worker_reforked())
        fy_log(FY_LOG_NOTICE, "worker", "pid=%d: SIGUSR1: exiting after the current request",
               (int)getpid());
    return 0;
}

const char *fy_worker_socket_dir(void)
{
    const char *dir = getenv(FY_HANDSHAKE_VAR_INSTANCE_DIR);
    if (dir == NULL || *dir == '\0')
        dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    return dir;
}

/* Signals first: a SIGTERM during a slow app boot must still work; then the owner watcher.
 * Reports a failure on <control_fd>. */
static int runtime_setup(int owner_fd, int control_fd)
{
    fy_fd_set_cloexec(control_fd);
    fy_fd_set_cloexec(owner_fd);
    int rc = fy_worker_backtraces_install();
    if (rc == 0)
        rc = install_signals();
    if (rc == 0 && pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
        rc = -errno;
    if (rc == 0)
        rc = start_owner_watch(owner_fd);
    if (rc != 0) {
        char *summary = fy_xasprintf("worker setup failed: %s", strerror(-rc));
        fy_worker_report_error(control_fd, summary, "step=setup");
        free(summary);
    }
    return rc;
}

int fy_worker_runtime_rebind(int owner_fd, int control_fd)
{
    /* The owner watcher did not survive the fork; the pipes it and SIGUSR1 used are the
     * preloader's. Nothing else of the runtime's state carries over. */
    if (owner_fd_watched >= 0 && owner_fd_watched != owner_fd)
        close(owner_fd_watched);
    owner_fd_watched = -1;
    if (wake_pipe[0] >= 0)
        close(wake_pipe[0]);
    if (wake_pipe[1] >= 0)
        close(wake_pipe[1]);
    wake_pipe[0] = wake_pipe[1] = -1;
    if (host_control_fd >= 0 && host_control_fd != control_fd)
        close(host_control_fd);
    host_control_fd = control_fd;
    soft_stop = 0;
    reforked = false;
    socket_file[0] = '\0';
    busy_path[0] = '\0';
    fy_fd_set_cloexec(control_fd);
    fy_fd_set_cloexec(owner_fd);
    int rc = 0;
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
        rc = -errno;
    if (rc == 0)
        rc = start_owner_watch(owner_fd);
    if (rc != 0) {
        char *summary = fy_xasprintf("forked worker setup failed: %s", strerror(-rc));
        fy_worker_report_error(control_fd, summary, "step=setup");
        free(summary);
    }
    return rc;
}

void fy_worker_runtime_set_socket_file(const char *address)
{
    if (address != NULL && strncmp(address, "unix:", 5) == 0)
        snprintf(socket_file, sizeof socket_file, "%s", address + 5);
    else
        socket_file[0] = '\0';
}

int fy_worker_host_control_fd(void)
{
    return host_control_fd;
}

void fy_worker_runtime_close_control(void)
{
    if (host_control_fd >= 0)
        close(host_control_fd);
    host_control_fd = -1;
}

/* After the app loaded: listen, generate the password, send ready, serve until a stop; then
 * on_shutdown. Returns the exit status. <fork> (NULL: none) is the host's, for a re-fork; in
 * the child of one this returns 0 without on_shutdown, its copy of the listener closed. */
static int serve_app(int control_fd, const char *socket_dir, fy_worker_app_t *app,
                     const char *label, int (*fork_fn)(void *), void *fork_data)
{
    int status = 1;
    char address[FY_ADDRESS_MAX];
    char secret[FY_SECRET_HEX_LEN + 1];
    char *summary;
    int listen_fd = fy_unix_listen_auto(socket_dir, "ferry-worker", LISTEN_BACKLOG, address);
    if (listen_fd < 0) {
        summary =
            fy_xasprintf("cannot listen on a worker socket in %s: %s",
                         fy_abstract_sockets_enabled() ? "the abstract namespace" : socket_dir,
                         strerror(-listen_fd));
        fy_worker_report_error(control_fd, summary, "step=listen");
        free(summary);
        return 1;
    }
    if (strncmp(address, "unix:", 5) == 0)
        snprintf(socket_file, sizeof socket_file, "%s", address + 5);
    int rc = fy_secret_generate(secret);
    if (rc != 0) {
        summary = fy_xasprintf("cannot generate the connect password: %s", strerror(-rc));
        fy_worker_report_error(control_fd, summary, "step=secret");
        free(summary);
        goto out;
    }

    char pid_text[24];
    snprintf(pid_text, sizeof pid_text, "%d", (int)getpid());
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, CONTROL_TIMEOUT_MS);
    /* The fifth item says this worker also speaks session protocol v2 (docs/protocol.md §4.1). */
    rc = fy_channel_write_strings(&ch, 5, "ready", pid_text, address, secret, "2");
    if (rc != 0) {
        fy_log(FY_LOG_ERROR, "worker", "pid=%d fd=%d: cannot send ready: %s", (int)getpid(),
               control_fd, strerror(-rc));
        goto out;
    }
    fy_log(FY_LOG_INFO, "worker", "pid=%d app=%s address=%s: ready", (int)getpid(), label,
           address);

    fy_worker_stop_t stop = {.flag = &soft_stop, .wake_fd = wake_pipe[0],
                             .control_fd = &host_control_fd};
    fy_worker_ctx_t ctx = {
        .app = app,
        .secret = secret,
        .header_timeout_ms = FY_WORKER_HEADER_TIMEOUT_MS,
        .body_timeout_ms = FY_WORKER_BODY_TIMEOUT_MS,
        .stop = &stop,
        .busy_path = busy_path,
        .busy_path_cap = sizeof busy_path,
        .busy_request_id = busy_request_id,
        .busy_request_id_cap = sizeof busy_request_id,
        .fork = fork_fn,
        .fork_data = fork_data,
    };
    status = fy_worker_serve_loop(&ctx, listen_fd);
    if (fy_worker_reforked())
        goto out; /* the new preloader: the app goes on in this process */
    if (app->callbacks.on_shutdown != NULL)
        app->callbacks.on_shutdown(app->data);
    app->callbacks.on_shutdown = NULL;

out:
    close(listen_fd);
    if (socket_file[0] != '\0') {
        unlink(socket_file);
        socket_file[0] = '\0';
    }
    return status;
}

int fy_worker_run(const fy_worker_config_t *cfg)
{
    if (runtime_setup(cfg->owner_fd, cfg->control_fd) != 0)
        return 1;
    fy_worker_app_t app;
    char *summary = NULL, *details = NULL;
    int rc = fy_worker_app_load(cfg->app_path, cfg->app_root, cfg->environment, &app, &summary,
                                &details);
    if (rc != 0) {
        fy_worker_report_error(cfg->control_fd, summary, details);
        free(summary);
        free(details);
        return 1;
    }
    int status = serve_app(cfg->control_fd, cfg->socket_dir, &app, cfg->app_path, NULL, NULL);
    fy_worker_app_dispose(&app, false);
    return status;
}

/* ---- language hosts (host.h) ---------------------------------------------------------------- */

/* <name>'s fd (absent: <fallback>), or -1 when it is not a number or not open. */
static int handshake_fd(const char *name, int fallback)
{
    const char *text = getenv(name);
    if (text == NULL || *text == '\0')
        return fcntl(fallback, F_GETFD) == -1 ? -1 : fallback;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX || fcntl((int)v, F_GETFD) == -1)
        return -1;
    return (int)v;
}

int fy_worker_host_boot(void)
{
    if (host_booted)
        return -EALREADY;
    host_booted = true;
    int control_fd = handshake_fd(FY_HANDSHAKE_VAR_CONTROL_FD, FY_HANDSHAKE_CONTROL_FD);
    int owner_fd = handshake_fd(FY_HANDSHAKE_VAR_OWNER_FD, FY_HANDSHAKE_OWNER_FD);
    if (control_fd < 0 || owner_fd < 0) {
        const char *c = getenv(FY_HANDSHAKE_VAR_CONTROL_FD), *o = getenv(FY_HANDSHAKE_VAR_OWNER_FD);
        char *summary = fy_xasprintf(
            FY_HANDSHAKE_VAR_OWNER_FD "=%s and " FY_HANDSHAKE_VAR_CONTROL_FD
            "=%s must be open file descriptors (the spawn handshake, docs/protocol.md §5)",
            o ? o : "(unset)", c ? c : "(unset)");
        fy_worker_report_error(control_fd, summary, "step=handshake");
        free(summary);
        return -EBADF;
    }
    host_control_fd = control_fd;
    int rc = runtime_setup(owner_fd, control_fd);
    return rc;
}

int fy_worker_host_fail(const char *summary, const char *details)
{
    return fy_worker_report_error(host_control_fd, summary, details);
}

int fy_worker_host_serve(const fy_worker_host_t *host)
{
    if (!host_booted || host_control_fd < 0 || host->callbacks.on_request == NULL) {
        fy_log(FY_LOG_ERROR, "worker", "pid=%d: fy_worker_host_serve without a boot or an "
               "on_request callback", (int)getpid());
        return 1;
    }
    fy_worker_app_t app;
    memset(&app, 0, sizeof app);
    app.callbacks = host->callbacks;
    app.data = host->data;
    return serve_app(host_control_fd, fy_worker_socket_dir(), &app,
                     host->label ? host->label : "(host)", host->fork, host->data);
}

void fy_worker_host_on_sigquit(void (*fn)(void))
{
    sigquit_hook = fn;
}
