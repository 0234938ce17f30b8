/* AbstractServer (docs/architecture.md, "Modules and layering"): the base of the spawn server
 * (preloader); the admin server runs in the core's loop instead (docs/architecture.md says why).
 *
 * A server listens on a password-protected Unix socket (abstract namespace, or a socket file of
 * mode 0700 in <socket_dir> when abstract sockets are disabled). Its main loop runs in a forked
 * child. Each client connection gets its own thread and serves one handler cycle:
 *
 *     client → server   scalar message: the password (32 hex digits)
 *     client → server   array message: [handler name, arguments...]
 *     ...               whatever the handler speaks (arrays, scalars, passed fds)
 *     server closes the connection when the handler returns
 *
 * A wrong password, a peer of another uid (SO_PEERCRED; root is allowed) or an unknown handler
 * name gets the connection closed without a reply and one log line (module "admin").
 *
 * The owner (the process that called fy_abstract_server_start) holds one end of the owner
 * socket; the child holds the other. The child exits when it reads ["exit"] from it (what
 * fy_abstract_server_stop sends) or EOF, i.e. when every owner has closed its end (an owner that
 * dies has closed it; an owner's child forked without exec holds a copy and is an owner too).
 *
 * In the child: every inherited fd is closed except stdio, the listening socket, the owner socket,
 * the log fd (fy_log_get_fd(), so the child's log lines go where the owner's go) and <keep_fds>;
 * every signal disposition is reset to default and the signal mask cleared, SIGHUP is ignored,
 * the handlers registered with fy_abstract_server_add_signal are installed, and the C library's
 * random generators (srandom/srand/srand48) are reseeded from getrandom.
 *
 * Ownership and threads: the caller embeds the struct and calls every function from one thread.
 * Handlers run in the child, each on its client's thread, concurrently with other handlers. */
#ifndef FY_ADMIN_ABSTRACT_SERVER_H
#define FY_ADMIN_ABSTRACT_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ipc/channel.h"
#include "ipc/sock.h"

#define FY_ABSTRACT_SERVER_MAX_HANDLERS 32
#define FY_ABSTRACT_SERVER_MAX_SIGNALS 16
/* The longest password message a client may send; longer ones are refused as wrong. */
#define FY_ABSTRACT_SERVER_PASSWORD_MAX 256
/* How long stop waits for the child to exit before SIGKILL. */
#define FY_ABSTRACT_SERVER_STOP_TIMEOUT_MS 4000

typedef struct fy_abstract_server fy_abstract_server_t;

/* Serves one client. <client> is the authenticated connection (its timeout is the server's
 * client_timeout_ms); <msg> is the first array message, msg->items[0] the handler name. The
 * handler may read and write more messages and pass fds (fy_channel_send_fd); it must not close
 * client->fd. Returns 0, or a negative errno that is logged. Runs in the child on the client's
 * thread. */
typedef int (*fy_abstract_server_handler_fn)(fy_abstract_server_t *srv, fy_channel_t *client,
                                             const fy_array_t *msg, void *data);

/* A hook; see before_fork, initialize_server and finalize_server below. */
typedef void (*fy_abstract_server_hook_fn)(fy_abstract_server_t *srv);

typedef struct fy_abstract_server_handler {
    char name[64];
    fy_abstract_server_handler_fn fn;
    void *data;
} fy_abstract_server_handler_t;

typedef struct fy_abstract_server_signal {
    int signo;
    void (*handler)(int);
} fy_abstract_server_signal_t;

struct fy_abstract_server {
    /* Configuration: fy_abstract_server_init sets the defaults; change before start. */
    char name[32];          /* logs and socket name; letters, digits, '-', '_' */
    const char *socket_dir; /* socket file directory when abstract sockets are disabled;
                               borrowed; NULL means abstract only (start: -EINVAL) */
    int client_timeout_ms;  /* per message of a client connection; default 10000 */
    unsigned max_clients;   /* concurrent connections; more are closed; default 64 */
    const int *keep_fds;    /* also kept open in the child; borrowed; at most 32 */
    size_t keep_fd_count;
    fy_abstract_server_hook_fn before_fork;       /* in the owner, just before fork */
    fy_abstract_server_hook_fn initialize_server; /* in the child, before the main loop */
    fy_abstract_server_hook_fn finalize_server;   /* in the child, after the main loop */
    void *data;                                   /* for the hooks and handlers */

    /* Read-only: set by start, cleared by stop. */
    pid_t pid;                            /* the child; 0 when not started */
    char address[FY_ADDRESS_MAX];         /* "abstract:NAME" or "unix:PATH" */
    char password[FY_SECRET_HEX_LEN + 1]; /* what clients send first */
    /* In the owner: its end of the owner socket. In the child: the child's end. */
    int owner_fd;
    /* In the child: the listening socket. -1 in the owner. */
    int listen_fd;

    /* Private. */
    fy_abstract_server_handler_t handlers[FY_ABSTRACT_SERVER_MAX_HANDLERS];
    size_t handler_count;
    fy_abstract_server_signal_t signals[FY_ABSTRACT_SERVER_MAX_SIGNALS];
    size_t signal_count;
    bool in_thread;      /* started with fy_abstract_server_start_thread */
    int thread_owner_fd; /* thread mode: the loop's end of the owner socket */
    pthread_t thread;    /* thread mode: the main loop */
};

/* Initialises <srv> (not started, no handlers) with <name> (1-31 chars of [A-Za-z0-9_-]).
 * Returns 0 or -EINVAL for a bad name. */
int fy_abstract_server_init(fy_abstract_server_t *srv, const char *name);

/* Registers <fn> for messages named <name> (1-63 chars). Returns 0, -EINVAL for a bad name or a
 * NULL <fn>, -EEXIST when the name is taken, -ENOSPC past FY_ABSTRACT_SERVER_MAX_HANDLERS,
 * -EBUSY when the server is started. */
int fy_abstract_server_add_handler(fy_abstract_server_t *srv, const char *name,
                                   fy_abstract_server_handler_fn fn, void *data);

/* Installs <handler> (a function, SIG_IGN or SIG_DFL) for <signo> in the child, after the reset.
 * A second registration for the same signal replaces the first. Returns 0, -EINVAL for SIGKILL,
 * SIGSTOP or a number out of range, -ENOSPC past FY_ABSTRACT_SERVER_MAX_SIGNALS, -EBUSY when
 * started. */
int fy_abstract_server_add_signal(fy_abstract_server_t *srv, int signo, void (*handler)(int));

/* Listens, forks, and runs the main loop in the child. On return the child accepts clients at
 * srv->address with srv->password. Returns 0, -EALREADY when already started, -EINVAL when a file
 * socket is needed and socket_dir is NULL or keep_fd_count passes 32, or the errno of the failed
 * step (listen, socketpair, fork). Nothing is left open or running on failure. */
int fy_abstract_server_start(fy_abstract_server_t *srv);

/* Thread mode, for a process that must keep its main thread (the preloader forks workers from
 * it, docs/architecture.md "Smart spawning"): listens, then runs the main loop on a new thread of
 * this process (every signal blocked there) instead of a forked child, with the same password,
 * handlers and thread per client. No fd is closed and no signal reset: the process is the
 * caller's. srv->pid is the caller's pid; stop tells the loop to exit and joins it (returns 0).
 * initialize_server and finalize_server run on the loop thread; before_fork is not called.
 * Returns as fy_abstract_server_start. */
int fy_abstract_server_start_thread(fy_abstract_server_t *srv);

/* In a child forked (without exec) from a process whose server runs in thread mode: the loop
 * thread did not survive the fork; closes the child's copies of the listening socket and both
 * ends of the owner socket, and marks <srv> not started, touching no lock. No-op otherwise. */
void fy_abstract_server_forget_in_child(fy_abstract_server_t *srv);

/* True between a successful start and stop. */
bool fy_abstract_server_started(const fy_abstract_server_t *srv);

/* Tells the child to exit through the owner socket, waits up to
 * FY_ABSTRACT_SERVER_STOP_TIMEOUT_MS, then SIGKILLs it; reaps it in any case and removes a
 * leftover socket file. Returns 0 when the child exited by itself, 1 when it had to be killed,
 * -ESRCH when not started. */
int fy_abstract_server_stop(fy_abstract_server_t *srv);

/* Stops <srv> when started. The struct may be reused with fy_abstract_server_init. */
void fy_abstract_server_dispose(fy_abstract_server_t *srv);

/* Client side: connects to <address> and sends <password>. Returns the connected fd (the caller
 * closes it) or a negative errno. <timeout_ms> bounds the connect and the write. */
int fy_abstract_client_connect(const char *address, const char *password, int timeout_ms);

/* Connects, authenticates and sends the array message <items> (<count> NUL-terminated strings,
 * items[0] the handler name). Returns the fd to read the handler's replies from (caller closes
 * it), or a negative errno. */
int fy_abstract_client_call(const char *address, const char *password, int timeout_ms,
                            const char *const *items, size_t count);

#endif
