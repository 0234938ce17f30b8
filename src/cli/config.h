/* The configuration of `ferry start`: one table of options, each settable by a flag
 * (--max-pool-size 6 or --max-pool-size=6), an environment variable (FERRY_MAX_POOL_SIZE) and a
 * key of APP_DIR/ferry.json ("max_pool_size" or "max-pool-size"). Precedence: flags > environment
 * > file > defaults. Pure apart from reading the environment and the file; used by cmd_start. */
#ifndef FY_CLI_CONFIG_H
#define FY_CLI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct fy_start_config {
    char *app_dir;                 /* as given (default "."); owned */
    char *address;
    unsigned port;
    bool port_set;                 /* by any source, not the default */
    char *socket;                  /* NULL = no Unix listener */
    char *environment;             /* production | development */
    char *app_type;                /* auto | rack | wsgi | c */
    char *app;                     /* WSGI MODULE:CALLABLE or MODULE:FACTORY(); "" = none */
    char *startup_file;            /* "" = the detection's file */
    char *python;                  /* "" = chosen by fy_interp_choose */
    char *ruby;                    /* "" = chosen by fy_interp_choose */
    char *user, *group;            /* "" = chosen by fy_users_choose */
    bool drop_core;                /* a root core becomes the user too */
    unsigned max_pool_size;
    unsigned min_instances;
    unsigned pool_idle_time;       /* seconds */
    unsigned max_request_queue_size;
    unsigned max_queue_time;       /* seconds */
    unsigned max_requests;
    unsigned memory_limit;         /* MiB of PSS per worker; 0 = no limit */
    unsigned max_request_time;     /* seconds */
    unsigned start_timeout;        /* seconds */
    char *spawn_method;            /* auto | smart | direct */
    unsigned max_preloader_idle_time; /* seconds; 0 = never */
    unsigned refork_after;            /* requests of one worker before a re-fork; 0 = off */
    unsigned session_protocol;     /* 1 or 2: the newest session protocol spoken with workers */
    unsigned dispatch_ahead;       /* requests written ahead into a busy v2 worker; 0 = off; default 2 */
    unsigned shutdown_timeout;     /* seconds */
    unsigned header_timeout;       /* seconds */
    unsigned body_timeout;         /* seconds */
    unsigned keepalive_timeout;    /* seconds */
    uint64_t max_body_size;        /* bytes */
    uint64_t max_uri_length;
    uint64_t max_header_size;
    unsigned max_header_count;
    uint64_t body_buffer_threshold;
    unsigned response_buffer_max;  /* MiB of one response buffered for a slow client; 0 = none */
    char *trusted_proxy;           /* "" = none */
    char *metrics_address;         /* "HOST:PORT" of the Prometheus endpoint; "" = off */
    bool proxy_protocol;           /* trusted peers send PROXY headers */
    char *health_path;             /* answered by the front; "" = none */
    char *log_file;                /* "-" = stderr */
    char *access_log;              /* "" = off, "-" = stdout */
    char *access_log_format;       /* combined | json */
    unsigned slow_request_threshold; /* ms; 0 = off */
    bool request_id_header;
    char *pid_file;                /* "" = none */
    char *log_level;
    bool powered_by;
    bool help;                     /* --help was given: print fy_start_config_usage, exit 0 */
} fy_start_config_t;

/* Fills <cfg> from the defaults, APP_DIR/ferry.json, the environment and <argv> (argv[0] is the
 * command name), in rising precedence. Returns 0; or -EINVAL after writing one line naming the
 * problem into <err> (<err_len> bytes): an unknown option or key, a missing value, a bad value,
 * more than one APP_DIR or an empty one, malformed JSON. A missing ferry.json is not an error;
 * an unreadable one is. With --help (or -h) only the option names are checked: <cfg> holds the
 * defaults and help is set, whatever the file, the environment and the flags' values say. Free
 * with fy_start_config_dispose in every case. */
int fy_start_config_load(fy_start_config_t *cfg, int argc, char **argv, char *err, size_t err_len);
void fy_start_config_dispose(fy_start_config_t *cfg);

/* Writes the --help text: every option with its environment variable and default. */
void fy_start_config_usage(FILE *out);

/* Parses a byte size: digits with an optional k/K, m/M or g/G suffix (powers of 1024). Returns 0
 * or -EINVAL (empty, junk, overflow). */
int fy_parse_size(const char *s, uint64_t *out);

/* Parses "HOST:PORT" or "[V6]:PORT" (PORT 1..65535) into <host> (<host_cap> bytes, brackets
 * dropped) and *port. The host is not resolved: the listener checks it is an IP literal. Returns
 * 0 or -EINVAL. */
int fy_parse_host_port(const char *s, char *host, size_t host_cap, unsigned *port);

#endif
