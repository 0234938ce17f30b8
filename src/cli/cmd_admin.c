/* `ferry status`, `ferry restart` and `ferry stop`: find the running instances through their
 * instance directories ($TMPDIR/ferry.<pid>.<random>/, docs/operations.md, "The instance
 * directory") and talk to each one's admin server (src/admin/admin_server.h) with the password
 * stored there. */
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

#include "cli/admin_status.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "core/log.h"
#include "ipc/channel.h"
#include "ipc/instdir.h"
#include "ipc/sock.h"

#define ADMIN_TIMEOUT_MS 10000
#define REPLY_MAX (16u << 20)
#define MAX_INSTANCES 256

typedef struct instance {
    pid_t pid;
    char dir[PATH_MAX];
    char admin[FY_ADDRESS_MAX];
    char url[300];
    char app_root[PATH_MAX];
} instance_t;

/* The options a command accepts besides --pid and --help. */
enum { OPT_JSON = 1, OPT_TIMEOUT = 2, OPT_WAIT = 4, OPT_STATUS_VIEWS = 8 };

typedef struct admin_args {
    bool json;
    bool help;
    bool wait;          /* restart only */
    bool prometheus;    /* status only: the metrics text */
    bool slow;          /* status only: the slow and failed request rings */
    bool timeout_set;
    pid_t pid;          /* 0: every instance */
    unsigned timeout_s; /* stop and restart */
} admin_args_t;

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

/* Returns 0, or 2 after printing what is wrong. */
static int parse_args(const char *cmd, int argc, char **argv, unsigned allowed, admin_args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        char name[32];
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (name_len >= sizeof name) {
            fprintf(stderr, "ferry %s: unknown option '%s' (see ferry %s --help)\n", cmd, arg, cmd);
            return 2;
        }
        memcpy(name, arg, name_len);
        name[name_len] = '\0';
        if (eq)
            value = eq + 1;
        unsigned long v;
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            a->help = true;
        } else if ((allowed & OPT_JSON) && strcmp(name, "--json") == 0 && !eq) {
            a->json = true;
        } else if ((allowed & OPT_STATUS_VIEWS) && strcmp(name, "--prometheus") == 0 && !eq) {
            a->prometheus = true;
        } else if ((allowed & OPT_STATUS_VIEWS) && strcmp(name, "--slow") == 0 && !eq) {
            a->slow = true;
        } else if ((allowed & OPT_WAIT) && strcmp(name, "--wait") == 0 && !eq) {
            a->wait = true;
        } else if (strcmp(name, "--pid") == 0 ||
                   ((allowed & OPT_TIMEOUT) && strcmp(name, "--timeout") == 0)) {
            if (value == NULL && i + 1 < argc)
                value = argv[++i];
            bool is_pid = strcmp(name, "--pid") == 0;
            if (!parse_uint(value, is_pid ? INT_MAX : 86400, &v) || (is_pid && v == 0)) {
                fprintf(stderr, "ferry %s: %s needs %s, got '%s'\n", cmd, name,
                        is_pid ? "a process id" : "a number of seconds (0..86400)",
                        value ? value : "");
                return 2;
            }
            if (is_pid) {
                a->pid = (pid_t)v;
            } else {
                a->timeout_s = (unsigned)v;
                a->timeout_set = true;
            }
        } else {
            fprintf(stderr, "ferry %s: unknown option '%s' (see ferry %s --help)\n", cmd, arg, cmd);
            return 2;
        }
    }
    return 0;
}

static bool process_gone(pid_t pid)
{
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return true;
    /* a zombie has stopped: its parent has not reaped it yet */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren != NULL && paren[1] == ' ' && paren[2] == 'Z';
}

static void copy_str(char *dst, size_t cap, const json_t *v)
{
    const char *s = json_string_value(v);
    snprintf(dst, cap, "%s", s ? s : "");
}

/* Fills <out> with the live instances of our uid, oldest pid first. Returns the count or -errno. */
static int find_instances(const char *cmd, instance_t *out, size_t max)
{
    /* the count below says it once; the module's own info line per directory would repeat it */
    fy_log_set_level(FY_LOG_WARN);
    int stale = fy_instdir_clean_stale();
    if (stale > 0)
        fprintf(stderr, "ferry %s: removed %d instance director%s left by dead instances\n", cmd,
                stale, stale == 1 ? "y" : "ies");
    const char *base = fy_instdir_base();
    DIR *d = opendir(base);
    if (d == NULL)
        return -errno;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        pid_t pid = fy_instdir_name_pid(e->d_name);
        if (pid <= 0)
            continue;
        instance_t *in = &out[n];
        memset(in, 0, sizeof *in);
        in->pid = pid;
        snprintf(in->dir, sizeof in->dir, "%s/%s", base, e->d_name);
        struct stat st;
        /* Our own instances; root sees every user's (an instance that runs its app as another
         * user gives its directory to that user, docs/deploying.md "Users"). */
        if (lstat(in->dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
            (st.st_uid != getuid() && getuid() != 0) || process_gone(pid))
            continue;
        char props[PATH_MAX + 32];
        snprintf(props, sizeof props, "%s/properties.json", in->dir);
        json_t *doc = json_load_file(props, 0, NULL);
        if (doc != NULL) {
            copy_str(in->admin, sizeof in->admin, json_object_get(doc, "admin"));
            copy_str(in->url, sizeof in->url, json_object_get(doc, "url"));
            copy_str(in->app_root, sizeof in->app_root, json_object_get(doc, "app_root"));
            json_decref(doc);
        }
        n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && out[j - 1].pid > out[j].pid; j--) {
            instance_t tmp = out[j];
            out[j] = out[j - 1];
            out[j - 1] = tmp;
        }
    }
    return (int)n;
}

/* Sends <command> to <in>'s admin server; returns the JSON reply, or NULL with <err> filled. */
static json_t *ask_quietly(const instance_t *in, const char *command, char *err, size_t cap)
{
    if (in->admin[0] == '\0') {
        snprintf(err, cap, "no admin socket in %s/properties.json (still starting, or a ferry "
                 "older than `ferry status`)", in->dir);
        return NULL;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/admin_password", in->dir);
    char password[FY_SECRET_HEX_LEN + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t pw_len = fd >= 0 ? read(fd, password, sizeof password - 1) : -1;
    int read_errno = errno;
    if (fd >= 0)
        close(fd);
    if (pw_len <= 0) {
        snprintf(err, cap, "cannot read %s: %s", path,
                 pw_len == 0 ? "empty" : strerror(read_errno));
        return NULL;
    }
    fd = fy_unix_connect(in->admin, ADMIN_TIMEOUT_MS);
    if (fd < 0) {
        snprintf(err, cap, "cannot connect to its admin socket %s: %s", in->admin, strerror(-fd));
        return NULL;
    }
    fy_channel_t ch;
    fy_channel_init(&ch, fd, ADMIN_TIMEOUT_MS);
    char *reply = NULL;
    size_t reply_len = 0;
    int rc = fy_channel_write_scalar(&ch, password, (size_t)pw_len);
    if (rc == 0)
        rc = fy_channel_write_strings(&ch, 1, command);
    if (rc == 0)
        rc = fy_channel_read_scalar(&ch, &reply, &reply_len, REPLY_MAX);
    close(fd);
    if (rc != 1) {
        /* the server closes without a reply on a wrong password, another uid, or when busy */
        snprintf(err, cap, "no answer from its admin server: %s",
                 rc == 0 || rc == -EPIPE || rc == -ECONNRESET ? "connection closed (see its log)"
                                                              : strerror(-rc));
        free(reply);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(reply, reply_len, 0, &jerr);
    free(reply);
    if (doc == NULL)
        snprintf(err, cap, "its admin server sent bad JSON: %s", jerr.text);
    return doc;
}

/* ask_quietly, saying on stderr why there is no reply ("ferry <cmd>: pid N (app): why"). */
static json_t *ask(const char *cmd, const instance_t *in, const char *command)
{
    char err[2 * PATH_MAX + 200];
    json_t *doc = ask_quietly(in, command, err, sizeof err);
    if (doc == NULL)
        fprintf(stderr, "ferry %s: pid %d (%s): %s\n", cmd, (int)in->pid, in->app_root, err);
    return doc;
}

/* Finds the instances the arguments select. Returns the count (0 after printing why), or -1. */
static int select_instances(const char *cmd, const admin_args_t *a, instance_t *list, size_t max)
{
    int n = find_instances(cmd, list, max);
    if (n < 0) {
        fprintf(stderr, "ferry %s: cannot read %s: %s\n", cmd, fy_instdir_base(), strerror(-n));
        return -1;
    }
    if (a->pid != 0) {
        for (int i = 0; i < n; i++) {
            if (list[i].pid == a->pid) {
                list[0] = list[i];
                return 1;
            }
        }
        fprintf(stderr, "ferry %s: no running ferry with pid %d (looked for %s/ferry.%d.*)\n", cmd,
                (int)a->pid, fy_instdir_base(), (int)a->pid);
        return 0;
    }
    if (n == 0)
        fprintf(stderr, "ferry %s: no running ferry instance of this user (looked for "
                        "%s/ferry.<pid>.*; a ferry started with another TMPDIR keeps its "
                        "directory there)\n", cmd, fy_instdir_base());
    return n;
}

/* For the commands that act on one instance: like select_instances, but with several running
 * and no --pid it lists them and returns their count (the caller exits 2). */
static int select_one_instance(const char *cmd, const admin_args_t *a, instance_t *list,
                               size_t max)
{
    int n = select_instances(cmd, a, list, max);
    if (n > 1) {
        fprintf(stderr, "ferry %s: %d instances are running; say which with --pid:\n", cmd, n);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  --pid %d  %s  %s\n", (int)list[i].pid, list[i].app_root,
                    list[i].url);
    }
    return n;
}

static void status_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry status [--json | --prometheus | --slow [--json]] [--pid PID]\n\n"
            "Shows each running ferry of this user: the app, the URL, the workers (state,\n"
            "requests served, age, memory), the request queue and boot errors.\n"
            "Instances are found in $TMPDIR (default /tmp) as ferry.<pid>.<random>/; the\n"
            "directories of dead instances are removed on the way.\n\n"
            "  --json     one JSON document per instance, one per line (docs/operations.md)\n"
            "  --slow     the last 100 requests slower than --slow-request-threshold and\n"
            "             the last 100 that ferry failed (5xx it made), with their timelines\n"
            "  --prometheus  the metrics in the Prometheus text format, as its\n"
            "             --metrics-address serves them (docs/operations.md, \"Monitoring\")\n"
            "  --pid PID  only the instance whose `ferry start` has this pid (default: all)\n");
}

int fy_cmd_status(int argc, char **argv)
{
    admin_args_t a = {0};
    int rc = parse_args("status", argc, argv, OPT_JSON | OPT_STATUS_VIEWS, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        status_usage(stdout);
        return 0;
    }
    if (a.prometheus && (a.json || a.slow)) {
        fprintf(stderr, "ferry status: --prometheus goes alone (see ferry status --help)\n");
        return 2;
    }
    instance_t *list = fy_xcalloc(MAX_INSTANCES, sizeof *list);
    int n = select_instances("status", &a, list, MAX_INSTANCES);
    int status = n > 0 ? 0 : 1;
    for (int i = 0; i < n; i++) {
        json_t *doc = ask("status", &list[i], a.prometheus ? "metrics" : a.slow ? "slow" : "status");
        if (doc == NULL) {
            status = 1;
            continue;
        }
        if (a.prometheus) {
            const char *text = json_string_value(json_object_get(doc, "prometheus"));
            if (n > 1)
                printf("# ferry pid %d (%s)\n", (int)list[i].pid, list[i].app_root);
            fputs(text ? text : "", stdout);
        } else if (a.json) {
            json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
        } else {
            if (i > 0)
                fputc('\n', stdout);
            if (a.slow)
                fy_status_print_slow(stdout, doc);
            else
                fy_status_print(stdout, doc);
        }
        json_decref(doc);
    }
    free(list);
    return status;
}

static void stop_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry stop [--pid PID] [--timeout SECONDS]\n\n"
            "Shuts a running ferry down gracefully, as SIGTERM does: it stops accepting,\n"
            "lets requests in flight finish, stops the workers and exits. Waits until the\n"
            "process is gone.\n\n"
            "  --pid PID          the instance to stop; needed when several are running\n"
            "  --timeout SECONDS  how long to wait for it to exit (default 60); exit status 1\n"
            "                     when it is still running then\n");
}

int fy_cmd_stop(int argc, char **argv)
{
    admin_args_t a = {.timeout_s = 60};
    int rc = parse_args("stop", argc, argv, OPT_TIMEOUT, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        stop_usage(stdout);
        return 0;
    }
    instance_t *list = fy_xcalloc(MAX_INSTANCES, sizeof *list);
    int n = select_one_instance("stop", &a, list, MAX_INSTANCES);
    int status = n > 1 ? 2 : 1;
    if (n == 1) {
        json_t *doc = ask("stop", &list[0], "stop");
        if (doc != NULL) {
            json_decref(doc);
            printf("ferry stop: pid %d is shutting down (%s)\n", (int)list[0].pid,
                   list[0].app_root);
            fflush(stdout);
            struct timespec step = {0, 50 * 1000 * 1000};
            for (unsigned waited = 0; !process_gone(list[0].pid); waited += 50) {
                if (waited >= a.timeout_s * 1000u) {
                    fprintf(stderr, "ferry stop: pid %d is still running after %u s\n",
                            (int)list[0].pid, a.timeout_s);
                    break;
                }
                nanosleep(&step, NULL);
            }
            if (process_gone(list[0].pid)) {
                printf("ferry stop: pid %d stopped\n", (int)list[0].pid);
                status = 0;
            }
        }
    }
    free(list);
    return status;
}

static void restart_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry restart [--pid PID] [--wait [--timeout SECONDS]]\n\n"
            "Replaces the workers of a running ferry without dropping a request (a rolling\n"
            "restart): one at a time, a new worker is started and, once it is ready, an old one\n"
            "is stopped (a busy one after its current request). The new workers load the app\n"
            "as it is now. Returns once the restart has begun. Touching APP_DIR/tmp/restart.txt\n"
            "restarts the same way on the next request.\n\n"
            "  --pid PID          the instance to restart; needed when several are running\n"
            "  --wait             wait until every worker is replaced: exit status 0 then, 1 when\n"
            "                     the new workers failed to boot (the old ones keep serving)\n"
            "  --timeout SECONDS  with --wait: give up after this long, exit status 1\n"
            "                     (default 120)\n");
}

/* Polls <in>'s status until its restart is over. Returns the exit status: 0 when every worker
 * was replaced, 1 when the restart stopped on a boot failure, timed out, or the instance went
 * away (each said on stderr). */
static int wait_restart(const instance_t *in, unsigned timeout_s)
{
    struct timespec step = {0, 200 * 1000 * 1000};
    for (unsigned waited_ms = 0;; waited_ms += 200) {
        json_t *doc = ask("restart", in, "status");
        if (doc == NULL)
            return 1;
        const json_t *pool = json_object_get(doc, "pool");
        int old = (int)json_integer_value(json_object_get(pool, "old_workers"));
        int status = -1;
        if (json_is_true(json_object_get(json_object_get(doc, "ferry"), "stopping"))) {
            fprintf(stderr, "ferry restart: pid %d is shutting down; the restart is over\n",
                    (int)in->pid);
            status = 1;
        } else if (!json_is_true(json_object_get(pool, "restarting"))) {
            if (json_is_true(json_object_get(pool, "restart_failed"))) {
                const json_t *be = json_object_get(pool, "boot_error");
                const char *summary = json_string_value(json_object_get(be, "summary"));
                const char *id = json_string_value(json_object_get(be, "error_id"));
                fprintf(stderr, "ferry restart: pid %d: the restart stopped: the new workers "
                        "failed to boot%s%s%s%s%s; %d old worker%s keep%s serving\n",
                        (int)in->pid, summary ? ": " : "", summary ? summary : "",
                        id ? " (error id " : "", id ? id : "", id ? ", details in its log)" : "",
                        old, old == 1 ? "" : "s", old == 1 ? "s" : "");
                status = 1;
            } else {
                printf("ferry restart: pid %d: restart done: every worker replaced "
                       "(generation %d)\n", (int)in->pid,
                       (int)json_integer_value(json_object_get(pool, "generation")));
                status = 0;
            }
        } else if (waited_ms >= timeout_s * 1000u) {
            fprintf(stderr, "ferry restart: pid %d: still restarting after %u s (%d old "
                    "worker%s left); it goes on\n", (int)in->pid, timeout_s, old,
                    old == 1 ? "" : "s");
            status = 1;
        }
        json_decref(doc);
        if (status >= 0)
            return status;
        nanosleep(&step, NULL);
    }
}

int fy_cmd_restart(int argc, char **argv)
{
    admin_args_t a = {.timeout_s = 120};
    int rc = parse_args("restart", argc, argv, OPT_TIMEOUT | OPT_WAIT, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        restart_usage(stdout);
        return 0;
    }
    if (a.timeout_set && !a.wait) {
        fprintf(stderr, "ferry restart: --timeout goes with --wait (see ferry restart --help)\n");
        return 2;
    }
    instance_t *list = fy_xcalloc(MAX_INSTANCES, sizeof *list);
    int n = select_one_instance("restart", &a, list, MAX_INSTANCES);
    int status = n > 1 ? 2 : 1;
    json_t *doc = n == 1 ? ask("restart", &list[0], "restart") : NULL;
    if (doc != NULL) {
        if (!json_is_true(json_object_get(doc, "restarting"))) {
            const char *why = json_string_value(json_object_get(doc, "error"));
            fprintf(stderr, "ferry restart: pid %d (%s): not restarted: %s\n", (int)list[0].pid,
                    list[0].app_root, why ? why : "refused");
        } else {
            printf("ferry restart: pid %d is restarting its workers (%s)\n", (int)list[0].pid,
                   list[0].app_root);
            fflush(stdout);
            status = a.wait ? wait_restart(&list[0], a.timeout_s) : 0;
        }
        json_decref(doc);
    }
    free(list);
    return status;
}
