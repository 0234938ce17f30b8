/* `ferry worker APP_DIR [--type rack|wsgi|c] [--environment ENV]`: starts one worker the way the
 * pool does (docs/protocol.md §5, spawn handshake). Expects fd 3 (owner pipe read end) and fd 4
 * (control channel). Detects the app type, sets FERRY_APP_ROOT, FERRY_APP_TYPE, FERRY_ENV,
 * FERRY_OWNER_FD and FERRY_CONTROL_FD, then execs the Ruby or Python loader, or runs the native
 * C worker in this process. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/apptype.h"
#include "cli/commands.h"
#include "cli/interp.h"
#include "cli/paths.h"
#include "core/alloc.h"
#include "core/log.h"
#include "ipc/handshake.h"
#include "worker/worker.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry worker APP_DIR [--type rack|wsgi|c] [--environment ENV]\n"
            "\n"
            "Runs one worker of the app in APP_DIR with the spawn handshake of docs/protocol.md §5:\n"
            "fd 3 must be the read end of the owner pipe (the worker exits when it reads EOF)\n"
            "and fd 4 a control channel (a Unix socket), on which the worker writes\n"
            "[\"ready\", pid, address, secret] once it listens, or [\"error\", summary, details].\n"
            "\n"
            "options:\n"
            "  -t, --type TYPE         rack, wsgi or c; detected when omitted:\n"
            "                          config.ru -> rack; passenger_wsgi.py, wsgi.py or app.py\n"
            "                          -> wsgi; a *.so (app.so preferred) -> c.\n"
            "                          APP_DIR may also be the path of a .so (type c).\n"
            "  -e, --environment ENV   sets FERRY_ENV (default: $FERRY_ENV, else production)\n"
            "  -h, --help              this text\n"
            "\n"
            "environment:\n"
            "  FERRY_LOADERS_DIR       where python/wsgi_loader.py and ruby/rack_loader.rb are\n"
            "                          (default: PREFIX/" FERRY_INSTALL_DATADIR "/ferry/loaders of an\n"
            "                          installed ferry, else %s/loaders)\n"
            "  FERRY_EXT_DIR           where python/_ferry.abi3.so and ruby/ferry_ext.so are\n"
            "                          (default: PREFIX/" FERRY_INSTALL_LIBDIR "/ferry/ext, else the\n"
            "                          build's src/ext)\n"
            "  FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS=1  listen on a socket file in\n"
            "                          $FERRY_INSTANCE_DIR (else $TMPDIR, else /tmp)\n"
            "  FERRY_PYTHON, FERRY_RUBY  the loader's interpreter (default: APP_DIR/.venv or\n"
            "                          venv/bin/python, else python3 on PATH, else\n"
            "                          /usr/bin/python3; ruby on PATH, else /usr/bin/ruby)\n"
            "  FERRY_APP               WSGI entry point MODULE:CALLABLE or MODULE:FACTORY()\n"
            "  FERRY_STARTUP_FILE      the app's config.ru or WSGI file by another name\n",
            FERRY_SOURCE_ROOT);
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* Reports a failure before the worker runs: on fd 4 when it is open, always on stderr. */
static int fail(const char *summary, const char *details)
{
    /* fy_worker_report_error also logs <summary> on stderr. */
    fy_worker_report_error(fd_is_open(FY_HANDSHAKE_CONTROL_FD) ? FY_HANDSHAKE_CONTROL_FD : -1,
                           summary, details);
    if (details != NULL && *details != '\0')
        fprintf(stderr, "ferry worker: %s\n", details);
    return 1;
}

static int exec_loader(const char *type, const char *root)
{
    /* The loaders and the extensions of this binary's own installation or build. */
    char exe[PATH_MAX], loaders[PATH_MAX], ext_dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    fy_paths_find(exe, loaders, ext_dir, sizeof loaders);
    char script[PATH_MAX + 32];
    bool wsgi = strcmp(type, "wsgi") == 0;
    if (wsgi)
        snprintf(script, sizeof script, "%s/python/wsgi_loader.py", loaders);
    else
        snprintf(script, sizeof script, "%s/ruby/rack_loader.rb", loaders);
    /* `ferry start` put its choice into the environment; started by hand, the same rules. */
    fy_interp_t chosen;
    char why[PATH_MAX + 80];
    if (fy_interp_choose(type, root, getenv(wsgi ? FY_HANDSHAKE_VAR_PYTHON : FY_HANDSHAKE_VAR_RUBY),
                         &chosen, why, sizeof why) != 0)
        return fail(why, "step=choose_interpreter: set --python / --ruby (FERRY_PYTHON, "
                         "FERRY_RUBY) to an executable file");
    const char *interp = chosen.path;
    if (access(script, R_OK) != 0) {
        char *summary =
            fy_xasprintf("the %s loader %s is missing: %s", type, script, strerror(errno));
        int rc = fail(summary, "step=exec_loader: set FERRY_LOADERS_DIR to the loaders/ directory "
                               "of a ferry source tree or installation (share/ferry/loaders)");
        free(summary);
        return rc;
    }
    /* The loader imports the runtime's extension module (_ferry for Python, ferry_ext for Ruby)
     * from FERRY_EXT_DIR/<language>/: the extensions of the build this binary belongs to. */
    setenv(FY_HANDSHAKE_VAR_EXT_DIR, ext_dir, 1);
#ifdef FY_ASAN_RUNTIME
    /* A sanitizer build's extensions need the ASan runtime first in the interpreter's library
     * list. Three options are appended to whatever ASAN_OPTIONS the caller set (the last
     * setting wins): interpreters free little at exit, so a leak check there says nothing about
     * ferry and would fail every exit; Ruby's GC scans the machine stack, which ASan's fake
     * stacks would hide; a small quarantine keeps a long stream's RSS bounded. */
    const char *preload = getenv("LD_PRELOAD");
    char *joined = fy_xasprintf("%s%s%s", FY_ASAN_RUNTIME, preload && *preload ? ":" : "",
                                preload ? preload : "");
    setenv("LD_PRELOAD", joined, 1);
    free(joined);
    const char *asan = getenv("ASAN_OPTIONS");
    char *options = fy_xasprintf(
        "%s%sdetect_leaks=0:detect_stack_use_after_return=0:quarantine_size_mb=16",
        asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", options, 1);
    free(options);
#endif
    char *const argv[] = {(char *)interp, script, NULL};
    execv(interp, argv);
    char *summary =
        fy_xasprintf("cannot run the %s loader: %s %s: %s", type, interp, script, strerror(errno));
    int rc = fail(summary, "step=exec_loader");
    free(summary);
    return rc;
}

int fy_cmd_worker(int argc, char **argv)
{
    static const struct option options[] = {
        {"type", required_argument, NULL, 't'},
        {"environment", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *type = NULL;
    const char *environment = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "t:e:h", options, NULL)) != -1) {
        switch (c) {
        case 't':
            type = optarg;
            break;
        case 'e':
            environment = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    if (type != NULL && !fy_apptype_is_known(type)) {
        fprintf(stderr, "ferry worker: unknown --type '%s' (rack, wsgi or c)\n", type);
        return 2;
    }
    if (!fd_is_open(FY_HANDSHAKE_OWNER_FD) || !fd_is_open(FY_HANDSHAKE_CONTROL_FD))
        return fail("fd " FY_HANDSHAKE_OWNER_FD_TEXT " (owner pipe) and fd "
                    FY_HANDSHAKE_CONTROL_FD_TEXT " (control channel) must be open",
                    "step=handshake: ferry worker is started by the pool or a test harness "
                    "with the spawn handshake of docs/protocol.md §5");

    char root[PATH_MAX];
    if (realpath(argv[optind], root) == NULL) {
        char *summary = fy_xasprintf("app %s: %s", argv[optind], strerror(errno));
        int rc = fail(summary, "step=find_app");
        free(summary);
        return rc;
    }
    struct stat st;
    char *so_path = NULL;
    if (stat(root, &st) == 0 && S_ISREG(st.st_mode)) {
        /* APP_DIR is the .so itself. */
        if (type != NULL && strcmp(type, "c") != 0) {
            char *summary =
                fy_xasprintf("app %s is a file; --type %s needs a directory", root, type);
            int rc = fail(summary, "step=find_app");
            free(summary);
            return rc;
        }
        type = "c";
        so_path = fy_xstrdup(root);
        char *slash = strrchr(root, '/');
        if (slash == root)
            slash[1] = '\0';
        else
            *slash = '\0';
    } else if (type == NULL) {
        const char *startup = getenv(FY_HANDSHAKE_VAR_STARTUP_FILE);
        const char *wsgi_app = getenv(FY_HANDSHAKE_VAR_WSGI_APP);
        if (wsgi_app != NULL && *wsgi_app != '\0')
            type = "wsgi";
        else if (startup != NULL && *startup != '\0')
            type = fy_apptype_of_startup_file(startup);
        else
            type = fy_apptype_detect(root);
        if (type == NULL) {
            char *summary = fy_xasprintf(
                "cannot tell the type of the app in %s: looked for " FY_APPTYPE_LOOKED_FOR, root);
            int rc = fail(summary, "step=detect_type: pass --type rack|wsgi|c");
            free(summary);
            return rc;
        }
    }
    if (strcmp(type, "c") == 0 && so_path == NULL) {
        so_path = fy_apptype_shared_object(root);
        if (so_path == NULL) {
            char *summary = fy_xasprintf("no app.so or other *.so in %s", root);
            int rc = fail(summary, "step=find_app: a native app is a shared object exporting "
                                   "ferry_app_init (include/ferry.h)");
            free(summary);
            return rc;
        }
    }

    if (environment == NULL)
        environment = getenv(FY_HANDSHAKE_VAR_ENV);
    if (environment == NULL || *environment == '\0')
        environment = "production";
    setenv(FY_HANDSHAKE_VAR_APP_ROOT, root, 1);
    setenv(FY_HANDSHAKE_VAR_APP_TYPE, type, 1);
    setenv(FY_HANDSHAKE_VAR_ENV, environment, 1);
    setenv(FY_HANDSHAKE_VAR_OWNER_FD, FY_HANDSHAKE_OWNER_FD_TEXT, 1);
    setenv(FY_HANDSHAKE_VAR_CONTROL_FD, FY_HANDSHAKE_CONTROL_FD_TEXT, 1);

    if (strcmp(type, "c") != 0) {
        free(so_path);
        return exec_loader(type, root);
    }

    const char *socket_dir = fy_worker_socket_dir();
    fy_worker_config_t cfg = {
        .app_path = so_path,
        .app_root = root,
        .environment = environment,
        .owner_fd = FY_HANDSHAKE_OWNER_FD,
        .control_fd = FY_HANDSHAKE_CONTROL_FD,
        .socket_dir = socket_dir,
    };
    int status = fy_worker_run(&cfg);
    free(so_path);
    return status;
}
