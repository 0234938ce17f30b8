/* `ferry start` configuration: the option table and its three sources. */
#include "cli/config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"
#include "pool/pool.h"

typedef enum opt_kind {
    OPT_STR,      /* any string */
    OPT_UINT,     /* unsigned in [min, max] */
    OPT_SIZE,     /* bytes with k/m/g suffix, in [min, max] */
    OPT_BOOL,     /* true/false/yes/no/on/off/1/0 */
    OPT_ENUM,     /* one of choices (|-separated) */
    OPT_LEVEL,    /* a log level name */
} opt_kind_t;

typedef struct opt {
    const char *name;          /* flag spelling, with '-' */
    opt_kind_t kind;
    size_t offset;
    const char *def;           /* default, parsed like any other value */
    uint64_t min, max;
    const char *choices;
    const char *help;
} opt_t;

#define OFF(f) offsetof(fy_start_config_t, f)
#define U32 4294967295ull

static const opt_t options[] = {
    {"address", OPT_STR, OFF(address), "127.0.0.1", 0, 0, NULL,
     "IP address to listen on (IPv4 or IPv6 literal)"},
    {"port", OPT_UINT, OFF(port), "3000", 1, 65535, NULL,
     "TCP port; with --socket and no port given, TCP is off"},
    {"socket", OPT_STR, OFF(socket), "", 0, 0, NULL, "also (or only) listen on this Unix socket file"},
    {"environment", OPT_ENUM, OFF(environment), "production", 0, 0, "production|development",
     "FERRY_ENV of the app; development shows boot errors in 503 pages"},
    {"app-type", OPT_ENUM, OFF(app_type), "auto", 0, 0, "auto|rack|wsgi|c",
     "app type; auto detects config.ru, passenger_wsgi.py/wsgi.py/app.py, *.so"},
    {"app", OPT_STR, OFF(app), "", 0, 0, NULL,
     "WSGI entry point MODULE:CALLABLE or MODULE:FACTORY() (gunicorn's form); implies wsgi"},
    {"startup-file", OPT_STR, OFF(startup_file), "", 0, 0, NULL,
     "the app's Rack (*.ru) or WSGI (*.py) file, relative to APP_DIR, when the detection's "
     "names do not fit"},
    {"python", OPT_STR, OFF(python), "", 0, 0, NULL,
     "Python of a WSGI app; empty: APP_DIR/.venv/bin/python or venv/bin/python, else python3 "
     "on PATH, else /usr/bin/python3"},
    {"ruby", OPT_STR, OFF(ruby), "", 0, 0, NULL,
     "Ruby of a Rack app; empty: ruby on PATH, else /usr/bin/ruby"},
    {"user", OPT_STR, OFF(user), "", 0, 0, NULL,
     "started as root: the app's user; empty: the startup file's owner (nobody for root's)"},
    {"group", OPT_STR, OFF(group), "", 0, 0, NULL,
     "started as root: the app's group; empty: the user's primary group"},
    {"drop-core", OPT_BOOL, OFF(drop_core), "true", 0, 0, NULL,
     "started as root: the core too becomes --user once its listeners are open"},
    {"max-pool-size", OPT_UINT, OFF(max_pool_size), "6", 1, 10000, NULL, "worker processes in all"},
    {"min-instances", OPT_UINT, OFF(min_instances), "1", 0, 10000, NULL,
     "workers kept alive even when idle"},
    {"pool-idle-time", OPT_UINT, OFF(pool_idle_time), "300", 0, U32, NULL,
     "seconds before an idle worker above min-instances stops; 0 never"},
    {"max-request-queue-size", OPT_UINT, OFF(max_request_queue_size), "100", 0, U32, NULL,
     "requests waiting for a worker; beyond it 503; 0 unlimited"},
    {"max-queue-time", OPT_UINT, OFF(max_queue_time), "0", 0, U32, NULL,
     "seconds a request may wait for a worker before 503; 0 no limit"},
    {"max-requests", OPT_UINT, OFF(max_requests), "0", 0, U32, NULL,
     "requests per worker before it is replaced; 0 unlimited"},
    {"memory-limit", OPT_UINT, OFF(memory_limit), "0", 0, 1048576, NULL,
     "MB of private memory (PSS) per worker; past it the worker is replaced after its current "
     "request; 0 no limit"},
    {"max-request-time", OPT_UINT, OFF(max_request_time), "0", 0, 86400, NULL,
     "seconds a worker may take for one request: 504, worker replaced; 0 no limit"},
    {"spawn-method", OPT_ENUM, OFF(spawn_method), "auto", 0, 0, "auto|smart|direct",
     "smart: workers are forked from a preloader that loaded the app once; direct: each "
     "worker loads the app; auto: smart for Rack and WSGI, direct for native C"},
    {"max-preloader-idle-time", OPT_UINT, OFF(max_preloader_idle_time), "300", 0, U32, NULL,
     "seconds the preloader stays without a spawn before it exits; 0 never"},
    {"refork-after", OPT_UINT, OFF(refork_after), "0", 0, U32, NULL,
     "smart spawning: once a worker has served this many requests, it forks the next preloader "
     "and the workers are replaced by forks of it (re-forking); 0 off"},
    {"start-timeout", OPT_UINT, OFF(start_timeout), "90", 1, 86400, NULL,
     "seconds a worker may take to boot"},
    {"session-protocol", OPT_UINT, OFF(session_protocol), "2", 1, 2, NULL,
     "2: session protocol v2 with every worker that offers it; 1: v1 always"},
    {"dispatch-ahead", OPT_UINT, OFF(dispatch_ahead), "2", 0, FY_POOL_DISPATCH_AHEAD_MAX, NULL,
     "requests written ahead into a busy v2 worker when none is idle; 0 off"},
    {"shutdown-timeout", OPT_UINT, OFF(shutdown_timeout), "30", 0, 86400, NULL,
     "seconds in-flight requests get after SIGTERM/SIGINT"},
    {"header-timeout", OPT_UINT, OFF(header_timeout), "30", 1, 86400, NULL,
     "seconds from a request's first byte to the end of its head: 408"},
    {"body-timeout", OPT_UINT, OFF(body_timeout), "60", 1, 86400, NULL,
     "longest pause in seconds between two reads of a request body: 408"},
    {"keepalive-timeout", OPT_UINT, OFF(keepalive_timeout), "15", 1, 86400, NULL,
     "seconds an idle keep-alive connection stays open"},
    {"max-body-size", OPT_SIZE, OFF(max_body_size), "1g", 0, UINT64_MAX / 2, NULL,
     "largest request body (k/m/g suffixes): 413; 0 unlimited"},
    {"max-uri-length", OPT_SIZE, OFF(max_uri_length), "8k", 16, 1048576, NULL,
     "longest request target: 414"},
    {"max-header-size", OPT_SIZE, OFF(max_header_size), "32k", 256, 120 * 1024, NULL,
     "bytes of request header names and values: 431"},
    {"max-header-count", OPT_UINT, OFF(max_header_count), "100", 1, 10000, NULL,
     "request header lines: 431"},
    {"body-buffer-threshold", OPT_SIZE, OFF(body_buffer_threshold), "64k", 0, 1ull << 30, NULL,
     "request bodies past this size are buffered in an unlinked temp file"},
    {"response-buffer-max", OPT_UINT, OFF(response_buffer_max), "128", 0, 1048576, NULL,
     "MB of one response buffered for a slow client before the worker is no longer read; "
     "0 no limit"},
    {"trusted-proxy", OPT_STR, OFF(trusted_proxy), "", 0, 0, NULL,
     "comma-separated peer IPs (or * or unix) whose X-Forwarded-For/-Proto are believed"},
    {"request-id-header", OPT_BOOL, OFF(request_id_header), "true", 0, 0, NULL,
     "add X-Request-Id: <the request's id> to responses (the app's own wins)"},
    {"slow-request-threshold", OPT_UINT, OFF(slow_request_threshold), "0", 0, 86400000, NULL,
     "ms; a request taking longer is logged at warn with its timeline; 0 off"},
    {"proxy-protocol", OPT_BOOL, OFF(proxy_protocol), "false", 0, 0, NULL,
     "peers in --trusted-proxy start each connection with a PROXY header (v1/v2) naming the "
     "client; others may not"},
    {"health-path", OPT_STR, OFF(health_path), "", 0, 0, NULL,
     "a path ferry answers itself: 200 when a worker is ready, else 503; empty is off"},
    {"powered-by", OPT_BOOL, OFF(powered_by), "true", 0, 0, NULL,
     "add X-Powered-By: ferry/<version> to responses"},
    {"metrics-address", OPT_STR, OFF(metrics_address), "", 0, 0, NULL,
     "HOST:PORT ([v6]:PORT) serving Prometheus metrics at GET /metrics; empty is off"},
    {"log-file", OPT_STR, OFF(log_file), "-", 0, 0, NULL, "log file; - is stderr"},
    {"access-log", OPT_STR, OFF(access_log), "", 0, 0, NULL,
     "access log file (combined format + request time); - is stdout; empty is off"},
    {"access-log-format", OPT_ENUM, OFF(access_log_format), "combined", 0, 0, "combined|json",
     "combined (+ request time and id) or json (one object per line)"},
    {"log-level", OPT_LEVEL, OFF(log_level), "info", 0, 0, NULL,
     "alert, error, warn, notice, info or debug"},
    {"pid-file", OPT_STR, OFF(pid_file), "", 0, 0, NULL,
     "write the server's pid to this file while it runs; empty is none"},
};

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int fy_parse_size(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -EINVAL;
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
        p++;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    default: return -EINVAL;
    }
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p != '\0')
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool enum_has(const char *choices, const char *s)
{
    size_t n = strlen(s);
    const char *p = choices;
    while (*p) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* Applies <value> to option <o>. <source> names where it came from, for the error line. */
static int apply(fy_start_config_t *cfg, const opt_t *o, const char *value, const char *source,
                 char *err, size_t err_len)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_STR: {
        char **slot = (char **)field;
        free(*slot);
        *slot = fy_xstrdup(value);
        return 0;
    }
    case OPT_ENUM:
        if (!enum_has(o->choices, value)) {
            set_err(err, err_len, "%s: '%s' is not one of %s", source, value, o->choices);
            return -EINVAL;
        }
        free(*(char **)field);
        *(char **)field = fy_xstrdup(value);
        return 0;
    case OPT_LEVEL: {
        fy_log_level_t level;
        if (fy_log_parse_level(value, &level) != 0) {
            set_err(err, err_len, "%s: '%s' is not a log level (alert, error, warn, notice, "
                    "info, debug)", source, value);
            return -EINVAL;
        }
        free(*(char **)field);
        *(char **)field = fy_xstrdup(value);
        return 0;
    }
    case OPT_BOOL:
        if (parse_bool(value, (bool *)field) != 0) {
            set_err(err, err_len, "%s: '%s' is not a boolean (true/false)", source, value);
            return -EINVAL;
        }
        return 0;
    case OPT_UINT:
    case OPT_SIZE: {
        uint64_t v;
        int rc;
        if (o->kind == OPT_SIZE) {
            rc = fy_parse_size(value, &v);
        } else {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(value, &end, 10);
            rc = (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0) ? -EINVAL : 0;
            v = u;
        }
        if (rc != 0) {
            set_err(err, err_len, "%s: '%s' is not a %s", source, value,
                    o->kind == OPT_SIZE ? "size (digits with an optional k, m or g)"
                                        : "non-negative integer");
            return -EINVAL;
        }
        if (v < o->min || v > o->max) {
            set_err(err, err_len, "%s: %s is out of range (%llu..%llu)", source, value,
                    (unsigned long long)o->min, (unsigned long long)o->max);
            return -EINVAL;
        }
        if (o->kind == OPT_SIZE)
            *(uint64_t *)field = v;
        else
            *(unsigned *)field = (unsigned)v;
        if (o->offset == OFF(port) && strcmp(source, "default") != 0)
            cfg->port_set = true;
        return 0;
    }
    }
    return -EINVAL;
}

/* Finds an option by a name with '-' or '_' separators. */
static const opt_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < FY_ARRAY_SIZE(options); i++) {
        const char *n = options[i].name;
        if (strlen(n) != len)
            continue;
        size_t k = 0;
        for (; k < len; k++) {
            char a = name[k] == '_' ? '-' : name[k];
            if (a != n[k])
                break;
        }
        if (k == len)
            return &options[i];
    }
    return NULL;
}

static void env_name(const opt_t *o, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "FERRY_");
    for (const char *p = o->name; *p && n + 1 < cap; p++)
        out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    out[n] = '\0';
}

static int load_file(fy_start_config_t *cfg, const char *app_dir, char *err, size_t err_len)
{
    char *path = fy_xasprintf("%s/ferry.json", app_dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        free(path);
        if (e == ENOENT || e == ENOTDIR)
            return 0;
        set_err(err, err_len, "%s/ferry.json: %s", app_dir, strerror(e));
        return -EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {   /* jansson would read a directory as an empty file */
        set_err(err, err_len, "%s: not a regular file", path);
        free(path);
        return -EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        set_err(err, err_len, "%s: line %d: %s", path, jerr.line, jerr.text);
        free(path);
        return -EINVAL;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        set_err(err, err_len, "%s: the top level must be an object", path);
        rc = -EINVAL;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (rc != 0)
            break;
        const opt_t *o = find_option(key, strlen(key));
        char source[256];
        snprintf(source, sizeof source, "%s: key '%s'", path, key);
        if (o == NULL) {
            set_err(err, err_len, "%s: unknown key '%s' (see ferry start --help)", path, key);
            rc = -EINVAL;
            break;
        }
        char text[64];
        const char *s;
        if (json_is_string(value)) {
            s = json_string_value(value);
        } else if (json_is_integer(value) && json_integer_value(value) >= 0) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value));
            s = text;
        } else if (json_is_boolean(value)) {
            s = json_is_true(value) ? "true" : "false";
        } else {
            set_err(err, err_len, "%s: must be a string, a non-negative integer or a boolean",
                    source);
            rc = -EINVAL;
            break;
        }
        rc = apply(cfg, o, s, source, err, err_len);
    }
    json_decref(root);
    free(path);
    return rc;
}

typedef struct flag_value {
    const opt_t *opt;
    const char *value;
} flag_value_t;

int fy_start_config_load(fy_start_config_t *cfg, int argc, char **argv, char *err, size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    err[0] = '\0';
    flag_value_t *flags = fy_xcalloc((size_t)argc + 1, sizeof *flags);
    size_t flag_count = 0;
    int rc = 0;

    /* 1. the command line: validate names now, apply last */
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (arg[0] == '-' && arg[1] != '\0') {
                set_err(err, err_len, "unknown option '%s' (see ferry start --help)", arg);
                rc = -EINVAL;
            } else if (arg[0] == '\0') {
                set_err(err, err_len, "APP_DIR is empty");
                rc = -EINVAL;
            } else if (cfg->app_dir != NULL) {
                set_err(err, err_len, "more than one APP_DIR: '%s' and '%s'", cfg->app_dir, arg);
                rc = -EINVAL;
            } else {
                cfg->app_dir = fy_xstrdup(arg);
            }
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_option(name, name_len);
        if (o == NULL) {
            set_err(err, err_len, "unknown option '--%.*s' (see ferry start --help)",
                    (int)name_len, name);
            rc = -EINVAL;
            break;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL) {
            if (i + 1 >= argc) {
                set_err(err, err_len, "option '--%s' needs a value", o->name);
                rc = -EINVAL;
                break;
            }
            value = argv[++i];
        }
        flags[flag_count].opt = o;
        flags[flag_count].value = value;
        flag_count++;
    }
    if (cfg->app_dir == NULL)
        cfg->app_dir = fy_xstrdup(".");

    /* 2. defaults */
    for (size_t i = 0; i < FY_ARRAY_SIZE(options) && rc == 0; i++)
        rc = apply(cfg, &options[i], options[i].def, "default", err, err_len);
    FY_ASSERT(rc == 0 || err[0] != '\0');

    /* 3. the file, 4. the environment, 5. the flags; --help shows the usage whatever they say */
    if (cfg->help) {
        free(flags);
        return rc;
    }
    if (rc == 0)
        rc = load_file(cfg, cfg->app_dir, err, err_len);
    for (size_t i = 0; i < FY_ARRAY_SIZE(options) && rc == 0; i++) {
        char name[64];
        env_name(&options[i], name, sizeof name);
        const char *v = getenv(name);
        if (v != NULL)
            rc = apply(cfg, &options[i], v, name, err, err_len);
    }
    for (size_t i = 0; i < flag_count && rc == 0; i++) {
        char source[80];
        snprintf(source, sizeof source, "--%s", flags[i].opt->name);
        rc = apply(cfg, flags[i].opt, flags[i].value, source, err, err_len);
    }
    free(flags);
    if (rc == 0 && cfg->health_path[0] != '\0' && cfg->health_path[0] != '/') {
        set_err(err, err_len, "health-path: '%s' must start with /", cfg->health_path);
        rc = -EINVAL;
    }
    if (rc == 0 && cfg->min_instances > cfg->max_pool_size) {
        set_err(err, err_len, "min-instances (%u) is larger than max-pool-size (%u)",
                cfg->min_instances, cfg->max_pool_size);
        rc = -EINVAL;
    }
    return rc;
}

int fy_parse_host_port(const char *s, char *host, size_t host_cap, unsigned *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -EINVAL;   /* an IPv6 address needs its brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= host_cap)
        return -EINVAL;
    const char *p = colon + 1;
    unsigned long v = 0;
    if (*p == '\0')
        return -EINVAL;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > 65535)
            return -EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (unsigned)v;
    return 0;
}

void fy_start_config_dispose(fy_start_config_t *cfg)
{
    for (size_t i = 0; i < FY_ARRAY_SIZE(options); i++) {
        opt_kind_t k = options[i].kind;
        if (k == OPT_STR || k == OPT_ENUM || k == OPT_LEVEL) {
            char **slot = (char **)((char *)cfg + options[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
    free(cfg->app_dir);
    cfg->app_dir = NULL;
}

void fy_start_config_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry start [APP_DIR] [options]\n\n"
            "Serves the app in APP_DIR (default: the current directory) over HTTP/1.1. The app\n"
            "type is detected: config.ru -> rack; passenger_wsgi.py, wsgi.py or app.py -> wsgi;\n"
            "a *.so file -> c.\n\n"
            "Every option can also be set as an environment variable (FERRY_ + the name in\n"
            "upper snake case, e.g. FERRY_MAX_POOL_SIZE) or as a key of APP_DIR/ferry.json\n"
            "(\"max_pool_size\" or \"max-pool-size\"). Flags win over the environment, which wins\n"
            "over the file, which wins over the defaults.\n\noptions:\n");
    for (size_t i = 0; i < FY_ARRAY_SIZE(options); i++) {
        const opt_t *o = &options[i];
        char env[64];
        env_name(o, env, sizeof env);
        fprintf(out, "  --%-24s %s\n  %-26s  (default: %s; env %s)\n", o->name, o->help, "",
                o->def[0] ? o->def : "none", env);
    }
    fprintf(out, "  --%-24s %s\n", "help", "show this text");
    fprintf(out, "\nSIGTERM or SIGINT: stop accepting, let requests in flight finish within\n"
                 "--shutdown-timeout, stop the workers, exit 0. SIGUSR1: reopen --log-file and\n"
                 "--access-log (log rotation). Exit status 2: bad usage or\n"
                 "configuration; 1: a runtime failure (port in use, unreadable APP_DIR, no app).\n");
}
