/* The status document and its human rendering: see admin_status.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/admin_status.h"
#include "core/alloc.h"
#include "ipc/procmem.h"

#define MAX_WORKERS_LISTED 1024
/* `ferry status` lists this many of the oldest requests in flight, and of the queue's first. */
#define MAX_REQUESTS_LISTED 50

static json_t *workers_json(const fy_pool_t *pool)
{
    json_t *list = json_array();
    size_t n = fy_pool_list_workers(pool, NULL, 0);
    if (n > MAX_WORKERS_LISTED)
        n = MAX_WORKERS_LISTED;
    fy_pool_worker_info_t *info = fy_xcalloc(n ? n : 1, sizeof *info);
    n = fy_pool_list_workers(pool, info, n);
    if (n > MAX_WORKERS_LISTED)
        n = MAX_WORKERS_LISTED;
    for (size_t i = 0; i < n; i++) {
        fy_procmem_t mem;
        bool have_memory = info[i].pid > 0 && fy_procmem_read_all(info[i].pid, &mem) == 0;
        json_t *w = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:i}", "pid", (int)info[i].pid,
                              "state", info[i].state, "requests", (json_int_t)info[i].requests,
                              "age_ms", (json_int_t)info[i].age_ms, "idle_ms",
                              (json_int_t)info[i].idle_ms, "generation",
                              (json_int_t)info[i].generation, "protocol",
                              (int)info[i].protocol);
        if (w == NULL)
            continue;
        json_object_set_new(w, "rss_kib",
                            have_memory ? json_integer((json_int_t)mem.rss_kib) : json_null());
        json_object_set_new(w, "pss_kib",
                            have_memory ? json_integer((json_int_t)mem.pss_kib) : json_null());
        json_object_set_new(w, "uss_kib",
                            have_memory ? json_integer((json_int_t)mem.uss_kib) : json_null());
        json_object_set_new(w, "spawn_method", json_string(info[i].spawn_method));
        json_object_set_new(w, "spawn_ms", json_integer((json_int_t)info[i].spawn_ms));
        json_array_append_new(list, w);
    }
    free(info);
    return list;
}

/* The requests in flight (<queued> false) or queued, as {"count": N, "listed": [...]}: the
 * MAX_REQUESTS_LISTED oldest (the next in line first, for the queue). */
static json_t *requests_json(const fy_http_server_t *http, bool queued)
{
    fy_http_request_info_t *info = fy_xcalloc(MAX_REQUESTS_LISTED, sizeof *info);
    size_t total = fy_http_server_list_requests(http, queued, info, MAX_REQUESTS_LISTED);
    size_t n = total < MAX_REQUESTS_LISTED ? total : MAX_REQUESTS_LISTED;
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_object();
        if (queued)
            json_object_set_new(r, "position", json_integer((json_int_t)info[i].position));
        else
            json_object_set_new(r, "pid", json_integer(info[i].worker_pid));
        /* the path is the client's bytes: jansson refuses what is not UTF-8 */
        json_object_set_new(r, "method", json_string(info[i].method));
        json_t *path = json_string(info[i].path);
        json_object_set_new(r, "path", path ? path : json_string("(not UTF-8)"));
        json_object_set_new(r, "age_ms", json_integer((json_int_t)info[i].age_ms));
        if (!queued)
            json_object_set_new(r, "bytes_sent", json_integer((json_int_t)info[i].bytes_sent));
        json_object_set_new(r, "request_id", json_string(info[i].request_id));
        json_array_append_new(list, r);
    }
    free(info);
    json_t *doc = json_object();
    json_object_set_new(doc, "count", json_integer((json_int_t)total));
    json_object_set_new(doc, "more", json_integer((json_int_t)(total - n)));
    json_object_set_new(doc, "listed", list);
    return doc;
}

static json_t *timeline_json(const fy_http_timeline_t *t)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connect_ms",
                     (json_int_t)t->connect_ms, "head_ms", (json_int_t)t->head_ms, "body_ms",
                     (json_int_t)t->body_ms, "queue_ms", (json_int_t)t->queue_ms, "app_ms",
                     (json_int_t)t->app_ms, "send_ms", (json_int_t)t->send_ms, "total_ms",
                     (json_int_t)t->total_ms);
}

static json_t *records_json(const fy_http_server_t *http, bool failed)
{
    fy_http_request_record_t *rec = fy_xcalloc(FY_HTTP_RECORDS, sizeof *rec);
    size_t n = fy_http_server_records(http, failed, rec, FY_HTTP_RECORDS);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        const fy_http_request_record_t *r = &rec[i];
        json_t *o = json_object();
        json_object_set_new(o, "ended_at_ms", json_integer((json_int_t)r->unix_ms));
        json_object_set_new(o, "request_id", json_string(r->request_id));
        json_object_set_new(o, "method", json_string(r->method));
        json_t *path = json_string(r->path);
        json_object_set_new(o, "path", path ? path : json_string("(not UTF-8)"));
        json_object_set_new(o, "status", json_integer(r->status));
        json_object_set_new(o, "pid", json_integer(r->worker_pid));
        json_object_set_new(o, "timeline", timeline_json(&r->timeline));
        if (failed) {
            json_object_set_new(o, "reason", json_string(r->reason));
            json_t *why = json_string(r->why);
            json_object_set_new(o, "why", why ? why : json_string("(not UTF-8)"));
        }
        json_array_append_new(list, o);
    }
    free(rec);
    return list;
}

json_t *fy_status_build_slow(const fy_status_source_t *src)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(doc, "slow_request_threshold_ms",
                        json_integer((json_int_t)src->slow_request_threshold_ms));
    json_object_set_new(doc, "slow", records_json(src->http, false));
    json_object_set_new(doc, "failed", records_json(src->http, true));
    return doc;
}

json_t *fy_status_build(const fy_status_source_t *src)
{
    fy_pool_stats_t stats;
    fy_pool_get_stats(src->pool, &stats);
    uint64_t core_rss = 0, core_pss = 0;
    bool core_memory = fy_procmem_read(getpid(), &core_rss, &core_pss) == 0;
    json_t *core = json_pack("{s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:b}", "version", FERRY_VERSION,
                             "pid", (int)getpid(), "url", src->url, "environment",
                             src->environment, "instance_dir", src->instance_dir, "started_at",
                             (json_int_t)src->started_unix_s, "uptime_ms",
                             (json_int_t)src->uptime_ms, "stopping", src->stopping);
    json_t *app = json_pack("{s:s, s:s, s:s?, s:s?}", "root", src->app_root, "type",
                            src->app_type, "interpreter", src->interpreter,
                            "interpreter_source", src->interpreter_source);
    json_t *pool = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "max_pool_size",
        (json_int_t)src->max_pool_size, "min_instances", (json_int_t)src->min_instances,
        "max_request_queue_size", (json_int_t)src->max_request_queue_size, "spawning",
        (json_int_t)stats.spawning, "idle", (json_int_t)stats.idle, "busy",
        (json_int_t)stats.busy, "retiring", (json_int_t)stats.retiring, "queued",
        (json_int_t)stats.queued, "spawns_started", (json_int_t)stats.spawns_started,
        "boot_failures", (json_int_t)stats.boot_failures, "requests_done",
        (json_int_t)stats.requests_done, "connections",
        (json_int_t)fy_http_server_connection_count(src->http));
    if (core == NULL || app == NULL || pool == NULL) {
        /* a string that is not UTF-8 (an app root with odd bytes) */
        json_decref(core);
        json_decref(app);
        json_decref(pool);
        return NULL;
    }
    json_object_set_new(core, "rss_kib", core_memory ? json_integer((json_int_t)core_rss)
                                                     : json_null());
    json_object_set_new(pool, "generation", json_integer((json_int_t)stats.generation));
    json_object_set_new(pool, "restarting", json_boolean(stats.restarting));
    json_object_set_new(pool, "old_workers", json_integer((json_int_t)stats.old_workers));
    json_object_set_new(pool, "restarts", json_integer((json_int_t)stats.restarts));
    json_object_set_new(pool, "reforks", json_integer((json_int_t)stats.reforks));
    json_object_set_new(pool, "restart_failed", json_boolean(stats.restart_failed));
    json_object_set_new(pool, "memory_limit_kib", json_integer((json_int_t)src->memory_limit_kib));
    json_object_set_new(pool, "memory_limit_replacements",
                        json_integer((json_int_t)stats.memory_limit_replacements));
    const fy_app_error_t *err = fy_pool_boot_error(src->pool);
    json_object_set_new(pool, "boot_error",
                        err ? json_pack("{s:s, s:s}", "summary", err->summary, "error_id",
                                        err->error_id)
                            : json_null());
    fy_preloader_info_t pl;
    if (fy_pool_preloader_info(src->pool, &pl)) {
        fy_procmem_t mem;
        bool have_memory = pl.pid > 0 && fy_procmem_read_all(pl.pid, &mem) == 0;
        json_t *p = json_pack("{s:s, s:i, s:I, s:I, s:I, s:s}", "state", pl.state, "pid",
                              (int)pl.pid, "age_ms", (json_int_t)pl.age_ms, "starts",
                              (json_int_t)pl.starts, "forks", (json_int_t)pl.forks, "last_exit",
                              pl.last_exit);
        if (p != NULL) {
            json_object_set_new(p, "reforks", json_integer((json_int_t)pl.reforks));
            json_object_set_new(p, "reforking_from", json_integer((json_int_t)pl.reforking_from));
            json_object_set_new(p, "rss_kib", have_memory ? json_integer((json_int_t)mem.rss_kib)
                                                          : json_null());
            json_object_set_new(p, "pss_kib", have_memory ? json_integer((json_int_t)mem.pss_kib)
                                                          : json_null());
            json_object_set_new(p, "uss_kib", have_memory ? json_integer((json_int_t)mem.uss_kib)
                                                          : json_null());
        }
        json_object_set_new(pool, "spawn_method", json_string("smart"));
        json_object_set_new(pool, "preloader", p ? p : json_null());
    } else {
        json_object_set_new(pool, "spawn_method", json_string("direct"));
        json_object_set_new(pool, "preloader", json_null());
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "ferry", core);
    json_object_set_new(doc, "app", app);
    json_object_set_new(doc, "pool", pool);
    json_object_set_new(doc, "workers", workers_json(src->pool));
    json_t *reqs = json_object();
    json_object_set_new(reqs, "in_flight", requests_json(src->http, false));
    json_object_set_new(reqs, "queued", requests_json(src->http, true));
    json_object_set_new(doc, "requests", reqs);
    return doc;
}

/* ---- the human rendering ------------------------------------------------------------------ */

static json_int_t num(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "?";
}

/* "3d 4h", "2h 5m", "4m 10s", "12s" */
static void format_duration(char *out, size_t cap, uint64_t ms)
{
    uint64_t s = ms / 1000;
    if (s >= 86400)
        snprintf(out, cap, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, cap, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, cap, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(out, cap, "%" PRIu64 "s", s);
}

static void format_kib(char *out, size_t cap, const json_t *v)
{
    if (!json_is_integer(v))
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.1f MiB", (double)json_integer_value(v) / 1024.0);
}

static void print_workers(FILE *out, const json_t *workers, size_t n);
static void print_requests(FILE *out, const json_t *group, bool queued);

void fy_status_print(FILE *out, const json_t *doc)
{
    const json_t *core = json_object_get(doc, "ferry");
    const json_t *app = json_object_get(doc, "app");
    const json_t *pool = json_object_get(doc, "pool");
    const json_t *workers = json_object_get(doc, "workers");
    char up[32], mem[32];
    format_duration(up, sizeof up, (uint64_t)num(core, "uptime_ms"));
    format_kib(mem, sizeof mem, json_object_get(core, "rss_kib"));
    fprintf(out, "ferry %s, pid %d, up %s%s\n", str(core, "version"), (int)num(core, "pid"), up,
            json_is_true(json_object_get(core, "stopping")) ? ", SHUTTING DOWN" : "");
    fprintf(out, "  app        %s (%s, %s)\n", str(app, "root"), str(app, "type"),
            str(core, "environment"));
    if (json_is_string(json_object_get(app, "interpreter")))
        fprintf(out, "  %-10s %s (from %s)\n",
                strcmp(str(app, "type"), "rack") == 0 ? "ruby" : "python",
                str(app, "interpreter"), str(app, "interpreter_source"));
    fprintf(out, "  url        %s\n", str(core, "url"));
    fprintf(out, "  core       %s RSS, %d client connections\n", mem,
            (int)num(pool, "connections"));
    fprintf(out, "  workers    %d of max %d: %d busy, %d idle, %d spawning, %d stopping\n",
            (int)(num(pool, "busy") + num(pool, "idle") + num(pool, "spawning") +
                  num(pool, "retiring")),
            (int)num(pool, "max_pool_size"), (int)num(pool, "busy"), (int)num(pool, "idle"),
            (int)num(pool, "spawning"), (int)num(pool, "retiring"));
    fprintf(out, "  queue      %d waiting (max %d)\n", (int)num(pool, "queued"),
            (int)num(pool, "max_request_queue_size"));
    fprintf(out, "  requests   %" PRId64 " served; %" PRId64 " spawns, %" PRId64
                 " boot failures\n",
            (int64_t)num(pool, "requests_done"), (int64_t)num(pool, "spawns_started"),
            (int64_t)num(pool, "boot_failures"));
    if (num(pool, "memory_limit_kib") > 0) {
        char limit[32];
        format_kib(limit, sizeof limit, json_object_get(pool, "memory_limit_kib"));
        fprintf(out, "  memory     limit %s PSS per worker; %" PRId64 " workers replaced for it\n",
                limit, (int64_t)num(pool, "memory_limit_replacements"));
    }
    if (json_is_true(json_object_get(pool, "restarting")))
        fprintf(out, "  restart    rolling restart to generation %d: %d old workers left\n",
                (int)num(pool, "generation"), (int)num(pool, "old_workers"));
    else if (json_is_true(json_object_get(pool, "restart_failed")))
        fprintf(out, "  restart    the last rolling restart stopped: the new workers failed to "
                     "boot; %d old workers serve\n", (int)num(pool, "old_workers"));
    const json_t *pl = json_object_get(pool, "preloader");
    if (json_is_object(pl)) {
        char prss[32], ppss[32];
        format_kib(prss, sizeof prss, json_object_get(pl, "rss_kib"));
        format_kib(ppss, sizeof ppss, json_object_get(pl, "pss_kib"));
        if (num(pl, "pid") > 0)
            fprintf(out, "  preloader  pid %d, %s, %s RSS, %s PSS; %d workers forked%s\n",
                    (int)num(pl, "pid"), str(pl, "state"), prss, ppss, (int)num(pl, "forks"),
                    num(pl, "reforks") > 0 ? "; re-forked from a warmed worker" : "");
        else
            fprintf(out, "  preloader  off (starts on the next spawn)%s%s\n",
                    str(pl, "last_exit")[0] ? "; last one " : "",
                    str(pl, "last_exit")[0] ? str(pl, "last_exit") : "");
    } else {
        fprintf(out, "  spawning   direct (every worker loads the app)\n");
    }
    const json_t *err = json_object_get(pool, "boot_error");
    if (json_is_object(err))
        fprintf(out, "  boot error %s (error id %s)\n", str(err, "summary"), str(err, "error_id"));
    size_t n = json_array_size(workers);
    if (n > 0)
        print_workers(out, workers, n);
    print_requests(out, json_object_get(json_object_get(doc, "requests"), "in_flight"), false);
    print_requests(out, json_object_get(json_object_get(doc, "requests"), "queued"), true);
}

/* "1.5 KiB", "12 B" */
static void format_bytes(char *out, size_t cap, uint64_t b)
{
    if (b >= 1024u * 1024u)
        snprintf(out, cap, "%.1f MiB", (double)b / (1024.0 * 1024.0));
    else if (b >= 1024u)
        snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(out, cap, "%" PRIu64 " B", b);
}

/* "850 ms", "3.2 s" */
static void format_ms(char *out, size_t cap, uint64_t ms)
{
    if (ms < 1000)
        snprintf(out, cap, "%" PRIu64 " ms", ms);
    else
        snprintf(out, cap, "%.1f s", (double)ms / 1000.0);
}

static void print_requests(FILE *out, const json_t *group, bool queued)
{
    int count = (int)num(group, "count");
    if (count == 0)
        return;
    const json_t *list = json_object_get(group, "listed");
    fprintf(out, "\n  %s: %d request%s%s\n", queued ? "queued" : "in flight", count,
            count == 1 ? "" : "s", queued ? " (next in line first)" : " (oldest first)");
    if (queued)
        fprintf(out, "  %-8s %-7s %9s  %-32s  %s\n", "position", "method", "age", "request id",
                "path");
    else
        fprintf(out, "  %-8s %-7s %9s %10s  %-32s  %s\n", "pid", "method", "age", "sent",
                "request id", "path");
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_array_get(list, i);
        char age[32], sent[32];
        format_ms(age, sizeof age, (uint64_t)num(r, "age_ms"));
        if (queued) {
            fprintf(out, "  %-8d %-7s %9s  %-32s  %s\n", (int)num(r, "position"),
                    str(r, "method"), age, str(r, "request_id"), str(r, "path"));
        } else {
            format_bytes(sent, sizeof sent, (uint64_t)num(r, "bytes_sent"));
            fprintf(out, "  %-8d %-7s %9s %10s  %-32s  %s\n", (int)num(r, "pid"),
                    str(r, "method"), age, sent, str(r, "request_id"), str(r, "path"));
        }
    }
    if (num(group, "more") > 0)
        fprintf(out, "  ... and %d more\n", (int)num(group, "more"));
}

static void print_timeline(FILE *out, const json_t *t)
{
    fprintf(out, "total_ms=%" PRId64 " connect_ms=%" PRId64 " head_ms=%" PRId64
                 " body_ms=%" PRId64 " queue_ms=%" PRId64 " app_ms=%" PRId64
                 " send_ms=%" PRId64,
            (int64_t)num(t, "total_ms"), (int64_t)num(t, "connect_ms"),
            (int64_t)num(t, "head_ms"), (int64_t)num(t, "body_ms"), (int64_t)num(t, "queue_ms"),
            (int64_t)num(t, "app_ms"), (int64_t)num(t, "send_ms"));
}

void fy_status_print_slow(FILE *out, const json_t *doc)
{
    const json_t *slow = json_object_get(doc, "slow");
    const json_t *failed = json_object_get(doc, "failed");
    int threshold = (int)num(doc, "slow_request_threshold_ms");
    fprintf(out, "ferry pid %d\n", (int)num(doc, "pid"));
    if (threshold == 0)
        fprintf(out, "  slow requests: not recorded (--slow-request-threshold is 0)\n");
    else
        fprintf(out, "  slow requests (over %d ms): %zu, newest first\n", threshold,
                json_array_size(slow));
    for (size_t i = 0; i < json_array_size(slow); i++) {
        const json_t *r = json_array_get(slow, i);
        fprintf(out, "    %s %s %d pid=%d request_id=%s ", str(r, "method"), str(r, "path"),
                (int)num(r, "status"), (int)num(r, "pid"), str(r, "request_id"));
        print_timeline(out, json_object_get(r, "timeline"));
        fputc('\n', out);
    }
    fprintf(out, "  failed requests (5xx from ferry, cut responses): %zu, newest first\n",
            json_array_size(failed));
    for (size_t i = 0; i < json_array_size(failed); i++) {
        const json_t *r = json_array_get(failed, i);
        fprintf(out, "    %s %s %d %s pid=%d request_id=%s: %s\n      ", str(r, "method"),
                str(r, "path"), (int)num(r, "status"), str(r, "reason"), (int)num(r, "pid"),
                str(r, "request_id"), str(r, "why"));
        print_timeline(out, json_object_get(r, "timeline"));
        fputc('\n', out);
    }
}

static void print_workers(FILE *out, const json_t *workers, size_t n)
{
    fprintf(out, "\n  %-8s %-9s %9s %9s %9s %11s %11s %11s %4s %5s %-6s %8s\n", "pid", "state",
            "requests", "age", "idle", "RSS", "PSS", "USS", "gen", "proto", "spawn", "spawn_ms");
    for (size_t i = 0; i < n; i++) {
        const json_t *w = json_array_get(workers, i);
        char age[32], idle[32], rss[32], pss[32], uss[32];
        format_duration(age, sizeof age, (uint64_t)num(w, "age_ms"));
        if (strcmp(str(w, "state"), "idle") == 0)
            format_duration(idle, sizeof idle, (uint64_t)num(w, "idle_ms"));
        else
            snprintf(idle, sizeof idle, "-");
        format_kib(rss, sizeof rss, json_object_get(w, "rss_kib"));
        format_kib(pss, sizeof pss, json_object_get(w, "pss_kib"));
        format_kib(uss, sizeof uss, json_object_get(w, "uss_kib"));
        char proto[8];
        snprintf(proto, sizeof proto, "v%d", (int)num(w, "protocol"));
        fprintf(out, "  %-8d %-9s %9" PRId64 " %9s %9s %11s %11s %11s %4d %5s %-6s %8d\n",
                (int)num(w, "pid"), str(w, "state"), (int64_t)num(w, "requests"), age, idle, rss,
                pss, uss, (int)num(w, "generation"), num(w, "protocol") > 0 ? proto : "-",
                str(w, "spawn_method"), (int)num(w, "spawn_ms"));
    }
}
