/* The native C worker (docs/protocol.md §5 spawn handshake; its lifecycle: docs/c-sdk.md,
 * "Threading and process rules"): loads an app .so (include/ferry.h), listens on its own
 * password-protected Unix socket, reports ["ready", pid, address, secret] on the control
 * channel and serves one request at a time until the owner pipe closes or a signal says stop.
 * Runs in the `ferry worker` process, main thread; it owns the process's signal dispositions
 * for SIGTERM, SIGUSR1, SIGHUP, SIGQUIT and SIGPIPE. */
#ifndef FY_WORKER_WORKER_H
#define FY_WORKER_WORKER_H

/* What fy_worker_run needs. Strings are borrowed for the run. */
typedef struct fy_worker_config {
    const char *app_path;    /* the app's .so */
    const char *app_root;    /* absolute app directory, handed to ferry_app_init */
    const char *environment; /* FERRY_ENV, handed to ferry_app_init */
    int owner_fd;            /* read end of the owner pipe; EOF means exit */
    int control_fd;          /* the control channel: ready or error is written here */
    const char *socket_dir;  /* directory of the socket file when abstract sockets are off */
} fy_worker_config_t;

/* Runs the worker to its end and returns the process exit status: 0 after a graceful stop
 * (SIGUSR1, owner pipe EOF while idle), 1 when the app cannot boot (after writing
 * ["error", summary, details] on <control_fd>) or after repeated errors outside requests.
 * May not return at all: SIGTERM and owner EOF during a request end the process directly,
 * after removing the socket file. */
int fy_worker_run(const fy_worker_config_t *cfg);

/* Writes ["error", <summary>, <details>] on <control_fd> (timeout 5 s) and logs the summary.
 * Returns 0 or a negative errno from the channel (the log line is written either way). */
int fy_worker_report_error(int control_fd, const char *summary, const char *details);

/* Where the worker's socket file goes when abstract sockets are off: $FERRY_INSTANCE_DIR, else
 * $TMPDIR, else /tmp. */
const char *fy_worker_socket_dir(void);

#endif
