/* The admin server of `ferry start` (docs/architecture.md, "Modules and layering"): what
 * `ferry status`, `ferry restart` and `ferry stop` talk to.
 *
 * It listens on a password-protected Unix socket (abstract namespace, or a socket file in the
 * instance directory when abstract sockets are disabled) inside the core's event loop: its
 * answers are the core's own state, read on the loop thread, so it needs no relay process and
 * no locks. One command per connection, in MessageChannel messages (docs/protocol.md, "Admin"):
 *
 *     client → core   scalar message: the admin password (32 hex digits)
 *     client → core   array message: ["status"], ["metrics"], ["slow"], ["restart"] or ["stop"]
 *     core → client   scalar message: a JSON document
 *     core closes the connection
 *
 * A peer of another uid (SO_PEERCRED; root is allowed), a wrong password or an unknown command
 * gets the connection closed without a reply and one log line (module "admin"). A client that
 * sends nothing for FY_ADMIN_CLIENT_TIMEOUT_MS is closed. Loop thread only. */
#ifndef FY_ADMIN_ADMIN_SERVER_H
#define FY_ADMIN_ADMIN_SERVER_H

#include <jansson.h>
#include <uv.h>

#include "ipc/sock.h"

#define FY_ADMIN_CLIENT_TIMEOUT_MS 10000
/* Connections served at once; more are closed on accept. */
#define FY_ADMIN_MAX_CLIENTS 16

typedef struct fy_admin_server fy_admin_server_t;

typedef struct fy_admin_ops {
    /* The status document (a new reference), built when a client asks. */
    json_t *(*status)(void *data);
    /* The Prometheus text (malloc'd, NUL-terminated; the server frees it), answered as
     * {"prometheus": text}. */
    char *(*metrics)(void *data);
    /* The slow and failed request rings (a new reference), for `ferry status --slow`. */
    json_t *(*slow)(void *data);
    /* Starts a rolling restart of the app's workers. Returns 0, or a negative errno
     * (-ESHUTDOWN while shutting down). Called before the reply is built. */
    int (*restart)(void *data);
    /* Starts a graceful shutdown, as SIGTERM does. Called after the reply was queued. */
    void (*stop)(void *data);
    void *data;
} fy_admin_ops_t;

/* Listens in <dir> (for the socket-file fallback) on <loop> and generates the password.
 * Returns 0 or a negative errno. */
int fy_admin_server_start(uv_loop_t *loop, const char *dir, const fy_admin_ops_t *ops,
                          fy_admin_server_t **out);
const char *fy_admin_server_address(const fy_admin_server_t *srv); /* "abstract:…" / "unix:…" */
const char *fy_admin_server_password(const fy_admin_server_t *srv);

/* Stops listening and closes every client; frees <srv> once libuv has closed its handles (run
 * the loop). Removes the socket file, if any. */
void fy_admin_server_close(fy_admin_server_t *srv);

#endif
