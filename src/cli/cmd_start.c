/* `ferry start`: loads the configuration, checks the app directory and detects the app type,
 * binds the listeners (so a port in use fails before anything is spawned), creates the instance
 * directory, starts the pool and the HTTP front, and runs the loop until SIGTERM/SIGINT, then
 * shuts down gracefully: listeners closed, requests in flight finished (--shutdown-timeout),
 * workers stopped, instance directory removed, exit 0. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin_server.h"
#include "cli/admin_status.h"
#include "cli/apptype.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "cli/interp.h"
#include "cli/systemd.h"
#include "cli/users.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "http/http.h"
#include "ipc/handshake.h"
#include "ipc/instdir.h"
#include "ipc/sock.h"
#include "pool/pool.h"

#define POOL_SHUTDOWN_MS 10000u

typedef struct start_state {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    fy_systemd_t *systemd;           /* NOTIFY_SOCKET and socket activation; borrowed */
    uv_timer_t notify_timer;         /* READY=1 and STATUS= for systemd, when it listens */
    bool notify_timer_open;
    bool ready_sent;
    bool reloading;                  /* RELOADING=1 sent; READY=1 follows the restart's end */
    unsigned min_instances;
    char last_status[200];
    const char *log_path, *access_path;   /* as configured; "-" or "" when not a file */
    int log_fd, access_fd;
    fy_pool_t *pool;
    fy_http_server_t *http;
    fy_admin_server_t *admin;        /* NULL when it could not start (logged) */
    bool stopping;
    bool pool_done;
    unsigned shutdown_timeout_ms;
    fy_status_source_t status;       /* what `ferry status` shows besides the live pool */
    uint64_t started_ms;             /* uv_now at start */
    char url[300];
} start_state_t;

static void on_pool_done(fy_pool_t *pool, void *data)
{
    start_state_t *st = data;
    st->pool_done = true;
    fy_admin_server_close(st->admin);
    st->admin = NULL;
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigusr1, NULL);
    uv_close((uv_handle_t *)&st->sighup, NULL);
    if (st->notify_timer_open)
        uv_close((uv_handle_t *)&st->notify_timer, NULL);
    st->notify_timer_open = false;
}

static void on_pool_unused(fy_pool_t *pool, void *data) { (void)pool; (void)data; }

static void on_http_stopped(fy_http_server_t *srv, void *data)
{
    start_state_t *st = data;
    fy_log(FY_LOG_NOTICE, "start", "connections closed; stopping the workers");
    fy_pool_shutdown(st->pool, POOL_SHUTDOWN_MS, on_pool_done, st);
}

/* Graceful shutdown, from a signal or `ferry stop`; <why> names it in the log. */
static void begin_shutdown(start_state_t *st, const char *why)
{
    if (st->stopping) {
        fy_log(FY_LOG_NOTICE, "start", "%s: already shutting down", why);
        return;
    }
    st->stopping = true;
    fy_log(FY_LOG_NOTICE, "start", "%s: shutting down (timeout %u ms)", why,
           st->shutdown_timeout_ms);
    fy_systemd_notify(st->systemd, "STOPPING=1\nSTATUS=shutting down");
    fy_http_server_stop(st->http, st->shutdown_timeout_ms, on_http_stopped, st);
}

static void on_signal(uv_signal_t *h, int signum)
{
    char why[64];
    snprintf(why, sizeof why, "signal=%s", strsignal(signum));
    begin_shutdown(h->data, why);
}

static char *admin_metrics(void *data)
{
    start_state_t *st = data;
    return fy_http_metrics_text(st->http);
}

static json_t *admin_slow(void *data)
{
    start_state_t *st = data;
    return fy_status_build_slow(&st->status);
}

static json_t *admin_status(void *data)
{
    start_state_t *st = data;
    st->status.uptime_ms = uv_now(&st->loop) - st->started_ms;
    st->status.stopping = st->stopping;
    return fy_status_build(&st->status);
}

/* `ferry restart`: a rolling restart of the workers; refused once the shutdown began. */
static int admin_restart(void *data)
{
    start_state_t *st = data;
    if (st->stopping)
        return -ESHUTDOWN;
    int rc = fy_pool_restart(st->pool);
    if (rc == 0 && st->systemd->notify_fd >= 0) {
        /* READY=1 follows when the restart is over (on_notify_timer). */
        char text[96];
        snprintf(text, sizeof text, "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)fy_monotonic_ms() * 1000ull);
        fy_systemd_notify(st->systemd, text);
        st->reloading = true;
    }
    return rc;
}

/* SIGHUP: a rolling restart, as `ferry restart` (systemd's ExecReload=kill -HUP $MAINPID). */
static void on_sighup(uv_signal_t *h, int signum)
{
    start_state_t *st = h->data;
    int rc = admin_restart(st);
    if (rc == 0)
        fy_log(FY_LOG_NOTICE, "start", "signal=%s: rolling restart", strsignal(signum));
    else
        fy_log(FY_LOG_WARN, "start", "signal=%s: no restart: %s", strsignal(signum),
               strerror(-rc));
}

/* Tells systemd (NOTIFY_SOCKET) READY=1 once the listeners are open and min-instances workers
 * are ready (or the app failed to boot: it is then served with 503 pages, and STATUS says
 * so), READY=1 again at the end of a rolling restart, and STATUS= whenever the figures change. */
static void on_notify_timer(uv_timer_t *t)
{
    start_state_t *st = t->data;
    if (st->stopping)
        return;
    fy_pool_stats_t stats;
    fy_pool_get_stats(st->pool, &stats);
    unsigned ready = stats.idle + stats.busy;
    const fy_app_error_t *boot_error = fy_pool_boot_error(st->pool);
    char status[200];
    if (boot_error != NULL && ready == 0)
        snprintf(status, sizeof status, "STATUS=the app cannot boot: %.150s",
                 boot_error->summary ? boot_error->summary : "");
    else
        snprintf(status, sizeof status,
                 "STATUS=serving %.100s: %u workers ready (%u busy), %u spawning, %u queued%s",
                 st->url, ready, stats.busy, stats.spawning, stats.queued,
                 stats.restarting ? ", restarting" : "");
    bool send_ready = false;
    if (!st->ready_sent && (ready >= st->min_instances || boot_error != NULL)) {
        st->ready_sent = true;
        send_ready = true;
    }
    if (st->reloading && !stats.restarting) {
        st->reloading = false;
        send_ready = true;
    }
    if (send_ready || strcmp(status, st->last_status) != 0) {
        char text[220];
        snprintf(text, sizeof text, "%s%s", send_ready ? "READY=1\n" : "", status);
        fy_systemd_notify(st->systemd, text);
        snprintf(st->last_status, sizeof st->last_status, "%s", status);
    }
}

static void admin_stop(void *data)
{
    begin_shutdown(data, "ferry stop");
}

/* Reopens the log file <path> (nothing for "-" or "") onto <fd>, which keeps its number: logrotate
 * moves the file away and sends SIGUSR1, the old file is closed and a new one created. Returns
 * false (and logs why) when the new file cannot be opened; the old one then stays in use. */
static bool reopen_log(const char *what, const char *path, int fd)
{
    if (path == NULL || path[0] == '\0' || strcmp(path, "-") == 0 || fd < 0)
        return true;
    int nfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (nfd == -1) {
        fy_log(FY_LOG_ERROR, "start", "%s=%s: cannot reopen: %s; still writing to the old file",
               what, path, strerror(errno));
        return false;
    }
    if (nfd != fd) {
        /* dup3 keeps O_CLOEXEC on the number workers must not inherit */
        if (dup3(nfd, fd, O_CLOEXEC) == -1) {
            fy_log(FY_LOG_ERROR, "start", "%s=%s: cannot reopen: %s", what, path, strerror(errno));
            close(nfd);
            return false;
        }
        close(nfd);
    }
    return true;
}

static void on_reopen_logs(uv_signal_t *h, int signum)
{
    start_state_t *st = h->data;
    bool log_ok = reopen_log("log_file", st->log_path, st->log_fd);
    bool access_ok = reopen_log("access_log", st->access_path, st->access_fd);
    if (log_ok && access_ok)
        fy_log(FY_LOG_NOTICE, "start", "signal=%s: log files reopened", strsignal(signum));
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Opens a log file for appending; "-" means <std_fd>. Returns the fd or -errno. */
static int open_log(const char *path, int std_fd)
{
    if (strcmp(path, "-") == 0)
        return std_fd;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd == -1 ? -errno : fd;
}

/* Writes "<pid>\n" to <path> through a temporary file and rename, so a reader never sees a
 * half-written pid. Returns 0 or -errno. */
static int write_pid_file(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    char line[32];
    int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
    return fy_write_file_atomic(path, tmp, line, (size_t)n, 0644);
}

/* Removes the pid file if it still names this process (a newer ferry may own it by now). */
static void remove_pid_file(const char *path)
{
    char buf[32] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && atoi(buf) == (int)getpid())
        unlink(path);
}

static void write_properties(const fy_instdir_t *dir, const fy_start_config_t *cfg,
                             const char *app_root, const char *type, const char *url,
                             const char *admin)
{
    /* jansson escapes the strings: an app root or socket path may hold '"' or '\\'. */
    json_t *props = json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "pid",
                              (int)getpid(), "address", cfg->address, "port",
                              (json_int_t)(cfg->port_set || !cfg->socket[0] ? cfg->port : 0),
                              "socket", cfg->socket, "url", url, "app_root", app_root,
                              "app_type", type, "version", FERRY_VERSION, "admin", admin);
    char *json = props ? json_dumps(props, JSON_PRESERVE_ORDER) : NULL;
    json_decref(props);
    if (json == NULL) {
        fy_log(FY_LOG_WARN, "start", "dir=%s: cannot encode properties.json (not UTF-8?)",
               dir->path);
        return;
    }
    int rc = fy_instdir_write_file(dir, "properties.json", json, strlen(json), 0600);
    if (rc < 0)
        fy_log(FY_LOG_WARN, "start", "dir=%s: cannot write properties.json: %s", dir->path,
               strerror(-rc));
    free(json);
}

/* Checks --app and --startup-file against the app type, chooses the interpreter of a WSGI or Rack
 * app (into <interp>), and puts all three into the environment every worker inherits
 * (src/ipc/handshake.h; docs/configuration.md "Entry points" and "Interpreters"). Returns 0, or
 * -1 after printing why on stderr. */
static int export_loader_choices(const fy_start_config_t *cfg, const char *app_root,
                                 const char *type, fy_interp_t *interp)
{
    bool interpreted = strcmp(type, "wsgi") == 0 || strcmp(type, "rack") == 0;
    if (cfg->app[0] != '\0' && strcmp(type, "wsgi") != 0) {
        fprintf(stderr, "ferry start: --app %s is a WSGI entry point, but the app type is %s\n",
                cfg->app, type);
        return -1;
    }
    if (cfg->app[0] != '\0' && cfg->startup_file[0] != '\0') {
        fprintf(stderr, "ferry start: --app and --startup-file exclude each other (--app names "
                        "a module on the app's path, --startup-file a file)\n");
        return -1;
    }
    if (cfg->app[0] != '\0' && !fy_apptype_wsgi_app_valid(cfg->app)) {
        fprintf(stderr, "ferry start: --app %s: not MODULE, MODULE:NAME or MODULE:NAME(ARGS) "
                        "(e.g. myapp.wsgi:application, myapp:create_app())\n", cfg->app);
        return -1;
    }
    if (cfg->app[0] != '\0')
        setenv(FY_HANDSHAKE_VAR_WSGI_APP, cfg->app, 1);
    else
        unsetenv(FY_HANDSHAKE_VAR_WSGI_APP);
    unsetenv(FY_HANDSHAKE_VAR_STARTUP_FILE);
    if (cfg->startup_file[0] != '\0') {
        if (!interpreted) {
            fprintf(stderr, "ferry start: --startup-file is for rack and wsgi apps, not %s\n",
                    type);
            return -1;
        }
        char joined[PATH_MAX], file[PATH_MAX];
        int n = cfg->startup_file[0] == '/'
                    ? snprintf(joined, sizeof joined, "%s", cfg->startup_file)
                    : snprintf(joined, sizeof joined, "%s/%s", app_root, cfg->startup_file);
        struct stat fst;
        if (n >= (int)sizeof joined || realpath(joined, file) == NULL) {
            fprintf(stderr, "ferry start: --startup-file %s: %s\n", joined,
                    n >= (int)sizeof joined ? strerror(ENAMETOOLONG) : strerror(errno));
            return -1;
        }
        if (stat(file, &fst) != 0 || !S_ISREG(fst.st_mode)) {
            fprintf(stderr, "ferry start: --startup-file %s: not a regular file\n", joined);
            return -1;
        }
        setenv(FY_HANDSHAKE_VAR_STARTUP_FILE, file, 1);
    }
    if (!interpreted)
        return 0;
    bool wsgi = strcmp(type, "wsgi") == 0;
    char err[PATH_MAX + 80];
    if (fy_interp_choose(type, app_root, wsgi ? cfg->python : cfg->ruby, interp, err,
                         sizeof err) != 0) {
        fprintf(stderr, "ferry start: %s\n", err);
        return -1;
    }
    setenv(wsgi ? FY_HANDSHAKE_VAR_PYTHON : FY_HANDSHAKE_VAR_RUBY, interp->path, 1);
    return 0;
}

/* Started as root, with the listeners open: the instance directory becomes the app user's (so
 * `ferry status` works for root and for it), the workers get its HOME, USER and LOGNAME, and the
 * core becomes that user too unless <drop_core> is false (the pool then spawns the workers as
 * it; the admin socket accepts it besides root). Returns 0, or -1 after printing why. */
static int switch_user(const fy_run_as_t *r, const fy_instdir_t *dir, bool drop_core)
{
    DIR *d = opendir(dir->path);
    if (d == NULL || chown(dir->path, r->uid, r->gid) == -1) {
        fprintf(stderr, "ferry start: cannot give the instance directory %s to %s: %s\n",
                dir->path, r->user, strerror(errno));
        if (d != NULL)
            closedir(d);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir->path, e->d_name);
        if (lchown(path, r->uid, r->gid) == -1)
            fy_log(FY_LOG_WARN, "start", "file=%s: cannot give it to %s: %s", path, r->user,
                   strerror(errno));
    }
    closedir(d);
    setenv("HOME", r->home, 1);
    setenv("USER", r->user, 1);
    setenv("LOGNAME", r->user, 1);
    if (drop_core) {
        char err[PATH_MAX + 128];
        if (fy_users_become(r, err, sizeof err) != 0) {
            fprintf(stderr, "ferry start: %s\n", err);
            return -1;
        }
    } else {
        fy_peer_allow_uid(r->uid);
    }
    fy_log(FY_LOG_NOTICE, "start", "user=%s group=%s uid=%u gid=%u from=\"%s\": the workers%s "
           "run as it", r->user, r->group, (unsigned)r->uid, (unsigned)r->gid, r->why,
           drop_core ? " and the core" : "");
    return 0;
}

int fy_cmd_start(int argc, char **argv)
{
    fy_start_config_t cfg;
    char err[512];
    if (fy_start_config_load(&cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "ferry start: %s\n", err);
        fy_start_config_dispose(&cfg);
        return 2;
    }
    if (cfg.help) {
        fy_start_config_usage(stdout);
        fy_start_config_dispose(&cfg);
        return 0;
    }

    char metrics_host[64];
    unsigned metrics_port = 0;
    if (cfg.metrics_address[0] != '\0' &&
        fy_parse_host_port(cfg.metrics_address, metrics_host, sizeof metrics_host,
                           &metrics_port) != 0) {
        fprintf(stderr, "ferry start: metrics-address '%s' is not HOST:PORT (an IP address, "
                "[v6]:PORT for IPv6; port 1..65535)\n", cfg.metrics_address);
        fy_start_config_dispose(&cfg);
        return 2;
    }
    if (cfg.proxy_protocol && cfg.trusted_proxy[0] == '\0') {
        fprintf(stderr, "ferry start: proxy-protocol: needs --trusted-proxy (the balancers that "
                        "may send PROXY headers)\n");
        fy_start_config_dispose(&cfg);
        return 2;
    }
    /* First: the variables go out of the environment before anything can inherit them. */
    fy_systemd_t systemd;
    if (fy_systemd_open(&systemd, err, sizeof err) != 0) {
        fprintf(stderr, "ferry start: %s\n", err);
        fy_systemd_close(&systemd);
        fy_start_config_dispose(&cfg);
        return 2;
    }

    int status = 1;
    int log_fd = -1, access_fd = -1;
    bool pid_file_written = false;
    bool instdir_made = false;
    fy_instdir_t instdir;
    start_state_t *st = NULL;
    char app_root[PATH_MAX];
    char ferry_bin[PATH_MAX];

    /* the app directory and its type */
    struct stat sb;
    if (stat(cfg.app_dir, &sb) != 0) {
        fprintf(stderr, "ferry start: app directory %s: %s\n", cfg.app_dir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "ferry start: app directory %s: not a directory\n", cfg.app_dir);
        goto out;
    }
    if (realpath(cfg.app_dir, app_root) == NULL || access(app_root, R_OK | X_OK) != 0) {
        fprintf(stderr, "ferry start: app directory %s: not readable: %s\n", cfg.app_dir,
                strerror(errno));
        goto out;
    }
    DIR *probe = opendir(app_root);
    if (probe == NULL) {
        fprintf(stderr, "ferry start: app directory %s: not readable: %s\n", cfg.app_dir,
                strerror(errno));
        goto out;
    }
    closedir(probe);
    const char *type = NULL;
    if (strcmp(cfg.app_type, "auto") != 0)
        type = cfg.app_type;
    else if (cfg.app[0] != '\0')
        type = "wsgi";
    else if (cfg.startup_file[0] != '\0')
        type = fy_apptype_of_startup_file(cfg.startup_file);
    else
        type = fy_apptype_detect(app_root);
    if (type == NULL && cfg.startup_file[0] != '\0') {
        fprintf(stderr, "ferry start: --startup-file %s: cannot tell the app type by its name "
                        "(*.ru is rack, *.py wsgi): pass --app-type\n", cfg.startup_file);
        goto out;
    }
    if (type == NULL) {
        fprintf(stderr, "ferry start: no app found in %s: looked for " FY_APPTYPE_LOOKED_FOR "\n",
                app_root);
        goto out;
    }
    fy_interp_t interp = {.path = "", .source = NULL};
    if (export_loader_choices(&cfg, app_root, type, &interp) != 0)
        goto out;
    /* Who the app runs as (docs/deploying.md, "Users"): the owner of the file the loader loads
     * (with --app, of APP_DIR) unless --user says. */
    fy_run_as_t run_as;
    {
        const char *startup = getenv(FY_HANDSHAKE_VAR_STARTUP_FILE);
        char *owned = startup != NULL ? fy_xstrdup(startup)
                      : cfg.app[0] != '\0' ? NULL : fy_apptype_startup_file(app_root, type);
        char choose_err[PATH_MAX + 128];
        int urc = fy_users_choose(cfg.user, cfg.group, owned ? owned : app_root, &run_as,
                                  choose_err, sizeof choose_err);
        free(owned);
        if (urc != 0) {
            fprintf(stderr, "ferry start: %s\n", choose_err);
            goto out;
        }
    }
    ssize_t n = readlink("/proc/self/exe", ferry_bin, sizeof ferry_bin - 1);
    if (n <= 0) {
        fprintf(stderr, "ferry start: cannot find the ferry binary: %s\n", strerror(errno));
        goto out;
    }
    ferry_bin[n] = '\0';

    /* logs */
    log_fd = open_log(cfg.log_file, 2);
    if (log_fd < 0) {
        fprintf(stderr, "ferry start: log file %s: %s\n", cfg.log_file, strerror(-log_fd));
        goto out;
    }
    if (cfg.access_log[0] != '\0') {
        access_fd = open_log(cfg.access_log, 1);
        if (access_fd < 0) {
            fprintf(stderr, "ferry start: access log %s: %s\n", cfg.access_log,
                    strerror(-access_fd));
            goto out;
        }
    }
    fy_log_level_t level = FY_LOG_INFO;
    fy_log_parse_level(cfg.log_level, &level);
    fy_log_set_level(level);
    fy_log_set_fd(log_fd);
    signal(SIGPIPE, SIG_IGN);

    st = fy_xcalloc(1, sizeof *st);
    st->systemd = &systemd;
    st->min_instances = cfg.min_instances;
    st->shutdown_timeout_ms = cfg.shutdown_timeout * 1000u;
    uv_loop_init(&st->loop);

    fy_pool_options_t popts = {
        .app_root = app_root,
        .app_type = type,
        .environment = cfg.environment,
        .ferry_bin = ferry_bin,
        .instance_dir = NULL,
        .max_pool_size = cfg.max_pool_size,
        .min_instances = cfg.min_instances,
        .pool_idle_time_s = cfg.pool_idle_time,
        .max_request_queue_size = cfg.max_request_queue_size,
        .max_queue_time_s = cfg.max_queue_time,
        .max_requests = cfg.max_requests,
        .memory_limit_kib = (uint64_t)cfg.memory_limit * 1024u,
        .start_timeout_s = cfg.start_timeout,
        .dispatch_ahead = cfg.dispatch_ahead,
        .smart_spawn = strcmp(type, "c") != 0 && strcmp(cfg.spawn_method, "direct") != 0,
        .max_preloader_idle_time_s = cfg.max_preloader_idle_time,
        .refork_after = cfg.refork_after,
        .worker_set_user = run_as.switching && !cfg.drop_core,
        .worker_uid = run_as.uid,
        .worker_gid = run_as.gid,
    };
    /* Native C apps spawn directly: a .so loads in milliseconds and shares its pages through the
     * page cache already, so a preloader has nothing to save (docs/configuration.md). */
    if (strcmp(type, "c") == 0 && strcmp(cfg.spawn_method, "smart") == 0)
        fy_log(FY_LOG_NOTICE, "start", "app=%s: --spawn-method smart: native C apps spawn "
               "directly", app_root);

    fy_http_options_t hopts;
    fy_http_options_init(&hopts);
    hopts.header_timeout_ms = cfg.header_timeout * 1000u;
    hopts.body_timeout_ms = cfg.body_timeout * 1000u;
    hopts.keepalive_timeout_ms = cfg.keepalive_timeout * 1000u;
    hopts.max_request_time_ms = cfg.max_request_time * 1000u;
    hopts.max_body_size = cfg.max_body_size;
    hopts.max_uri_length = (size_t)cfg.max_uri_length;
    hopts.max_header_size = (size_t)cfg.max_header_size;
    hopts.max_header_count = cfg.max_header_count;
    hopts.body_buffer_threshold = (size_t)cfg.body_buffer_threshold;
    hopts.trusted_proxies = cfg.trusted_proxy;
    hopts.health_path = cfg.health_path;
    hopts.proxy_protocol = cfg.proxy_protocol;
    hopts.environment = cfg.environment;
    hopts.powered_by = cfg.powered_by;
    hopts.access_log_fd = access_fd;
    hopts.access_log_format = strcmp(cfg.access_log_format, "json") == 0
                                  ? FY_HTTP_ACCESS_LOG_JSON
                                  : FY_HTTP_ACCESS_LOG_COMBINED;
    hopts.request_id_header = cfg.request_id_header;
    hopts.slow_request_threshold_ms = cfg.slow_request_threshold;
    hopts.session_protocol = cfg.session_protocol;
    hopts.response_buffer_max = (uint64_t)cfg.response_buffer_max * 1024u * 1024u;

    /* Directories left by instances that died without cleaning up (SIGKILL, power loss) go
     * first, so they never pile up; then ours: the pool puts fallback sockets there. */
    int stale = fy_instdir_clean_stale();
    if (stale < 0)
        fy_log(FY_LOG_WARN, "start", "dir=%s: cannot look for stale instance directories: %s",
               fy_instdir_base(), strerror(-stale));
    int rc = fy_instdir_create(&instdir);
    if (rc < 0) {
        fprintf(stderr, "ferry start: cannot create the instance directory in %s: %s\n",
                fy_instdir_base(), strerror(-rc));
        goto out_loop;
    }
    instdir_made = true;
    popts.instance_dir = instdir.path;
    hopts.tmp_dir = NULL;

    rc = fy_pool_new(&st->loop, &popts, &st->pool);
    if (rc < 0) {
        fprintf(stderr, "ferry start: cannot create the application pool: %s\n", strerror(-rc));
        goto out_loop;
    }
    rc = fy_http_server_new(&st->loop, st->pool, &hopts, &st->http);
    if (rc < 0) {
        fprintf(stderr, "ferry start: bad HTTP options: %s\n", strerror(-rc));
        goto out_pool;
    }
    /* Socket activation: systemd's sockets replace --address, --port and --socket. */
    bool activated = systemd.listen_fds > 0;
    bool tcp = !activated && (cfg.port_set || cfg.socket[0] == '\0');
    for (unsigned i = 0; i < systemd.listen_fds; i++) {
        int fd = FY_SYSTEMD_LISTEN_FDS_START + (int)i;
        char url[sizeof st->url];
        rc = fy_http_server_listen_fd(st->http, fd, url, sizeof url);
        if (rc < 0) {
            fprintf(stderr, "ferry start: socket activation: fd %d%s%s: %s\n", fd,
                    systemd.listen_names[i][0] ? " " : "", systemd.listen_names[i],
                    rc == -EINVAL ? "not a listening stream socket" : uv_strerror(rc));
            goto out_http;
        }
        if (i == 0)
            snprintf(st->url, sizeof st->url, "%s", url);
        fy_log(FY_LOG_NOTICE, "start", "fd=%d name=%s url=%s: serving on a socket from systemd",
               fd, systemd.listen_names[i][0] ? systemd.listen_names[i] : "-", url);
    }
    if (tcp) {
        rc = fy_http_server_listen_tcp(st->http, cfg.address, cfg.port);
        if (rc < 0) {
            if (rc == UV_EADDRINUSE)
                fprintf(stderr, "ferry start: cannot listen on %s:%u: the port is in use\n",
                        cfg.address, cfg.port);
            else
                fprintf(stderr, "ferry start: cannot listen on %s:%u: %s\n", cfg.address,
                        cfg.port, uv_strerror(rc));
            goto out_http;
        }
    }
    if (!activated && cfg.socket[0] != '\0') {
        rc = fy_http_server_listen_unix(st->http, cfg.socket);
        if (rc < 0) {
            fprintf(stderr, "ferry start: cannot listen on the socket %s: %s\n", cfg.socket,
                    rc == -EEXIST ? "a file that is not a socket is in the way" : uv_strerror(rc));
            goto out_http;
        }
    }
    if (metrics_port != 0) {
        rc = fy_http_server_listen_metrics(st->http, metrics_host, metrics_port);
        if (rc < 0) {
            fprintf(stderr, "ferry start: cannot serve metrics on %s: %s\n", cfg.metrics_address,
                    rc == UV_EADDRINUSE ? "the port is in use"
                    : rc == -EINVAL     ? "not an IP address and port"
                                        : uv_strerror(rc));
            goto out_http;
        }
    }
    if (activated) {
        /* the first socket's URL, above */
    } else if (tcp) {
        bool v6 = strchr(cfg.address, ':') != NULL;
        snprintf(st->url, sizeof st->url, "http://%s%s%s:%u", v6 ? "[" : "", cfg.address,
                 v6 ? "]" : "", cfg.port);
    } else {
        snprintf(st->url, sizeof st->url, "unix:%s", cfg.socket);
    }
    st->started_ms = uv_now(&st->loop);
    st->status = (fy_status_source_t){
        .app_root = app_root,
        .app_type = type,
        .interpreter = interp.source ? interp.path : NULL,
        .interpreter_source = interp.source,
        .environment = cfg.environment,
        .url = st->url,
        .instance_dir = instdir.path,
        .started_unix_s = (uint64_t)time(NULL),
        .max_pool_size = cfg.max_pool_size,
        .min_instances = cfg.min_instances,
        .max_request_queue_size = cfg.max_request_queue_size,
        .memory_limit_kib = (uint64_t)cfg.memory_limit * 1024u,
        .slow_request_threshold_ms = cfg.slow_request_threshold,
        .pool = st->pool,
        .http = st->http,
    };
    /* `ferry status`, `ferry restart` and `ferry stop` need it, serving does not: a failure is
     * logged only. */
    fy_admin_ops_t admin_ops = {
        .status = admin_status, .metrics = admin_metrics, .slow = admin_slow, .restart = admin_restart,
        .stop = admin_stop, .data = st};
    rc = fy_admin_server_start(&st->loop, instdir.path, &admin_ops, &st->admin);
    if (rc < 0) {
        st->admin = NULL;
        fy_log(FY_LOG_ERROR, "start", "dir=%s: cannot start the admin server (ferry status, "
               "restart and stop will not reach this instance): %s", instdir.path, strerror(-rc));
    } else {
        const char *pw = fy_admin_server_password(st->admin);
        rc = fy_instdir_write_file(&instdir, "admin_password", pw, strlen(pw), 0600);
        if (rc < 0)
            fy_log(FY_LOG_ERROR, "start", "dir=%s: cannot write admin_password: %s", instdir.path,
                   strerror(-rc));
    }
    write_properties(&instdir, &cfg, app_root, type, st->url,
                     st->admin ? fy_admin_server_address(st->admin) : "");
    if (cfg.pid_file[0] != '\0') {
        rc = write_pid_file(cfg.pid_file);
        if (rc < 0) {
            fprintf(stderr, "ferry start: pid file %s: %s\n", cfg.pid_file, strerror(-rc));
            goto out_http;
        }
        pid_file_written = true;
    }

    if (run_as.switching && switch_user(&run_as, &instdir, cfg.drop_core) != 0)
        goto out_http;

    uv_signal_init(&st->loop, &st->sigterm);
    uv_signal_init(&st->loop, &st->sigint);
    st->sigterm.data = st->sigint.data = st;
    uv_signal_start(&st->sigterm, on_signal, SIGTERM);
    uv_signal_start(&st->sigint, on_signal, SIGINT);
    st->log_path = cfg.log_file;
    st->access_path = cfg.access_log;
    st->log_fd = log_fd;
    st->access_fd = access_fd;
    uv_signal_init(&st->loop, &st->sigusr1);
    st->sigusr1.data = st;
    uv_signal_start(&st->sigusr1, on_reopen_logs, SIGUSR1);
    uv_signal_init(&st->loop, &st->sighup);
    st->sighup.data = st;
    uv_signal_start(&st->sighup, on_sighup, SIGHUP);
    if (systemd.notify_fd >= 0) {
        uv_timer_init(&st->loop, &st->notify_timer);
        st->notify_timer.data = st;
        st->notify_timer_open = true;
        uv_timer_start(&st->notify_timer, on_notify_timer, 0, 100);
    }

    rc = fy_pool_start(st->pool);
    if (rc < 0) {
        fy_log(FY_LOG_ERROR, "start", "cannot start the application pool: %s", strerror(-rc));
        st->stopping = true;
        fy_http_server_stop(st->http, 0, on_http_stopped, st);
        uv_run(&st->loop, UV_RUN_DEFAULT);
        status = 1;
        goto out_after_run;
    }

    const char *url = st->url;
    /* The interpreter goes after the rest, so a reader of the old line finds it unchanged. */
    char interp_log[PATH_MAX + 64] = "", interp_line[PATH_MAX + 64] = "";
    if (interp.source != NULL) {
        snprintf(interp_log, sizeof interp_log, " interpreter=%s interpreter_from=%s",
                 interp.path, interp.source);
        snprintf(interp_line, sizeof interp_line, ", %s from %s", interp.path, interp.source);
    }
    fy_log(FY_LOG_NOTICE, "start",
           "app=%s type=%s env=%s url=%s%s%s pid=%d instance=%s%s: serving", app_root, type,
           cfg.environment, url, tcp && cfg.socket[0] ? " socket=" : "",
           tcp && cfg.socket[0] ? cfg.socket : "", (int)getpid(), instdir.path, interp_log);
    printf("ferry %s serving %s (%s%s) on %s%s%s pid %d\n", FERRY_VERSION, app_root, type,
           interp_line, url, tcp && cfg.socket[0] ? " and unix:" : "",
           tcp && cfg.socket[0] ? cfg.socket : "", (int)getpid());
    fflush(stdout);

    uv_run(&st->loop, UV_RUN_DEFAULT);
    status = st->pool_done ? 0 : 1;
    fy_log(FY_LOG_NOTICE, "start", "pid=%d: stopped", (int)getpid());

out_after_run:
    fy_http_server_free(st->http);
    st->http = NULL;
    fy_pool_free(st->pool);
    st->pool = NULL;
    goto out_loop;

out_http:
    /* Nothing was spawned: close what exists and let the pool finish its (empty) shutdown. */
    fy_admin_server_close(st->admin);
    st->admin = NULL;
    fy_http_server_stop(st->http, 0, NULL, NULL);
out_pool:
    fy_pool_shutdown(st->pool, 0, on_pool_unused, NULL);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    fy_http_server_free(st->http);
    st->http = NULL;
    fy_pool_free(st->pool);
    st->pool = NULL;
out_loop:
    fy_admin_server_close(st->admin);
    st->admin = NULL;
    uv_walk(&st->loop, close_walk, NULL);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    uv_loop_close(&st->loop);
out:
    if (pid_file_written)
        remove_pid_file(cfg.pid_file);
    if (instdir_made)
        fy_instdir_remove(&instdir);
    if (access_fd > 2)
        close(access_fd);
    if (log_fd > 2) {
        fy_log_set_fd(2);
        close(log_fd);
    }
    free(st);
    fy_systemd_close(&systemd);
    fy_start_config_dispose(&cfg);
    return status;
}
