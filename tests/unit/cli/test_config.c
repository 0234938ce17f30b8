/* Unit tests of src/cli/config.c: the `ferry start` option table and its three sources (flags,
 * FERRY_* environment variables, APP_DIR/ferry.json), their precedence and every error. Each test
 * runs in its own process (Criterion), starts with no FERRY_* variable set and gets a fresh
 * empty app directory under /tmp, removed after the test. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/config.h"
#include "http/http.h"
#include "pool/pool.h"

extern char **environ;

static char app_dir[64];
static char json_path[128];
static fy_start_config_t cfg;
static bool cfg_loaded;
static char err[512];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Unsets every FERRY_* variable (the runner's own included), then makes the app directory. */
static void setup(void)
{
    for (;;) {
        char *found = NULL;
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "FERRY_", 6) == 0) {
                found = *e;
                break;
            }
        }
        if (found == NULL)
            break;
        char name[256];
        size_t n = strcspn(found, "=");
        cr_assert_lt(n, sizeof name);
        memcpy(name, found, n);
        name[n] = '\0';
        cr_assert_eq(unsetenv(name), 0);
    }
    strcpy(app_dir, "/tmp/fy-test-config-XXXXXX");
    cr_assert_not_null(mkdtemp(app_dir));
    snprintf(json_path, sizeof json_path, "%s/ferry.json", app_dir);
}

static void teardown(void)
{
    if (cfg_loaded)
        fy_start_config_dispose(&cfg);
    if (app_dir[0] != '\0')
        nftw(app_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Loads with argv = {"start", <app_dir>, args..., NULL}. */
static int load_args(const char *first, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"start";
    argv[argc++] = app_dir;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert_lt(argc, 63);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    if (cfg_loaded)
        fy_start_config_dispose(&cfg);
    cfg_loaded = true;
    memset(err, 'X', sizeof err);
    return fy_start_config_load(&cfg, argc, argv, err, sizeof err);
}

#define load(...) load_args(__VA_ARGS__, (const char *)NULL)
#define load_none() load_args((const char *)NULL)

/* Loads with exactly <argc>/<argv> (no app directory added). */
static int load_argv(int argc, char **argv)
{
    if (cfg_loaded)
        fy_start_config_dispose(&cfg);
    cfg_loaded = true;
    memset(err, 'X', sizeof err);
    return fy_start_config_load(&cfg, argc, argv, err, sizeof err);
}

static void write_json(const char *text)
{
    FILE *f = fopen(json_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
}

static void expect_error(int rc, const char *message)
{
    cr_assert_eq(rc, -EINVAL, "rc=%d", rc);
    cr_assert_str_eq(err, message);
}

/* <rc> is -EINVAL and the message starts with the path of ferry.json, then <rest>. */
static void expect_file_error(int rc, const char *rest)
{
    char want[600];
    snprintf(want, sizeof want, "%s: %s", json_path, rest);
    expect_error(rc, want);
}

/* ---- every option, from each source ---------------------------------------------------- */

typedef enum kind { K_STR, K_UINT, K_SIZE, K_BOOL } kind_t;

typedef struct option_case {
    const char *flag; /* without "--" */
    const char *env;
    const char *snake; /* ferry.json key, snake case */
    kind_t kind;
    size_t offset;
    const char *value; /* a valid non-default value, as text */
    uint64_t number;   /* what <value> means for K_UINT, K_SIZE and K_BOOL */
} option_case_t;

#define OFF(f) offsetof(fy_start_config_t, f)

static const option_case_t every_option[] = {
    {"address", "FERRY_ADDRESS", "address", K_STR, OFF(address), "::1", 0},
    {"port", "FERRY_PORT", "port", K_UINT, OFF(port), "8081", 8081},
    {"socket", "FERRY_SOCKET", "socket", K_STR, OFF(socket), "/tmp/fy.sock", 0},
    {"environment", "FERRY_ENVIRONMENT", "environment", K_STR, OFF(environment), "development", 0},
    {"app-type", "FERRY_APP_TYPE", "app_type", K_STR, OFF(app_type), "wsgi", 0},
    {"max-pool-size", "FERRY_MAX_POOL_SIZE", "max_pool_size", K_UINT, OFF(max_pool_size), "9", 9},
    {"min-instances", "FERRY_MIN_INSTANCES", "min_instances", K_UINT, OFF(min_instances), "2", 2},
    {"pool-idle-time", "FERRY_POOL_IDLE_TIME", "pool_idle_time", K_UINT, OFF(pool_idle_time), "7",
     7},
    {"max-request-queue-size", "FERRY_MAX_REQUEST_QUEUE_SIZE", "max_request_queue_size", K_UINT,
     OFF(max_request_queue_size), "11", 11},
    {"max-queue-time", "FERRY_MAX_QUEUE_TIME", "max_queue_time", K_UINT, OFF(max_queue_time), "12",
     12},
    {"max-requests", "FERRY_MAX_REQUESTS", "max_requests", K_UINT, OFF(max_requests), "13", 13},
    {"memory-limit", "FERRY_MEMORY_LIMIT", "memory_limit", K_UINT, OFF(memory_limit), "512", 512},
    {"max-request-time", "FERRY_MAX_REQUEST_TIME", "max_request_time", K_UINT,
     OFF(max_request_time), "14", 14},
    {"spawn-method", "FERRY_SPAWN_METHOD", "spawn_method", K_STR, OFF(spawn_method), "direct", 0},
    {"max-preloader-idle-time", "FERRY_MAX_PRELOADER_IDLE_TIME", "max_preloader_idle_time", K_UINT,
     OFF(max_preloader_idle_time), "16", 16},
    {"refork-after", "FERRY_REFORK_AFTER", "refork_after", K_UINT, OFF(refork_after), "1000",
     1000},
    {"start-timeout", "FERRY_START_TIMEOUT", "start_timeout", K_UINT, OFF(start_timeout), "15", 15},
    {"session-protocol", "FERRY_SESSION_PROTOCOL", "session_protocol", K_UINT,
     OFF(session_protocol), "1", 1},
    {"dispatch-ahead", "FERRY_DISPATCH_AHEAD", "dispatch_ahead", K_UINT, OFF(dispatch_ahead), "3",
     3},
    {"shutdown-timeout", "FERRY_SHUTDOWN_TIMEOUT", "shutdown_timeout", K_UINT,
     OFF(shutdown_timeout), "16", 16},
    {"header-timeout", "FERRY_HEADER_TIMEOUT", "header_timeout", K_UINT, OFF(header_timeout), "17",
     17},
    {"body-timeout", "FERRY_BODY_TIMEOUT", "body_timeout", K_UINT, OFF(body_timeout), "18", 18},
    {"keepalive-timeout", "FERRY_KEEPALIVE_TIMEOUT", "keepalive_timeout", K_UINT,
     OFF(keepalive_timeout), "19", 19},
    {"max-body-size", "FERRY_MAX_BODY_SIZE", "max_body_size", K_SIZE, OFF(max_body_size), "2m",
     2u << 20},
    {"max-uri-length", "FERRY_MAX_URI_LENGTH", "max_uri_length", K_SIZE, OFF(max_uri_length), "4k",
     4096},
    {"max-header-size", "FERRY_MAX_HEADER_SIZE", "max_header_size", K_SIZE, OFF(max_header_size),
     "16k", 16384},
    {"max-header-count", "FERRY_MAX_HEADER_COUNT", "max_header_count", K_UINT,
     OFF(max_header_count), "50", 50},
    {"body-buffer-threshold", "FERRY_BODY_BUFFER_THRESHOLD", "body_buffer_threshold", K_SIZE,
     OFF(body_buffer_threshold), "1m", 1u << 20},
    {"response-buffer-max", "FERRY_RESPONSE_BUFFER_MAX", "response_buffer_max", K_UINT,
     OFF(response_buffer_max), "64", 64},
    {"trusted-proxy", "FERRY_TRUSTED_PROXY", "trusted_proxy", K_STR, OFF(trusted_proxy),
     "10.0.0.1,unix", 0},
    {"request-id-header", "FERRY_REQUEST_ID_HEADER", "request_id_header", K_BOOL,
     OFF(request_id_header), "false", 0},
    {"slow-request-threshold", "FERRY_SLOW_REQUEST_THRESHOLD", "slow_request_threshold", K_UINT,
     OFF(slow_request_threshold), "250", 250},
    {"powered-by", "FERRY_POWERED_BY", "powered_by", K_BOOL, OFF(powered_by), "false", 0},
    {"metrics-address", "FERRY_METRICS_ADDRESS", "metrics_address", K_STR, OFF(metrics_address),
     "127.0.0.1:9100", 0},
    {"proxy-protocol", "FERRY_PROXY_PROTOCOL", "proxy_protocol", K_BOOL, OFF(proxy_protocol),
     "true", 1},
    {"health-path", "FERRY_HEALTH_PATH", "health_path", K_STR, OFF(health_path), "/healthz", 0},
    {"app", "FERRY_APP", "app", K_STR, OFF(app), "pkg.web:create_app()", 0},
    {"startup-file", "FERRY_STARTUP_FILE", "startup_file", K_STR, OFF(startup_file), "web.ru", 0},
    {"python", "FERRY_PYTHON", "python", K_STR, OFF(python), "/opt/py/bin/python", 0},
    {"ruby", "FERRY_RUBY", "ruby", K_STR, OFF(ruby), "/opt/rb/bin/ruby", 0},
    {"user", "FERRY_USER", "user", K_STR, OFF(user), "shop", 0},
    {"group", "FERRY_GROUP", "group", K_STR, OFF(group), "www", 0},
    {"drop-core", "FERRY_DROP_CORE", "drop_core", K_BOOL, OFF(drop_core), "false", 0},
    {"log-file", "FERRY_LOG_FILE", "log_file", K_STR, OFF(log_file), "/tmp/fy.log", 0},
    {"access-log", "FERRY_ACCESS_LOG", "access_log", K_STR, OFF(access_log), "-", 0},
    {"access-log-format", "FERRY_ACCESS_LOG_FORMAT", "access_log_format", K_STR,
     OFF(access_log_format), "json", 0},
    {"log-level", "FERRY_LOG_LEVEL", "log_level", K_STR, OFF(log_level), "debug", 0},
    {"pid-file", "FERRY_PID_FILE", "pid_file", K_STR, OFF(pid_file), "/tmp/fy.pid", 0},
};

static void expect_option_value(const option_case_t *c, const char *source)
{
    const char *field = (const char *)&cfg + c->offset;
    switch (c->kind) {
    case K_STR:
        cr_assert_str_eq(*(char *const *)field, c->value, "%s from %s", c->flag, source);
        break;
    case K_UINT:
        cr_assert_eq(*(const unsigned *)field, c->number, "%s from %s", c->flag, source);
        break;
    case K_SIZE:
        cr_assert_eq(*(const uint64_t *)field, c->number, "%s from %s", c->flag, source);
        break;
    case K_BOOL:
        cr_assert_eq(*(const bool *)field, c->number != 0, "%s from %s", c->flag, source);
        break;
    }
}

/* The option count in --help: lines starting with "  --", minus --help itself. */
static size_t usage_option_count(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    fy_start_config_usage(f);
    cr_assert_eq(fclose(f), 0);
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, "\n  --")) != NULL; p++)
        n++;
    free(text);
    return n - 1;
}

Test(config, test_table_covers_every_option_in_usage)
{
    cr_assert_eq(usage_option_count(), sizeof every_option / sizeof every_option[0]);
}

Test(config, usage_names_every_option_with_its_environment_variable)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fy_start_config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        char flag[64], env[64];
        snprintf(flag, sizeof flag, "  --%s ", every_option[i].flag);
        snprintf(env, sizeof env, "; env %s)", every_option[i].env);
        cr_assert_not_null(strstr(text, flag), "%s", flag);
        cr_assert_not_null(strstr(text, env), "%s", env);
    }
    free(text);
}

Test(config, flags_set_every_option)
{
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        const option_case_t *c = &every_option[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", c->flag);
        cr_assert_eq(load(flag, c->value), 0, "%s: %s", c->flag, err);
        expect_option_value(c, "a flag");
    }
}

Test(config, flags_with_equals_set_every_option)
{
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        const option_case_t *c = &every_option[i];
        char flag[128];
        snprintf(flag, sizeof flag, "--%s=%s", c->flag, c->value);
        cr_assert_eq(load(flag), 0, "%s: %s", c->flag, err);
        expect_option_value(c, "a flag with =");
    }
}

Test(config, environment_sets_every_option)
{
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        const option_case_t *c = &every_option[i];
        cr_assert_eq(setenv(c->env, c->value, 1), 0);
        cr_assert_eq(load_none(), 0, "%s: %s", c->env, err);
        expect_option_value(c, c->env);
        cr_assert_eq(unsetenv(c->env), 0);
    }
}

/* Writes {"<key>": <value as a JSON string>} with <key> in snake case or, when <kebab>, with
 * the flag's spelling. */
static void write_json_string_option(const option_case_t *c, bool kebab)
{
    char text[256];
    snprintf(text, sizeof text, "{\"%s\": \"%s\"}", kebab ? c->flag : c->snake, c->value);
    write_json(text);
}

Test(config, file_snake_case_keys_set_every_option)
{
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        write_json_string_option(&every_option[i], false);
        cr_assert_eq(load_none(), 0, "%s: %s", every_option[i].snake, err);
        expect_option_value(&every_option[i], "ferry.json (snake case)");
    }
}

Test(config, file_kebab_case_keys_set_every_option)
{
    for (size_t i = 0; i < sizeof every_option / sizeof every_option[0]; i++) {
        write_json_string_option(&every_option[i], true);
        cr_assert_eq(load_none(), 0, "%s: %s", every_option[i].flag, err);
        expect_option_value(&every_option[i], "ferry.json (kebab case)");
    }
}

Test(config, file_takes_json_integers_for_numbers)
{
    write_json("{\"port\": 8082, \"max_pool_size\": 3, \"max-body-size\": 1000}");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.port, 8082);
    cr_assert_eq(cfg.max_pool_size, 3);
    cr_assert_eq(cfg.max_body_size, 1000);
}

Test(config, file_takes_json_booleans)
{
    write_json("{\"powered_by\": false}");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.powered_by, false);
    write_json("{\"powered_by\": true}");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.powered_by, true);
}

Test(config, file_sets_several_options_at_once)
{
    write_json("{\"address\": \"0.0.0.0\", \"log-level\": \"warn\", \"min_instances\": 0,\n"
               " \"environment\": \"development\", \"access_log\": \"/tmp/a.log\"}\n");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_str_eq(cfg.address, "0.0.0.0");
    cr_assert_str_eq(cfg.log_level, "warn");
    cr_assert_eq(cfg.min_instances, 0);
    cr_assert_str_eq(cfg.environment, "development");
    cr_assert_str_eq(cfg.access_log, "/tmp/a.log");
}

/* ---- defaults ------------------------------------------------------------------------------ */

Test(config, defaults_without_flags_environment_or_file)
{
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_str_eq(cfg.app_dir, app_dir);
    cr_assert_str_eq(cfg.address, "127.0.0.1");
    cr_assert_eq(cfg.port, 3000);
    cr_assert_eq(cfg.port_set, false);
    cr_assert_str_eq(cfg.socket, "");
    cr_assert_str_eq(cfg.environment, "production");
    cr_assert_str_eq(cfg.app_type, "auto");
    cr_assert_eq(cfg.max_pool_size, 6);
    cr_assert_eq(cfg.min_instances, 1);
    cr_assert_eq(cfg.pool_idle_time, 300);
    cr_assert_eq(cfg.max_request_queue_size, 100);
    cr_assert_eq(cfg.max_queue_time, 0);
    cr_assert_eq(cfg.max_requests, 0);
    cr_assert_eq(cfg.memory_limit, 0);
    cr_assert_eq(cfg.max_request_time, 0);
    cr_assert_eq(cfg.start_timeout, 90);
    cr_assert_eq(cfg.session_protocol, 2);
    cr_assert_eq(cfg.dispatch_ahead, 2);
    cr_assert_eq(cfg.shutdown_timeout, 30);
    cr_assert_eq(cfg.header_timeout, 30);
    cr_assert_eq(cfg.body_timeout, 60);
    cr_assert_eq(cfg.keepalive_timeout, 15);
    cr_assert_eq(cfg.max_body_size, 1ull << 30);
    cr_assert_eq(cfg.max_uri_length, 8192);
    cr_assert_eq(cfg.max_header_size, 32768);
    cr_assert_eq(cfg.max_header_count, 100);
    cr_assert_eq(cfg.body_buffer_threshold, 65536);
    cr_assert_eq(cfg.response_buffer_max, 128);
    cr_assert_str_eq(cfg.trusted_proxy, "");
    cr_assert_eq(cfg.powered_by, true);
    cr_assert_str_eq(cfg.log_file, "-");
    cr_assert_str_eq(cfg.access_log, "");
    cr_assert_str_eq(cfg.log_level, "info");
    cr_assert_eq(cfg.help, false);
    cr_assert_str_eq(err, "");
}

Test(config, app_dir_defaults_to_the_current_directory)
{
    char *argv[] = {(char *)"start", (char *)"--port", (char *)"8083", NULL};
    cr_assert_eq(load_argv(3, argv), 0, "%s", err);
    cr_assert_str_eq(cfg.app_dir, ".");
    cr_assert_eq(cfg.port, 8083);
}

Test(config, app_dir_may_come_after_the_options)
{
    char *argv[] = {(char *)"start", (char *)"--port", (char *)"8084", app_dir, NULL};
    cr_assert_eq(load_argv(4, argv), 0, "%s", err);
    cr_assert_str_eq(cfg.app_dir, app_dir);
}

Test(config, missing_app_dir_is_not_a_config_error)
{
    char *argv[] = {(char *)"start", (char *)"/nonexistent/fy-app", NULL};
    cr_assert_eq(load_argv(2, argv), 0, "%s", err);
    cr_assert_str_eq(cfg.app_dir, "/nonexistent/fy-app");
}

Test(config, missing_ferry_json_is_not_an_error)
{
    cr_assert_eq(access(json_path, F_OK), -1);
    cr_assert_eq(load_none(), 0, "%s", err);
}

Test(config, port_set_is_false_for_the_default_and_true_for_any_source)
{
    cr_assert_eq(load_none(), 0);
    cr_assert_eq(cfg.port_set, false);
    cr_assert_eq(load("--port", "3000"), 0);
    cr_assert_eq(cfg.port_set, true);
    setenv("FERRY_PORT", "3000", 1);
    cr_assert_eq(load_none(), 0);
    cr_assert_eq(cfg.port_set, true);
    unsetenv("FERRY_PORT");
    write_json("{\"port\": 3000}");
    cr_assert_eq(load_none(), 0);
    cr_assert_eq(cfg.port_set, true);
}

Test(config, unrelated_ferry_environment_variables_are_ignored)
{
    setenv("FERRY_NO_SUCH_OPTION", "1", 1);
    setenv("FERRY_ENV", "development", 1);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_str_eq(cfg.environment, "production");
}

Test(config, later_flag_wins_over_earlier_one)
{
    cr_assert_eq(load("--port", "8085", "--port=8086"), 0, "%s", err);
    cr_assert_eq(cfg.port, 8086);
}

Test(config, empty_environment_variable_clears_a_string_option)
{
    write_json("{\"socket\": \"/tmp/from-file.sock\"}");
    setenv("FERRY_SOCKET", "", 1);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_str_eq(cfg.socket, "");
}

Test(config, help_flag_is_recorded)
{
    cr_assert_eq(load("--help"), 0, "%s", err);
    cr_assert_eq(cfg.help, true);
    cr_assert_eq(load("-h"), 0, "%s", err);
    cr_assert_eq(cfg.help, true);
}

Test(config, help_ignores_bad_values_in_file_environment_and_flags)
{
    write_json("{\"port\": ");
    setenv("FERRY_PORT", "abc", 1);
    cr_assert_eq(load("--help", "--max-pool-size", "0"), 0, "%s", err);
    cr_assert_eq(cfg.help, true);
}

Test(config, help_still_refuses_an_unknown_option)
{
    expect_error(load("--help", "--frobnicate"),
                 "unknown option '--frobnicate' (see ferry start --help)");
}

/* ---- precedence: flags > environment > file > defaults -------------------------------------- */

typedef struct precedence_case {
    const char *flag, *env, *key;
    const char *file_value, *env_value, *flag_value;
    size_t offset;
    kind_t kind;
    uint64_t default_n, file_n, env_n, flag_n;
    const char *default_s;
} precedence_case_t;

static const precedence_case_t precedence[] = {
    {"--port", "FERRY_PORT", "port", "4001", "4002", "4003", OFF(port), K_UINT, 3000, 4001, 4002,
     4003, NULL},
    {"--max-pool-size", "FERRY_MAX_POOL_SIZE", "max-pool-size", "2", "3", "4", OFF(max_pool_size),
     K_UINT, 6, 2, 3, 4, NULL},
    {"--max-body-size", "FERRY_MAX_BODY_SIZE", "max_body_size", "1k", "2k", "3k",
     OFF(max_body_size), K_SIZE, 1u << 30, 1024, 2048, 3072, NULL},
    {"--powered-by", "FERRY_POWERED_BY", "powered_by", "false", "true", "false", OFF(powered_by),
     K_BOOL, 1, 0, 1, 0, NULL},
    {"--log-level", "FERRY_LOG_LEVEL", "log_level", "warn", "error", "debug", OFF(log_level), K_STR,
     0, 0, 0, 0, "info"},
    {"--environment", "FERRY_ENVIRONMENT", "environment", "development", "production",
     "development", OFF(environment), K_STR, 0, 0, 0, 0, "production"},
};

static void expect_precedence_value(const precedence_case_t *c, uint64_t n, const char *s,
                                    const char *stage)
{
    const char *field = (const char *)&cfg + c->offset;
    switch (c->kind) {
    case K_STR:
        cr_assert_str_eq(*(char *const *)field, s, "%s %s", c->flag, stage);
        break;
    case K_UINT:
        cr_assert_eq(*(const unsigned *)field, n, "%s %s", c->flag, stage);
        break;
    case K_SIZE:
        cr_assert_eq(*(const uint64_t *)field, n, "%s %s", c->flag, stage);
        break;
    case K_BOOL:
        cr_assert_eq(*(const bool *)field, n != 0, "%s %s", c->flag, stage);
        break;
    }
}

Test(config, precedence_flags_over_environment_over_file_over_defaults)
{
    for (size_t i = 0; i < sizeof precedence / sizeof precedence[0]; i++) {
        const precedence_case_t *c = &precedence[i];
        unlink(json_path);
        unsetenv(c->env);
        cr_assert_eq(load_none(), 0, "%s", err);
        expect_precedence_value(c, c->default_n, c->default_s, "default");

        char text[128];
        snprintf(text, sizeof text, "{\"%s\": \"%s\"}", c->key, c->file_value);
        write_json(text);
        cr_assert_eq(load_none(), 0, "%s", err);
        expect_precedence_value(c, c->file_n, c->file_value, "file over default");

        setenv(c->env, c->env_value, 1);
        cr_assert_eq(load_none(), 0, "%s", err);
        expect_precedence_value(c, c->env_n, c->env_value, "environment over file");

        cr_assert_eq(load(c->flag, c->flag_value), 0, "%s", err);
        expect_precedence_value(c, c->flag_n, c->flag_value, "flag over environment");

        unlink(json_path);
        cr_assert_eq(load(c->flag, c->flag_value), 0, "%s", err);
        expect_precedence_value(c, c->flag_n, c->flag_value, "flag over environment, no file");
        unsetenv(c->env);
    }
}

Test(config, each_option_takes_its_own_highest_source)
{
    write_json("{\"port\": 5001, \"max_pool_size\": 5, \"log_level\": \"warn\"}");
    setenv("FERRY_MAX_POOL_SIZE", "4", 1);
    setenv("FERRY_LOG_LEVEL", "error", 1);
    cr_assert_eq(load("--log-level", "debug"), 0, "%s", err);
    cr_assert_eq(cfg.port, 5001);
    cr_assert_eq(cfg.max_pool_size, 4);
    cr_assert_str_eq(cfg.log_level, "debug");
    cr_assert_eq(cfg.start_timeout, 90);
}

Test(config, bad_file_value_is_reported_even_when_a_flag_overrides_it)
{
    write_json("{\"port\": \"abc\"}");
    char want[300];
    snprintf(want, sizeof want, "%s: key 'port': 'abc' is not a non-negative integer", json_path);
    expect_error(load("--port", "4000"), want);
}

/* ---- sizes -------------------------------------------------------------------------------- */

Test(config, size_plain_bytes)
{
    uint64_t v = 1;
    cr_assert_eq(fy_parse_size("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(fy_parse_size("12345", &v), 0);
    cr_assert_eq(v, 12345);
}

Test(config, size_suffixes_are_powers_of_1024_in_either_case)
{
    uint64_t v;
    cr_assert_eq(fy_parse_size("3k", &v), 0);
    cr_assert_eq(v, 3ull << 10);
    cr_assert_eq(fy_parse_size("3K", &v), 0);
    cr_assert_eq(v, 3ull << 10);
    cr_assert_eq(fy_parse_size("5m", &v), 0);
    cr_assert_eq(v, 5ull << 20);
    cr_assert_eq(fy_parse_size("5M", &v), 0);
    cr_assert_eq(v, 5ull << 20);
    cr_assert_eq(fy_parse_size("2g", &v), 0);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(fy_parse_size("2G", &v), 0);
    cr_assert_eq(v, 2ull << 30);
}

Test(config, size_takes_an_optional_trailing_b)
{
    uint64_t v;
    cr_assert_eq(fy_parse_size("4kb", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(fy_parse_size("4KB", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(fy_parse_size("7b", &v), -EINVAL, "a b needs a k, m or g before it");
}

Test(config, size_largest_values)
{
    uint64_t v;
    cr_assert_eq(fy_parse_size("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(fy_parse_size("17179869183g", &v), 0);
    cr_assert_eq(v, 17179869183ull << 30);
}

Test(config, size_refuses_overflow)
{
    uint64_t v = 42;
    cr_assert_eq(fy_parse_size("18446744073709551616", &v), -EINVAL);
    cr_assert_eq(fy_parse_size("99999999999999999999999", &v), -EINVAL);
    cr_assert_eq(fy_parse_size("17179869184g", &v), -EINVAL);
    cr_assert_eq(fy_parse_size("17592186044416m", &v), -EINVAL);
    cr_assert_eq(fy_parse_size("18014398509481984k", &v), -EINVAL);
    cr_assert_eq(v, 42, "failed parses leave the output alone");
}

Test(config, size_refuses_bad_suffixes_and_junk)
{
    static const char *const bad[] = {"",    "k",    "10x", "10t", "10kk", "10kbb", "10 k", " 10",
                                      "10 ", "1.5m", "-1",  "-1k", "+1",   "0x10",  "10bk", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 42;
        cr_assert_eq(fy_parse_size(bad[i], &v), -EINVAL, "'%s'", bad[i]);
        cr_assert_eq(v, 42);
    }
}

Test(config, size_refuses_null)
{
    uint64_t v;
    cr_assert_eq(fy_parse_size(NULL, &v), -EINVAL);
}

/* ---- bad values: the exact messages -------------------------------------------------------- */

Test(config, negative_number_in_a_flag)
{
    expect_error(load("--port", "-1"), "--port: '-1' is not a non-negative integer");
}

Test(config, negative_number_in_the_environment)
{
    setenv("FERRY_MAX_POOL_SIZE", "-3", 1);
    expect_error(load_none(), "FERRY_MAX_POOL_SIZE: '-3' is not a non-negative integer");
}

Test(config, negative_number_in_the_file)
{
    write_json("{\"max_pool_size\": -3}");
    expect_file_error(load_none(),
                      "key 'max_pool_size': must be a string, a non-negative integer or a boolean");
}

Test(config, negative_number_as_a_string_in_the_file)
{
    write_json("{\"max-pool-size\": \"-3\"}");
    expect_file_error(load_none(), "key 'max-pool-size': '-3' is not a non-negative integer");
}

Test(config, non_numbers_are_refused)
{
    static const char *const bad[] = {"abc", "",     "12abc", " 12", "12 ",
                                      "+12", "0x10", "1.5",   "1e3", "3k"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "--max-requests: '%s' is not a non-negative integer", bad[i]);
        expect_error(load("--max-requests", bad[i]), want);
    }
}

Test(config, number_overflowing_64_bits_is_refused)
{
    expect_error(load("--max-requests", "99999999999999999999"),
                 "--max-requests: '99999999999999999999' is not a non-negative integer");
}

Test(config, number_past_32_bits_is_out_of_range)
{
    expect_error(load("--pool-idle-time", "4294967296"),
                 "--pool-idle-time: 4294967296 is out of range (0..4294967295)");
    cr_assert_eq(load("--pool-idle-time", "4294967295"), 0, "%s", err);
    cr_assert_eq(cfg.pool_idle_time, 4294967295u);
}

Test(config, port_range_is_1_to_65535)
{
    expect_error(load("--port", "0"), "--port: 0 is out of range (1..65535)");
    expect_error(load("--port", "65536"), "--port: 65536 is out of range (1..65535)");
    cr_assert_eq(load("--port", "1"), 0);
    cr_assert_eq(load("--port", "65535"), 0);
    cr_assert_eq(cfg.port, 65535);
}

Test(config, range_limits_of_numeric_options)
{
    expect_error(load("--max-pool-size", "0"), "--max-pool-size: 0 is out of range (1..10000)");
    expect_error(load("--max-pool-size", "10001"),
                 "--max-pool-size: 10001 is out of range (1..10000)");
    expect_error(load("--start-timeout", "0"), "--start-timeout: 0 is out of range (1..86400)");
    expect_error(load("--spawn-method", "fork"),
                 "--spawn-method: 'fork' is not one of auto|smart|direct");
    expect_error(load("--max-request-time", "86401"),
                 "--max-request-time: 86401 is out of range (0..86400)");
    expect_error(load("--header-timeout", "0"), "--header-timeout: 0 is out of range (1..86400)");
    expect_error(load("--body-timeout", "0"), "--body-timeout: 0 is out of range (1..86400)");
    expect_error(load("--keepalive-timeout", "0"),
                 "--keepalive-timeout: 0 is out of range (1..86400)");
    expect_error(load("--max-header-count", "0"),
                 "--max-header-count: 0 is out of range (1..10000)");
    expect_error(load("--min-instances", "10001"),
                 "--min-instances: 10001 is out of range (0..10000)");
}

Test(config, memory_limit_is_0_to_1048576_mb_from_every_source)
{
    cr_assert_eq(load("--memory-limit", "1048576"), 0, "%s", err);
    cr_assert_eq(cfg.memory_limit, 1048576);
    expect_error(load("--memory-limit", "1048577"),
                 "--memory-limit: 1048577 is out of range (0..1048576)");
    expect_error(load("--memory-limit", "64m"),
                 "--memory-limit: '64m' is not a non-negative integer");
    cr_assert_eq(setenv("FERRY_MEMORY_LIMIT", "-1", 1), 0);
    expect_error(load_none(), "FERRY_MEMORY_LIMIT: '-1' is not a non-negative integer");
    cr_assert_eq(unsetenv("FERRY_MEMORY_LIMIT"), 0);
    write_json("{\"memory_limit\": 2000000}");
    expect_file_error(load_none(), "key 'memory_limit': 2000000 is out of range (0..1048576)");
    write_json("{\"memory_limit\": 256}");
    cr_assert_eq(setenv("FERRY_MEMORY_LIMIT", "128", 1), 0);
    cr_assert_eq(load("--memory-limit", "64"), 0, "%s", err);
    cr_assert_eq(cfg.memory_limit, 64, "the flag wins");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.memory_limit, 128, "the environment wins over the file");
    cr_assert_eq(unsetenv("FERRY_MEMORY_LIMIT"), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.memory_limit, 256);
}

/* The three options behind session protocol v2 keep the defaults the front and the pool document
 * (src/http/http.h, src/pool/pool.h), so `ferry start` without them behaves as those say. */
Test(config, session_options_default_to_what_the_front_and_the_pool_document)
{
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, FY_HTTP_DEFAULT_SESSION_PROTOCOL);
    cr_assert_eq((uint64_t)cfg.response_buffer_max * 1024 * 1024,
                 FY_HTTP_DEFAULT_RESPONSE_BUFFER_MAX);
    cr_assert_eq(cfg.dispatch_ahead, 2);
}

Test(config, session_protocol_is_1_or_2_from_every_source)
{
    cr_assert_eq(load("--session-protocol", "1"), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, 1);
    cr_assert_eq(load("--session-protocol", "2"), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, 2);
    expect_error(load("--session-protocol", "0"), "--session-protocol: 0 is out of range (1..2)");
    expect_error(load("--session-protocol", "3"), "--session-protocol: 3 is out of range (1..2)");
    expect_error(load("--session-protocol", "v2"),
                 "--session-protocol: 'v2' is not a non-negative integer");
    cr_assert_eq(setenv("FERRY_SESSION_PROTOCOL", "9", 1), 0);
    expect_error(load_none(), "FERRY_SESSION_PROTOCOL: 9 is out of range (1..2)");
    cr_assert_eq(unsetenv("FERRY_SESSION_PROTOCOL"), 0);
    write_json("{\"session_protocol\": 0}");
    expect_file_error(load_none(), "key 'session_protocol': 0 is out of range (1..2)");
    write_json("{\"session_protocol\": 1}");
    cr_assert_eq(setenv("FERRY_SESSION_PROTOCOL", "2", 1), 0);
    cr_assert_eq(load("--session-protocol", "1"), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, 1, "the flag wins");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, 2, "the environment wins over the file");
    cr_assert_eq(unsetenv("FERRY_SESSION_PROTOCOL"), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.session_protocol, 1);
}

Test(config, response_buffer_max_is_0_to_1048576_mb_from_every_source)
{
    cr_assert_eq(load("--response-buffer-max", "1048576"), 0, "%s", err);
    cr_assert_eq(cfg.response_buffer_max, 1048576);
    cr_assert_eq(load("--response-buffer-max", "0"), 0, "%s", err);
    cr_assert_eq(cfg.response_buffer_max, 0);
    expect_error(load("--response-buffer-max", "1048577"),
                 "--response-buffer-max: 1048577 is out of range (0..1048576)");
    expect_error(load("--response-buffer-max", "64m"),
                 "--response-buffer-max: '64m' is not a non-negative integer");
    cr_assert_eq(setenv("FERRY_RESPONSE_BUFFER_MAX", "-1", 1), 0);
    expect_error(load_none(), "FERRY_RESPONSE_BUFFER_MAX: '-1' is not a non-negative integer");
    cr_assert_eq(unsetenv("FERRY_RESPONSE_BUFFER_MAX"), 0);
    write_json("{\"response_buffer_max\": 2000000}");
    expect_file_error(load_none(),
                      "key 'response_buffer_max': 2000000 is out of range (0..1048576)");
    write_json("{\"response-buffer-max\": 256}");
    cr_assert_eq(setenv("FERRY_RESPONSE_BUFFER_MAX", "32", 1), 0);
    cr_assert_eq(load("--response-buffer-max", "16"), 0, "%s", err);
    cr_assert_eq(cfg.response_buffer_max, 16, "the flag wins");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.response_buffer_max, 32, "the environment wins over the file");
    cr_assert_eq(unsetenv("FERRY_RESPONSE_BUFFER_MAX"), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.response_buffer_max, 256);
}

Test(config, dispatch_ahead_is_0_to_the_pools_maximum_from_every_source)
{
    char max[16], past[16], past_msg[128];
    snprintf(max, sizeof max, "%u", FY_POOL_DISPATCH_AHEAD_MAX);
    snprintf(past, sizeof past, "%u", FY_POOL_DISPATCH_AHEAD_MAX + 1);
    cr_assert_eq(load("--dispatch-ahead", max), 0, "%s", err);
    cr_assert_eq(cfg.dispatch_ahead, FY_POOL_DISPATCH_AHEAD_MAX);
    cr_assert_eq(load("--dispatch-ahead", "0"), 0, "%s", err);
    cr_assert_eq(cfg.dispatch_ahead, 0);
    snprintf(past_msg, sizeof past_msg, "--dispatch-ahead: %s is out of range (0..%s)", past, max);
    expect_error(load("--dispatch-ahead", past), past_msg);
    expect_error(load("--dispatch-ahead", "two"),
                 "--dispatch-ahead: 'two' is not a non-negative integer");
    cr_assert_eq(setenv("FERRY_DISPATCH_AHEAD", past, 1), 0);
    snprintf(past_msg, sizeof past_msg, "FERRY_DISPATCH_AHEAD: %s is out of range (0..%s)", past,
             max);
    expect_error(load_none(), past_msg);
    cr_assert_eq(unsetenv("FERRY_DISPATCH_AHEAD"), 0);
    write_json("{\"dispatch_ahead\": 1}");
    cr_assert_eq(setenv("FERRY_DISPATCH_AHEAD", "2", 1), 0);
    cr_assert_eq(load("--dispatch-ahead", "3"), 0, "%s", err);
    cr_assert_eq(cfg.dispatch_ahead, 3, "the flag wins");
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.dispatch_ahead, 2, "the environment wins over the file");
    cr_assert_eq(unsetenv("FERRY_DISPATCH_AHEAD"), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.dispatch_ahead, 1);
}

Test(config, zero_is_allowed_where_it_means_unlimited_or_never)
{
    cr_assert_eq(load("--pool-idle-time", "0", "--max-request-queue-size", "0", "--max-queue-time",
                      "0", "--max-requests", "0", "--memory-limit", "0", "--max-request-time", "0", "--shutdown-timeout",
                      "0", "--max-body-size", "0", "--body-buffer-threshold", "0",
                      "--min-instances", "0"),
                 0, "%s", err);
    cr_assert_eq(cfg.max_body_size, 0);
    cr_assert_eq(cfg.min_instances, 0);
}

Test(config, size_limits_of_size_options)
{
    expect_error(load("--max-uri-length", "15"),
                 "--max-uri-length: 15 is out of range (16..1048576)");
    expect_error(load("--max-uri-length", "1025k"),
                 "--max-uri-length: 1025k is out of range (16..1048576)");
    cr_assert_eq(load("--max-uri-length", "1m"), 0, "%s", err);
    expect_error(load("--max-header-size", "255"),
                 "--max-header-size: 255 is out of range (256..122880)");
    expect_error(load("--max-header-size", "121k"),
                 "--max-header-size: 121k is out of range (256..122880)");
    cr_assert_eq(load("--max-header-size", "120k"), 0, "%s", err);
    expect_error(load("--body-buffer-threshold", "2g"),
                 "--body-buffer-threshold: 2g is out of range (0..1073741824)");
    expect_error(load("--max-body-size", "8589934592g"),
                 "--max-body-size: 8589934592g is out of range (0..9223372036854775807)");
}

Test(config, bad_size_suffix_in_each_source)
{
    expect_error(load("--max-body-size", "12x"),
                 "--max-body-size: '12x' is not a size (digits with an optional k, m or g)");
    setenv("FERRY_MAX_BODY_SIZE", "1.5m", 1);
    expect_error(load_none(),
                 "FERRY_MAX_BODY_SIZE: '1.5m' is not a size (digits with an optional k, m or g)");
    unsetenv("FERRY_MAX_BODY_SIZE");
    write_json("{\"max_body_size\": \"10t\"}");
    expect_file_error(
        load_none(),
        "key 'max_body_size': '10t' is not a size (digits with an optional k, m or g)");
}

Test(config, size_overflow_is_not_a_size)
{
    expect_error(
        load("--max-body-size", "17179869184g"),
        "--max-body-size: '17179869184g' is not a size (digits with an optional k, m or g)");
}

Test(config, unknown_environment_name)
{
    expect_error(load("--environment", "staging"),
                 "--environment: 'staging' is not one of production|development");
    setenv("FERRY_ENVIRONMENT", "Production", 1);
    expect_error(load_none(),
                 "FERRY_ENVIRONMENT: 'Production' is not one of production|development");
}

Test(config, unknown_app_type)
{
    expect_error(load("--app-type", "php"), "--app-type: 'php' is not one of auto|rack|wsgi|c");
    expect_error(load("--app-type", ""), "--app-type: '' is not one of auto|rack|wsgi|c");
    expect_error(load("--app-type", "rackx"), "--app-type: 'rackx' is not one of auto|rack|wsgi|c");
}

Test(config, every_app_type_is_accepted)
{
    static const char *const types[] = {"auto", "rack", "wsgi", "c"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(load("--app-type", types[i]), 0, "%s", err);
        cr_assert_str_eq(cfg.app_type, types[i]);
    }
}

Test(config, unknown_log_level)
{
    expect_error(
        load("--log-level", "loud"),
        "--log-level: 'loud' is not a log level (alert, error, warn, notice, info, debug)");
}

Test(config, log_levels_are_case_insensitive)
{
    static const char *const levels[] = {"alert", "error", "warn", "notice", "info", "DEBUG"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(load("--log-level", levels[i]), 0, "%s", err);
        cr_assert_str_eq(cfg.log_level, levels[i]);
    }
}

Test(config, booleans_in_every_spelling)
{
    static const char *const yes[] = {"1", "true", "yes", "on", "TRUE", "Yes"};
    static const char *const no[] = {"0", "false", "no", "off", "FALSE", "Off"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(load("--powered-by", no[i]), 0, "%s", err);
        cr_assert_eq(cfg.powered_by, false, "%s", no[i]);
        cr_assert_eq(load("--powered-by", yes[i]), 0, "%s", err);
        cr_assert_eq(cfg.powered_by, true, "%s", yes[i]);
    }
}

Test(config, bad_boolean)
{
    expect_error(load("--powered-by", "maybe"),
                 "--powered-by: 'maybe' is not a boolean (true/false)");
    setenv("FERRY_POWERED_BY", "", 1);
    expect_error(load_none(), "FERRY_POWERED_BY: '' is not a boolean (true/false)");
}

Test(config, min_instances_larger_than_max_pool_size)
{
    expect_error(load("--min-instances", "7"),
                 "min-instances (7) is larger than max-pool-size (6)");
    cr_assert_eq(load("--min-instances", "7", "--max-pool-size", "7"), 0, "%s", err);
}

Test(config, min_instances_check_uses_the_merged_values)
{
    write_json("{\"max_pool_size\": 2}");
    setenv("FERRY_MIN_INSTANCES", "3", 1);
    expect_error(load_none(), "min-instances (3) is larger than max-pool-size (2)");
}

/* ---- bad command lines --------------------------------------------------------------------- */

Test(config, unknown_long_option)
{
    expect_error(load("--frobnicate", "1"),
                 "unknown option '--frobnicate' (see ferry start --help)");
}

Test(config, unknown_long_option_with_a_value)
{
    expect_error(load("--frobnicate=1"), "unknown option '--frobnicate' (see ferry start --help)");
}

Test(config, unknown_short_option)
{
    expect_error(load("-p", "80"), "unknown option '-p' (see ferry start --help)");
}

Test(config, double_dash_alone_is_an_unknown_option)
{
    expect_error(load("--"), "unknown option '--' (see ferry start --help)");
}

Test(config, option_prefix_is_not_accepted)
{
    expect_error(load("--max-pool", "3"), "unknown option '--max-pool' (see ferry start --help)");
}

Test(config, missing_value_at_the_end)
{
    expect_error(load("--port"), "option '--port' needs a value");
}

Test(config, empty_value_after_equals_is_a_bad_value)
{
    expect_error(load("--port="), "--port: '' is not a non-negative integer");
}

Test(config, two_app_dirs)
{
    char want[200];
    snprintf(want, sizeof want, "more than one APP_DIR: '%s' and 'other'", app_dir);
    expect_error(load("other"), want);
}

Test(config, empty_app_dir_is_refused)
{
    char *argv[] = {(char *)"start", (char *)"", NULL};
    expect_error(load_argv(2, argv), "APP_DIR is empty");
}

Test(config, error_message_is_one_line)
{
    cr_assert_eq(load("--port", "x"), -EINVAL);
    cr_assert_null(strchr(err, '\n'));
    cr_assert_lt(strlen(err), sizeof err);
}

Test(config, error_message_is_truncated_to_the_buffer)
{
    char small[16];
    char *argv[] = {(char *)"start", app_dir, (char *)"--frobnicate", NULL};
    cfg_loaded = true;
    cr_assert_eq(fy_start_config_load(&cfg, 3, argv, small, sizeof small), -EINVAL);
    cr_assert_str_eq(small, "unknown option ");
}

/* ---- bad ferry.json ------------------------------------------------------------------------ */

Test(config, unknown_key_in_file)
{
    write_json("{\"port\": 3001, \"no_such_key\": 1}");
    expect_file_error(load_none(), "unknown key 'no_such_key' (see ferry start --help)");
}

Test(config, help_key_is_unknown_in_file)
{
    write_json("{\"help\": true}");
    expect_file_error(load_none(), "unknown key 'help' (see ferry start --help)");
}

Test(config, malformed_json_names_file_and_line)
{
    write_json("{\n  \"port\": 3001,\n  \"max_pool_size\": \n");
    cr_assert_eq(load_none(), -EINVAL);
    char want[200];
    snprintf(want, sizeof want, "%s: line 4: ", json_path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
}

Test(config, trailing_garbage_is_malformed)
{
    write_json("{\"port\": 3001} x");
    cr_assert_eq(load_none(), -EINVAL);
    char want[200];
    snprintf(want, sizeof want, "%s: line 1: ", json_path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
}

Test(config, empty_file_is_malformed)
{
    write_json("");
    cr_assert_eq(load_none(), -EINVAL);
    cr_assert_eq(strncmp(err, json_path, strlen(json_path)), 0, "%s", err);
}

Test(config, integer_too_big_for_json_is_malformed)
{
    write_json("{\"max_requests\": 100000000000000000000000}");
    cr_assert_eq(load_none(), -EINVAL);
    cr_assert_eq(strncmp(err, json_path, strlen(json_path)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "too big"), "%s", err);
}

Test(config, json_integer_out_of_range)
{
    write_json("{\"port\": 70000}");
    expect_file_error(load_none(), "key 'port': 70000 is out of range (1..65535)");
}

Test(config, top_level_array)
{
    write_json("[{\"port\": 3001}]");
    expect_file_error(load_none(), "the top level must be an object");
}

Test(config, top_level_scalar)
{
    write_json("3001");
    cr_assert_eq(load_none(), -EINVAL);
    char want[200];
    snprintf(want, sizeof want, "%s: line 1: ", json_path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
}

Test(config, wrong_json_types)
{
    static const char *const values[] = {"1.5", "null", "[1]", "{\"a\": 1}", "-1"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"max_pool_size\": %s}", values[i]);
        write_json(text);
        expect_file_error(load_none(), "key 'max_pool_size': must be a string, a non-negative "
                                       "integer or a boolean");
    }
}

Test(config, json_boolean_for_a_number)
{
    write_json("{\"port\": true}");
    expect_file_error(load_none(), "key 'port': 'true' is not a non-negative integer");
}

Test(config, json_integer_for_an_enum)
{
    write_json("{\"environment\": 1}");
    expect_file_error(load_none(), "key 'environment': '1' is not one of production|development");
}

Test(config, ferry_json_that_is_a_directory_is_refused)
{
    cr_assert_eq(mkdir(json_path, 0700), 0);
    expect_file_error(load_none(), "not a regular file");
}

Test(config, ferry_json_symlink_to_a_file_is_followed)
{
    char target[128];
    snprintf(target, sizeof target, "%s/real.json", app_dir);
    FILE *f = fopen(target, "w");
    cr_assert_not_null(f);
    fputs("{\"port\": 4444}", f);
    fclose(f);
    cr_assert_eq(symlink("real.json", json_path), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.port, 4444);
}

Test(config, dangling_ferry_json_symlink_is_like_no_file)
{
    cr_assert_eq(symlink("nowhere.json", json_path), 0);
    cr_assert_eq(load_none(), 0, "%s", err);
    cr_assert_eq(cfg.port, 3000);
}

Test(config, ferry_json_symlink_loop_names_the_reason)
{
    cr_assert_eq(symlink("ferry.json", json_path), 0);
    expect_file_error(load_none(), "Too many levels of symbolic links");
}

Test(config, app_dir_that_is_a_file_has_no_ferry_json)
{
    char file[128];
    snprintf(file, sizeof file, "%s/plain", app_dir);
    int fd = open(file, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    char *argv[] = {(char *)"start", file, NULL};
    cr_assert_eq(load_argv(2, argv), 0, "%s", err);
}

Test(config, file_error_stops_at_the_first_bad_key)
{
    write_json("{\"port\": \"x\", \"max_pool_size\": \"y\"}");
    expect_file_error(load_none(), "key 'port': 'x' is not a non-negative integer");
}

/* ---- disposal ------------------------------------------------------------------------------ */

Test(config, dispose_after_a_failed_load_frees_everything)
{
    write_json("{\"socket\": \"/tmp/s\", \"port\": \"bad\"}");
    cr_assert_eq(load("--log-file", "/tmp/x"), -EINVAL);
    fy_start_config_dispose(&cfg);
    cr_assert_null(cfg.app_dir);
    cr_assert_null(cfg.socket);
    cfg_loaded = false;
}

Test(config, dispose_twice_is_harmless)
{
    cr_assert_eq(load_none(), 0);
    fy_start_config_dispose(&cfg);
    fy_start_config_dispose(&cfg);
    cfg_loaded = false;
}

/* ---- host:port ------------------------------------------------------------------------------ */

Test(config, host_port_parses_v4_and_bracketed_v6)
{
    char host[64];
    unsigned port = 0;
    cr_assert_eq(fy_parse_host_port("127.0.0.1:9100", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 9100);
    cr_assert_eq(fy_parse_host_port("[::1]:65535", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 65535);
}

Test(config, host_port_refuses_what_is_not_host_colon_port)
{
    static const char *const bad[] = {"", "9100", "127.0.0.1", "127.0.0.1:", ":9100",
                                      "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999999999",
                                      "127.0.0.1:9a", "::1:9100", "[::1]9100", "[::1", "[]:1"};
    char host[64];
    unsigned port = 7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(fy_parse_host_port(bad[i], host, sizeof host, &port), -EINVAL, "%s", bad[i]);
    cr_assert_eq(port, 7, "nothing written on failure");
    char small[4];
    cr_assert_eq(fy_parse_host_port("127.0.0.1:80", small, sizeof small, &port), -EINVAL);
}
