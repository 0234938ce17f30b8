/* AbstractServer (see abstract_server.h and README.md). */
#include "abstract_server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"

#define MODULE "admin"
#define LISTEN_BACKLOG 128
#define KEEP_FDS_MAX 32
/* How long the exiting child waits for client threads still running. */
#define DRAIN_TIMEOUT_MS 5000
/* The owner's "exit" message is tiny; reading it never needs long. */
#define OWNER_READ_TIMEOUT_MS 1000

/* Client threads in the child; the main loop waits for them before it exits. */
static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t clients_done = PTHREAD_COND_INITIALIZER;
static unsigned clients_active;

static bool valid_name_chars(const char *name, size_t max_len)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > max_len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

int fy_abstract_server_init(fy_abstract_server_t *srv, const char *name)
{
    memset(srv, 0, sizeof *srv);
    srv->owner_fd = -1;
    srv->listen_fd = -1;
    srv->thread_owner_fd = -1;
    if (!valid_name_chars(name, sizeof srv->name - 1))
        return -EINVAL;
    memcpy(srv->name, name, strlen(name) + 1);
    srv->client_timeout_ms = 10000;
    srv->max_clients = 64;
    return 0;
}

bool fy_abstract_server_started(const fy_abstract_server_t *srv)
{
    return srv->pid > 0;
}

int fy_abstract_server_add_handler(fy_abstract_server_t *srv, const char *name,
                                   fy_abstract_server_handler_fn fn, void *data)
{
    if (fy_abstract_server_started(srv))
        return -EBUSY;
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof srv->handlers[0].name ||
        fn == NULL)
        return -EINVAL;
    for (size_t i = 0; i < srv->handler_count; i++)
        if (strcmp(srv->handlers[i].name, name) == 0)
            return -EEXIST;
    if (srv->handler_count == FY_ABSTRACT_SERVER_MAX_HANDLERS)
        return -ENOSPC;
    fy_abstract_server_handler_t *h = &srv->handlers[srv->handler_count++];
    memcpy(h->name, name, strlen(name) + 1);
    h->fn = fn;
    h->data = data;
    return 0;
}

int fy_abstract_server_add_signal(fy_abstract_server_t *srv, int signo, void (*handler)(int))
{
    if (fy_abstract_server_started(srv))
        return -EBUSY;
    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    for (size_t i = 0; i < srv->signal_count; i++) {
        if (srv->signals[i].signo == signo) {
            srv->signals[i].handler = handler;
            return 0;
        }
    }
    if (srv->signal_count == FY_ABSTRACT_SERVER_MAX_SIGNALS)
        return -ENOSPC;
    srv->signals[srv->signal_count].signo = signo;
    srv->signals[srv->signal_count].handler = handler;
    srv->signal_count++;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Copies a client-supplied string for a log line: at most 64 bytes, non-printables as '?', so a
 * peer cannot forge log lines. */
static void printable(const char *in, size_t len, char out[68])
{
    size_t n = len < 64 ? len : 64;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > 64) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* ---- the child: client threads ---- */

typedef struct client {
    fy_abstract_server_t *srv;
    int fd;
} client_t;

static const fy_abstract_server_handler_t *find_handler(const fy_abstract_server_t *srv,
                                                        const char *name)
{
    for (size_t i = 0; i < srv->handler_count; i++)
        if (strcmp(srv->handlers[i].name, name) == 0)
            return &srv->handlers[i];
    return NULL;
}

/* One handler cycle: peer check, password, first message, handler. Closes nothing. */
static void serve_client(fy_abstract_server_t *srv, int fd)
{
    pid_t peer_pid = 0;
    uid_t peer_uid = 0;
    int rc = fy_peer_check_uid(fd, &peer_pid, &peer_uid);
    if (rc < 0) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s peer_pid=%ld peer_uid=%ld: refused peer: %s",
               srv->name, (long)peer_pid, (long)peer_uid, strerror(-rc));
        return;
    }
    fy_channel_t ch;
    fy_channel_init(&ch, fd, srv->client_timeout_ms);

    char *password = NULL;
    size_t password_len = 0;
    rc = fy_channel_read_scalar(&ch, &password, &password_len, FY_ABSTRACT_SERVER_PASSWORD_MAX);
    if (rc == 0) {
        fy_log(FY_LOG_DEBUG, MODULE, "server=%s peer_pid=%ld: closed before the password",
               srv->name, (long)peer_pid);
        return;
    }
    if (rc < 0 && rc != -EMSGSIZE) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s peer_pid=%ld: reading the password: %s", srv->name,
               (long)peer_pid, strerror(-rc));
        return;
    }
    bool ok =
        rc == 1 && fy_secret_equal(password, password_len, srv->password, strlen(srv->password));
    free(password);
    if (!ok) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s peer_pid=%ld: wrong password; closing connection",
               srv->name, (long)peer_pid);
        return;
    }

    fy_array_t msg = {0};
    rc = fy_channel_read_array(&ch, &msg);
    if (rc == 0)
        return;
    if (rc < 0) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s peer_pid=%ld: reading the request: %s", srv->name,
               (long)peer_pid, strerror(-rc));
        return;
    }
    const fy_abstract_server_handler_t *h = find_handler(srv, msg.items[0]);
    if (h == NULL) {
        char shown[68];
        printable(msg.items[0], msg.lens[0], shown);
        fy_log(FY_LOG_WARN, MODULE,
               "server=%s peer_pid=%ld: unknown handler name=%s; closing connection", srv->name,
               (long)peer_pid, shown);
        fy_array_dispose(&msg);
        return;
    }
    rc = h->fn(srv, &ch, &msg, h->data);
    if (rc < 0)
        fy_log(FY_LOG_WARN, MODULE, "server=%s handler=%s peer_pid=%ld: failed: %s", srv->name,
               h->name, (long)peer_pid, strerror(-rc));
    fy_array_dispose(&msg);
}

static void *client_thread(void *arg)
{
    client_t *c = arg;
    /* The channel never raises SIGPIPE, but a handler may write to the fd itself: a peer that
     * left must cost this connection, not the whole server. The disposition stays default. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    serve_client(c->srv, c->fd);
    close(c->fd);
    free(c);

    pthread_mutex_lock(&clients_lock);
    clients_active--;
    pthread_cond_broadcast(&clients_done);
    pthread_mutex_unlock(&clients_lock);
    return NULL;
}

static void accept_client(fy_abstract_server_t *srv)
{
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd == -1) {
        int err = errno;
        if (err == EINTR || err == EAGAIN || err == ECONNABORTED)
            return;
        fy_log(FY_LOG_ERROR, MODULE, "server=%s: accept: %s", srv->name, strerror(err));
        /* EMFILE and friends: give the clients in progress a moment instead of spinning. */
        sleep_ms(50);
        return;
    }
    pthread_mutex_lock(&clients_lock);
    bool full = clients_active >= srv->max_clients;
    if (!full)
        clients_active++;
    pthread_mutex_unlock(&clients_lock);
    if (full) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s max_clients=%u: too many clients; closing one",
               srv->name, srv->max_clients);
        close(fd);
        return;
    }
    client_t *c = fy_xmalloc(sizeof *c);
    c->srv = srv;
    c->fd = fd;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, client_thread, c);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        fy_log(FY_LOG_ERROR, MODULE, "server=%s: cannot start a client thread: %s", srv->name,
               strerror(rc));
        close(fd);
        free(c);
        pthread_mutex_lock(&clients_lock);
        clients_active--;
        pthread_mutex_unlock(&clients_lock);
    }
}

/* ---- the child: main loop ---- */

/* Reads what the owner sent. Returns true when the loop must end (["exit"], EOF, an error). */
static bool owner_says_exit(fy_abstract_server_t *srv, int owner_fd)
{
    fy_channel_t ch;
    fy_channel_init(&ch, owner_fd, OWNER_READ_TIMEOUT_MS);
    fy_array_t msg = {0};
    int rc = fy_channel_read_array(&ch, &msg);
    if (rc == 0) {
        fy_log(FY_LOG_NOTICE, MODULE, "server=%s: every owner is gone; exiting", srv->name);
        return true;
    }
    if (rc < 0) {
        fy_log(FY_LOG_ERROR, MODULE, "server=%s: owner socket: %s; exiting", srv->name,
               strerror(-rc));
        return true;
    }
    bool exit_now = strcmp(msg.items[0], "exit") == 0;
    if (exit_now) {
        fy_log(FY_LOG_INFO, MODULE, "server=%s: stop requested; exiting", srv->name);
    } else {
        char shown[68];
        printable(msg.items[0], msg.lens[0], shown);
        fy_log(FY_LOG_WARN, MODULE, "server=%s: ignoring owner message name=%s", srv->name, shown);
    }
    fy_array_dispose(&msg);
    return exit_now;
}

static void main_loop(fy_abstract_server_t *srv, int owner_fd)
{
    for (;;) {
        struct pollfd pfds[2] = {
            {.fd = owner_fd, .events = POLLIN},
            {.fd = srv->listen_fd, .events = POLLIN},
        };
        int n = poll(pfds, 2, -1);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            fy_log(FY_LOG_ERROR, MODULE, "server=%s: poll: %s; exiting", srv->name,
                   strerror(errno));
            return;
        }
        if (pfds[0].revents != 0 && owner_says_exit(srv, owner_fd))
            return;
        if (pfds[1].revents & POLLIN)
            accept_client(srv);
    }
}

/* Waits up to DRAIN_TIMEOUT_MS for the client threads to finish. */
static void drain_clients(fy_abstract_server_t *srv)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DRAIN_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&clients_lock);
    while (clients_active > 0) {
        if (pthread_cond_timedwait(&clients_done, &clients_lock, &deadline) == ETIMEDOUT)
            break;
    }
    unsigned left = clients_active;
    pthread_mutex_unlock(&clients_lock);
    if (left > 0)
        fy_log(FY_LOG_WARN, MODULE, "server=%s clients=%u: exiting with clients unfinished",
               srv->name, left);
}

/* Resets signal dispositions and the mask, ignores SIGHUP, installs the registered handlers. */
static void reset_signals(const fy_abstract_server_t *srv)
{
    fy_signals_reset_all();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    for (size_t i = 0; i < srv->signal_count; i++) {
        sa.sa_handler = srv->signals[i].handler;
        sa.sa_flags = SA_RESTART;
        sigaction(srv->signals[i].signo, &sa, NULL);
    }
}

__attribute__((noreturn)) static void child_main(fy_abstract_server_t *srv)
{
    reset_signals(srv);
    int keep[KEEP_FDS_MAX + 3];
    size_t nkeep = 0;
    keep[nkeep++] = srv->listen_fd;
    keep[nkeep++] = srv->owner_fd;
    keep[nkeep++] = fy_log_get_fd();
    for (size_t i = 0; i < srv->keep_fd_count; i++)
        keep[nkeep++] = srv->keep_fds[i];
    int rc = fy_close_fds_except(keep, nkeep);
    if (rc < 0) {
        fy_log(FY_LOG_ERROR, MODULE, "server=%s: closing inherited fds: %s", srv->name,
               strerror(-rc));
        _exit(1);
    }
    /* A fork shares the parent's generator state: reseed so children never repeat each other. */
    fy_random_reseed_libc();
    srv->pid = getpid();
    clients_active = 0;
    if (srv->initialize_server != NULL)
        srv->initialize_server(srv);
    fy_log(FY_LOG_DEBUG, MODULE, "server=%s pid=%ld address=%s: serving", srv->name, (long)srv->pid,
           srv->address);
    main_loop(srv, srv->owner_fd);
    close(srv->listen_fd);
    srv->listen_fd = -1;
    fy_unix_address_unlink(srv->address);
    drain_clients(srv);
    if (srv->finalize_server != NULL)
        srv->finalize_server(srv);
    /* _exit: the owner's atexit handlers and stdio buffers are not ours to run. */
    _exit(0);
}

/* ---- the owner ---- */

/* Undoes prepare after a later step failed. */
static void unprepare(fy_abstract_server_t *srv, int sv[2], int lfd)
{
    close(lfd);
    fy_unix_address_unlink(srv->address);
    close(sv[0]);
    close(sv[1]);
    srv->address[0] = '\0';
}

/* What both modes need before the main loop runs: a fresh password, the owner socket pair and
 * the listening socket (mode 0700 when it is a file). Returns 0 or a negative errno with nothing
 * left open. */
static int prepare(fy_abstract_server_t *srv, int sv[2], int *lfd_out)
{
    if (fy_abstract_server_started(srv))
        return -EALREADY;
    if (srv->keep_fd_count > KEEP_FDS_MAX || (srv->keep_fd_count > 0 && srv->keep_fds == NULL))
        return -EINVAL;
    if (!fy_abstract_sockets_enabled() && srv->socket_dir == NULL)
        return -EINVAL;
    int rc = fy_secret_generate(srv->password);
    if (rc < 0)
        return rc;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
        return -errno;
    int lfd = fy_unix_listen_auto(srv->socket_dir, srv->name, LISTEN_BACKLOG, srv->address);
    if (lfd < 0) {
        close(sv[0]);
        close(sv[1]);
        srv->address[0] = '\0';
        return lfd;
    }
    /* A server's socket file gets mode 0700, so that only its owner (and root) can connect. */
    if (strncmp(srv->address, "unix:", 5) == 0 && chmod(srv->address + 5, 0700) == -1) {
        rc = -errno;
        unprepare(srv, sv, lfd);
        return rc;
    }
    *lfd_out = lfd;
    return 0;
}

int fy_abstract_server_start(fy_abstract_server_t *srv)
{
    int sv[2], lfd;
    int rc = prepare(srv, sv, &lfd);
    if (rc < 0)
        return rc;
    if (srv->before_fork != NULL)
        srv->before_fork(srv);
    pid_t pid = fork();
    if (pid == -1) {
        rc = -errno;
        unprepare(srv, sv, lfd);
        return rc;
    }
    if (pid == 0) {
        close(sv[0]);
        srv->owner_fd = sv[1];
        srv->listen_fd = lfd;
        child_main(srv);
    }
    close(sv[1]);
    close(lfd);
    srv->owner_fd = sv[0];
    srv->listen_fd = -1;
    srv->pid = pid;
    fy_log(FY_LOG_INFO, MODULE, "server=%s pid=%ld address=%s: started", srv->name, (long)pid,
           srv->address);
    return 0;
}

/* ---- thread mode ---- */

static void *loop_thread(void *arg)
{
    fy_abstract_server_t *srv = arg;
    if (srv->initialize_server != NULL)
        srv->initialize_server(srv);
    main_loop(srv, srv->thread_owner_fd);
    int lfd = srv->listen_fd;
    srv->listen_fd = -1;
    close(lfd);
    fy_unix_address_unlink(srv->address);
    drain_clients(srv);
    if (srv->finalize_server != NULL)
        srv->finalize_server(srv);
    return NULL;
}

int fy_abstract_server_start_thread(fy_abstract_server_t *srv)
{
    int sv[2], lfd;
    int rc = prepare(srv, sv, &lfd);
    if (rc < 0)
        return rc;
    srv->owner_fd = sv[0];
    srv->thread_owner_fd = sv[1];
    srv->listen_fd = lfd;
    srv->in_thread = true;
    srv->pid = getpid();
    /* Every signal blocked in the loop and client threads: they go to the process's own. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&srv->thread, NULL, loop_thread, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        unprepare(srv, sv, lfd);
        srv->owner_fd = srv->thread_owner_fd = srv->listen_fd = -1;
        srv->in_thread = false;
        srv->pid = 0;
        srv->address[0] = '\0';
        return -rc;
    }
    fy_log(FY_LOG_DEBUG, MODULE, "server=%s pid=%ld address=%s: serving on a thread", srv->name,
           (long)srv->pid, srv->address);
    return 0;
}

void fy_abstract_server_forget_in_child(fy_abstract_server_t *srv)
{
    if (!srv->in_thread)
        return;
    int fds[3] = {srv->listen_fd, srv->owner_fd, srv->thread_owner_fd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    srv->listen_fd = srv->owner_fd = srv->thread_owner_fd = -1;
    srv->in_thread = false;
    srv->pid = 0;
    srv->address[0] = '\0';
    memset(srv->password, 0, sizeof srv->password);
}

static int stop_thread(fy_abstract_server_t *srv)
{
    fy_channel_t ch;
    fy_channel_init(&ch, srv->owner_fd, OWNER_READ_TIMEOUT_MS);
    fy_channel_write_strings(&ch, 1, "exit");
    close(srv->owner_fd);
    srv->owner_fd = -1;
    pthread_join(srv->thread, NULL);
    close(srv->thread_owner_fd);
    srv->thread_owner_fd = -1;
    srv->in_thread = false;
    fy_log(FY_LOG_DEBUG, MODULE, "server=%s: stopped its thread", srv->name);
    srv->pid = 0;
    srv->address[0] = '\0';
    memset(srv->password, 0, sizeof srv->password);
    return 0;
}

/* Reaps <pid> if it has exited. Returns true when it is gone (reaped, or not our child). */
static bool reap_nohang(pid_t pid)
{
    int status;
    pid_t r;
    do {
        r = waitpid(pid, &status, WNOHANG);
    } while (r == -1 && errno == EINTR);
    return r == pid || (r == -1 && errno == ECHILD);
}

int fy_abstract_server_stop(fy_abstract_server_t *srv)
{
    if (!fy_abstract_server_started(srv))
        return -ESRCH;
    if (srv->in_thread)
        return stop_thread(srv);
    fy_channel_t ch;
    fy_channel_init(&ch, srv->owner_fd, OWNER_READ_TIMEOUT_MS);
    /* A child that already exited makes this -EPIPE; the close below says the same anyway. */
    fy_channel_write_strings(&ch, 1, "exit");
    close(srv->owner_fd);
    srv->owner_fd = -1;

    int killed = 0;
    int64_t deadline = fy_monotonic_ms() + FY_ABSTRACT_SERVER_STOP_TIMEOUT_MS;
    bool gone = reap_nohang(srv->pid);
    while (!gone && fy_monotonic_ms() < deadline) {
        sleep_ms(10);
        gone = reap_nohang(srv->pid);
    }
    if (!gone) {
        fy_log(FY_LOG_WARN, MODULE, "server=%s pid=%ld: did not exit within %d ms; killing",
               srv->name, (long)srv->pid, FY_ABSTRACT_SERVER_STOP_TIMEOUT_MS);
        kill(srv->pid, SIGKILL);
        int status;
        while (waitpid(srv->pid, &status, 0) == -1 && errno == EINTR)
            ;
        killed = 1;
    }
    /* A killed child could not remove its socket file. */
    if (strncmp(srv->address, "unix:", 5) == 0)
        fy_unix_address_unlink(srv->address);
    fy_log(FY_LOG_INFO, MODULE, "server=%s pid=%ld: stopped", srv->name, (long)srv->pid);
    srv->pid = 0;
    srv->address[0] = '\0';
    memset(srv->password, 0, sizeof srv->password);
    return killed;
}

void fy_abstract_server_dispose(fy_abstract_server_t *srv)
{
    if (fy_abstract_server_started(srv))
        fy_abstract_server_stop(srv);
}

/* ---- the client ---- */

int fy_abstract_client_connect(const char *address, const char *password, int timeout_ms)
{
    if (password == NULL)
        return -EINVAL;
    int fd = fy_unix_connect(address, timeout_ms);
    if (fd < 0)
        return fd;
    fy_channel_t ch;
    fy_channel_init(&ch, fd, timeout_ms);
    int rc = fy_channel_write_scalar(&ch, password, strlen(password));
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int fy_abstract_client_call(const char *address, const char *password, int timeout_ms,
                            const char *const *items, size_t count)
{
    if (items == NULL || count == 0)
        return -EINVAL;
    int fd = fy_abstract_client_connect(address, password, timeout_ms);
    if (fd < 0)
        return fd;
    fy_channel_t ch;
    fy_channel_init(&ch, fd, timeout_ms);
    int rc = fy_channel_write_array(&ch, items, NULL, count);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}
