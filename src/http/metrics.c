/* The Prometheus text (exposition format 0.0.4) of the front and the pool: see metrics.h and
 * docs/operations.md, "Monitoring". Built only when scraped or asked through the admin socket. */
#include "http/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "http/http_conn.h"
#include "ipc/procmem.h"

/* Per-worker memory gauges are written for at most this many workers (bounded cardinality). */
#define MAX_WORKER_SERIES 64

static const uint64_t duration_bounds_ms[] = {FY_HTTP_DURATION_BUCKETS_MS};

static const char *const method_names[] = {
#define FY_X(m) #m,
    FY_HTTP_METRIC_METHODS(FY_X)
#undef FY_X
};

static const struct {
    char kind;
    const char *label, *text;
} whys[] = {
#define FY_X(e, kind, label, text) {kind, label, text},
    FY_HTTP_WHYS(FY_X)
#undef FY_X
};

void fy_http_metrics_init(fy_http_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    fy_hist_init(&m->duration, duration_bounds_ms, FY_ARRAY_SIZE(duration_bounds_ms));
    fy_hist_init(&m->queue_wait, duration_bounds_ms, FY_ARRAY_SIZE(duration_bounds_ms));
    struct timeval tv;
    gettimeofday(&tv, NULL);
    m->started_unix_ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

fy_http_metric_method_t fy_http_metrics_method(const char *method)
{
    if (method == NULL)
        return FY_HTTP_M_OTHER;
    for (unsigned i = 0; i < FY_HTTP_M_OTHER; i++) {
        if (strcmp(method, method_names[i]) == 0)
            return (fy_http_metric_method_t)i;
    }
    return FY_HTTP_M_OTHER;
}

const char *fy_http_why_label(fy_http_why_t why)
{
    return (unsigned)why < FY_HTTP_WHY_COUNT ? whys[why].label : "";
}

char fy_http_why_kind(fy_http_why_t why)
{
    return (unsigned)why < FY_HTTP_WHY_COUNT ? whys[why].kind : 0;
}

const char *fy_http_why_text(fy_http_why_t why)
{
    return (unsigned)why < FY_HTTP_WHY_COUNT ? whys[why].text : "";
}

/* ---- rendering ------------------------------------------------------------------------- */

static void family(fy_http_buf_t *out, const char *name, const char *type, const char *help)
{
    fy_http_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(fy_http_buf_t *out, const char *name, const char *labels, uint64_t v)
{
    fy_http_buf_append_str(out, name);
    if (labels != NULL && labels[0] != '\0') {
        fy_http_buf_append(out, "{", 1);
        fy_http_buf_append_str(out, labels);
        fy_http_buf_append(out, "}", 1);
    }
    fy_http_buf_append(out, " ", 1);
    fy_http_buf_append_u64(out, v);
    fy_http_buf_append(out, "\n", 1);
}

/* A histogram of millisecond observations, in seconds: cumulative buckets, +Inf, sum, count. */
static void histogram(fy_http_buf_t *out, const char *name, const char *help, const fy_hist_t *h)
{
    family(out, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        fy_http_buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", name,
                            (double)h->bounds_ms[i] / 1000.0, (unsigned long long)cum);
    }
    cum += h->counts[h->nbounds];
    fy_http_buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    fy_http_buf_appendf(out, "%s_sum %.3f\n%s_count %llu\n", name, (double)h->sum_ms / 1000.0,
                        name, (unsigned long long)h->count);
}

static void why_family(fy_http_buf_t *out, const fy_http_metrics_t *m, char kind,
                       const char *name, const char *help)
{
    family(out, name, "counter", help);
    char labels[64];
    for (unsigned i = 0; i < FY_HTTP_WHY_COUNT; i++) {
        if (whys[i].kind != kind)
            continue;
        snprintf(labels, sizeof labels, "reason=\"%s\"", whys[i].label);
        sample_u64(out, name, labels, m->whys[i]);
    }
}

/* One gauge family with a sample per worker (label pid) whose memory was read. */
static void worker_memory(fy_http_buf_t *out, const char *name, const char *help,
                          const fy_pool_worker_info_t *info, const bool *have,
                          const uint64_t *kib, size_t n)
{
    char labels[32];
    family(out, name, "gauge", help);
    for (size_t i = 0; i < n; i++) {
        if (!have[i])
            continue;
        snprintf(labels, sizeof labels, "pid=\"%d\"", (int)info[i].pid);
        sample_u64(out, name, labels, kib[i] * 1024u);
    }
}

char *fy_http_metrics_text(const fy_http_server_t *srv)
{
    const fy_http_metrics_t *m = &srv->metrics;
    fy_http_buf_t out = {0};
    char labels[128];

    family(&out, "ferry_build_info", "gauge", "Always 1; the labels say which ferry runs.");
    sample_u64(&out, "ferry_build_info", "version=\"" FERRY_VERSION "\"", 1);
    family(&out, "ferry_start_time_seconds", "gauge",
           "When this ferry started, in seconds since the Unix epoch.");
    fy_http_buf_appendf(&out, "ferry_start_time_seconds %.3f\n",
                        (double)m->started_unix_ms / 1000.0);

    family(&out, "ferry_http_requests_total", "counter",
           "Finished requests (a response sent, or the client gone) by method and status class.");
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (unsigned meth = 0; meth < FY_HTTP_M_COUNT; meth++) {
        for (unsigned k = 0; k < 5; k++) {
            snprintf(labels, sizeof labels, "method=\"%s\",status=\"%s\"", method_names[meth],
                     classes[k]);
            sample_u64(&out, "ferry_http_requests_total", labels, m->requests[meth][k]);
        }
    }
    histogram(&out, "ferry_http_request_duration_seconds",
              "From a request's first byte (a new connection: its accept) to its last response "
              "byte.", &m->duration);
    histogram(&out, "ferry_http_queue_wait_seconds",
              "From a complete request to the worker that took it, or to its refusal from the "
              "queue.", &m->queue_wait);
    family(&out, "ferry_http_response_bytes_total", "counter",
           "Response body bytes sent to clients.");
    sample_u64(&out, "ferry_http_response_bytes_total", NULL, m->response_bytes);
    why_family(&out, m, 'r', "ferry_http_rejections_total",
               "Requests ferry answered itself without a worker, by reason.");
    why_family(&out, m, 'f', "ferry_http_failures_total",
               "Requests a worker had that ferry ended (502, 504, a cut response), by reason.");
    family(&out, "ferry_http_client_gone_total", "counter",
           "Requests whose client went away before their response was complete.");
    sample_u64(&out, "ferry_http_client_gone_total", NULL, m->whys[FY_HTTP_WHY_CLIENT_GONE]);
    family(&out, "ferry_http_connections", "gauge", "Open client connections.");
    sample_u64(&out, "ferry_http_connections", NULL, srv->conn_count);

    fy_pool_stats_t st;
    fy_pool_get_stats(srv->pool, &st);
    family(&out, "ferry_queue_length", "gauge", "Requests waiting for a worker.");
    sample_u64(&out, "ferry_queue_length", NULL, st.queued);
    family(&out, "ferry_queue_max", "gauge",
           "The most requests that may wait (max request queue size); 0: unlimited.");
    sample_u64(&out, "ferry_queue_max", NULL, st.max_request_queue_size);
    family(&out, "ferry_workers", "gauge", "Worker processes by state.");
    sample_u64(&out, "ferry_workers", "state=\"spawning\"", st.spawning);
    sample_u64(&out, "ferry_workers", "state=\"idle\"", st.idle);
    sample_u64(&out, "ferry_workers", "state=\"busy\"", st.busy);
    sample_u64(&out, "ferry_workers", "state=\"retiring\"", st.retiring);
    family(&out, "ferry_workers_max", "gauge", "The most workers alive at once (max pool size).");
    sample_u64(&out, "ferry_workers_max", NULL, st.max_pool_size);
    family(&out, "ferry_worker_spawns_total", "counter", "Worker spawn attempts by reason.");
    for (unsigned i = 0; i < FY_POOL_SPAWN_COUNT; i++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"",
                 fy_pool_spawn_reason_name((fy_pool_spawn_reason_t)i));
        sample_u64(&out, "ferry_worker_spawns_total", labels, st.spawns[i]);
    }
    family(&out, "ferry_worker_exits_total", "counter", "Workers that ended, by reason.");
    for (unsigned i = 0; i < FY_POOL_EXIT_COUNT; i++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"",
                 fy_pool_exit_reason_name((fy_pool_exit_reason_t)i));
        sample_u64(&out, "ferry_worker_exits_total", labels, st.exits[i]);
    }
    histogram(&out, "ferry_worker_spawn_duration_seconds",
              "From a worker's spawn to its ready message.", &st.spawn_duration);
    family(&out, "ferry_requests_served_total", "counter",
           "Requests workers served (check-ins of a started request).");
    sample_u64(&out, "ferry_requests_served_total", NULL, st.requests_done);

    fy_pool_worker_info_t info[MAX_WORKER_SERIES];
    size_t n = fy_pool_list_workers(srv->pool, info, MAX_WORKER_SERIES);
    if (n > MAX_WORKER_SERIES)
        n = MAX_WORKER_SERIES;
    uint64_t rss[MAX_WORKER_SERIES], pss[MAX_WORKER_SERIES];
    bool have[MAX_WORKER_SERIES];
    for (size_t i = 0; i < n; i++)
        have[i] = info[i].pid > 0 && strcmp(info[i].state, "spawning") != 0 &&
                  fy_procmem_read(info[i].pid, &rss[i], &pss[i]) == 0;
    worker_memory(&out, "ferry_worker_resident_memory_bytes",
                  "Resident memory (RSS) of each worker process.", info, have, rss, n);
    worker_memory(&out, "ferry_worker_proportional_memory_bytes",
                  "Proportional set size (PSS: shared pages divided among their users) of each "
                  "worker.", info, have, pss, n);
    uint64_t core_rss = 0, core_pss = 0;
    family(&out, "ferry_core_resident_memory_bytes", "gauge",
           "Resident memory (RSS) of the ferry core process.");
    if (fy_procmem_read(getpid(), &core_rss, &core_pss) == 0)
        sample_u64(&out, "ferry_core_resident_memory_bytes", NULL, core_rss * 1024u);
    fy_http_buf_reserve(&out, 1);
    out.data[out.len] = '\0';
    return out.data;
}
