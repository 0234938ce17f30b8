/* The spawn handshake's fixed numbers and names (docs/protocol.md §5): which fds a worker gets
 * and which environment variables tell it about its app. One copy, here, for everything that
 * starts a worker (src/spawn), is one (src/cli/cmd_worker.c, src/worker) or listens on its
 * behalf (src/ipc/sock.c), and for their tests. Constants only. */
#ifndef FY_IPC_HANDSHAKE_H
#define FY_IPC_HANDSHAKE_H

/* The read end of the worker's owner pipe: the worker exits when it reads EOF. */
#define FY_HANDSHAKE_OWNER_FD 3
/* The control channel (a Unix stream socket): "ready" or "error" goes there. */
#define FY_HANDSHAKE_CONTROL_FD 4

#define FY_HANDSHAKE_STR_(x) #x
#define FY_HANDSHAKE_STR(x) FY_HANDSHAKE_STR_(x)
/* The fd numbers as the decimal strings FERRY_OWNER_FD and FERRY_CONTROL_FD carry. */
#define FY_HANDSHAKE_OWNER_FD_TEXT FY_HANDSHAKE_STR(FY_HANDSHAKE_OWNER_FD)
#define FY_HANDSHAKE_CONTROL_FD_TEXT FY_HANDSHAKE_STR(FY_HANDSHAKE_CONTROL_FD)

/* The application directory (absolute). */
#define FY_HANDSHAKE_VAR_APP_ROOT "FERRY_APP_ROOT"
/* rack, wsgi or c. */
#define FY_HANDSHAKE_VAR_APP_TYPE "FERRY_APP_TYPE"
/* production, development, ... (absent or empty: production). */
#define FY_HANDSHAKE_VAR_ENV "FERRY_ENV"
/* FY_HANDSHAKE_OWNER_FD_TEXT. */
#define FY_HANDSHAKE_VAR_OWNER_FD "FERRY_OWNER_FD"
/* FY_HANDSHAKE_CONTROL_FD_TEXT. */
#define FY_HANDSHAKE_VAR_CONTROL_FD "FERRY_CONTROL_FD"
/* The instance directory, where socket files go when abstract sockets are off (may be absent). */
#define FY_HANDSHAKE_VAR_INSTANCE_DIR "FERRY_INSTANCE_DIR"
/* "1": listen on a socket file instead of the Linux abstract namespace. */
#define FY_HANDSHAKE_VAR_NO_ABSTRACT_SOCKETS "FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS"

/* Set: start as a preloader (docs/protocol.md §5.4); the value is the idle time in seconds after
 * which the preloader exits when no spawn came (0: never). A forked worker does not see it. */
#define FY_HANDSHAKE_VAR_PRELOAD "FERRY_PRELOAD"
/* The fifth item of a preloader's ready message (docs/protocol.md §5.4). */
#define FY_PRELOADER_READY_ITEM "preloader"
/* The spawn server's one handler (docs/protocol.md §5.4). */
#define FY_PRELOADER_SPAWN_MESSAGE "spawn"
/* The core's request on a smart worker's control channel (kept open after ready when re-forking
 * is on): fork the app's new preloader (docs/protocol.md §5.5). */
#define FY_REFORK_MESSAGE "refork"

/* Where the loaders find the runtime's extension modules: python/_ferry*.so, ruby/ferry_ext.so
 * (set by `ferry worker` when absent: the extensions of its own build). */
#define FY_HANDSHAKE_VAR_EXT_DIR "FERRY_EXT_DIR"

/* What `ferry start` chose for the app's loader (docs/configuration.md; each absent or empty
 * when not set): the WSGI entry point MODULE:CALLABLE or MODULE:FACTORY(), the app's startup
 * file (absolute), and the interpreter that runs the Python or Ruby loader (a path). The same
 * names as the options' environment variables, so a worker started by hand reads them too. */
#define FY_HANDSHAKE_VAR_WSGI_APP "FERRY_APP"
#define FY_HANDSHAKE_VAR_STARTUP_FILE "FERRY_STARTUP_FILE"
#define FY_HANDSHAKE_VAR_PYTHON "FERRY_PYTHON"
#define FY_HANDSHAKE_VAR_RUBY "FERRY_RUBY"

#endif
