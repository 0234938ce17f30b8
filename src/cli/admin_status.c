/* The status document and its human rendering: see admin_status.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/admin_status.h"
#include "core/alloc.h"
#include "ipc/procmem.h"

#define MAX_WORKERS_LISTED 1024

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
        uint64_t rss = 0, pss = 0;
        bool have_memory = info[i].pid > 0 && fy_procmem_read(info[i].pid, &rss, &pss) == 0;
        json_t *w = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:i}", "pid", (int)info[i].pid,
                              "state", info[i].state, "requests", (json_int_t)info[i].requests,
                              "age_ms", (json_int_t)info[i].age_ms, "idle_ms",
                              (json_int_t)info[i].idle_ms, "generation",
                              (json_int_t)info[i].generation, "protocol",
                              (int)info[i].protocol);
        if (w == NULL)
            continue;
        json_object_set_new(w, "rss_kib", have_memory ? json_integer((json_int_t)rss) : json_null());
        json_object_set_new(w, "pss_kib", have_memory ? json_integer((json_int_t)pss) : json_null());
        json_array_append_new(list, w);
    }
    free(info);
    return list;
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
    json_object_set_new(pool, "restart_failed", json_boolean(stats.restart_failed));
    json_object_set_new(pool, "memory_limit_kib", json_integer((json_int_t)src->memory_limit_kib));
    json_object_set_new(pool, "memory_limit_replacements",
                        json_integer((json_int_t)stats.memory_limit_replacements));
    const fy_app_error_t *err = fy_pool_boot_error(src->pool);
    json_object_set_new(pool, "boot_error",
                        err ? json_pack("{s:s, s:s}", "summary", err->summary, "error_id",
                                        err->error_id)
                            : json_null());
    json_t *doc = json_object();
    json_object_set_new(doc, "ferry", core);
    json_object_set_new(doc, "app", app);
    json_object_set_new(doc, "pool", pool);
    json_object_set_new(doc, "workers", workers_json(src->pool));
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
    const json_t *err = json_object_get(pool, "boot_error");
    if (json_is_object(err))
        fprintf(out, "  boot error %s (error id %s)\n", str(err, "summary"), str(err, "error_id"));
    size_t n = json_array_size(workers);
    if (n == 0)
        return;
    fprintf(out, "\n  %-8s %-9s %9s %9s %9s %11s %11s %4s %5s\n", "pid", "state", "requests",
            "age", "idle", "RSS", "PSS", "gen", "proto");
    for (size_t i = 0; i < n; i++) {
        const json_t *w = json_array_get(workers, i);
        char age[32], idle[32], rss[32], pss[32];
        format_duration(age, sizeof age, (uint64_t)num(w, "age_ms"));
        if (strcmp(str(w, "state"), "idle") == 0)
            format_duration(idle, sizeof idle, (uint64_t)num(w, "idle_ms"));
        else
            snprintf(idle, sizeof idle, "-");
        format_kib(rss, sizeof rss, json_object_get(w, "rss_kib"));
        format_kib(pss, sizeof pss, json_object_get(w, "pss_kib"));
        char proto[8];
        snprintf(proto, sizeof proto, "v%d", (int)num(w, "protocol"));
        fprintf(out, "  %-8d %-9s %9" PRId64 " %9s %9s %11s %11s %4d %5s\n", (int)num(w, "pid"),
                str(w, "state"), (int64_t)num(w, "requests"), age, idle, rss, pss,
                (int)num(w, "generation"), num(w, "protocol") > 0 ? proto : "-");
    }
}
