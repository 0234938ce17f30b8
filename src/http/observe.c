/* What `ferry status` shows of requests (docs/operations.md, "ferry status" and "Slow
 * requests"): the requests in flight and queued, read from the connection list and the pool's
 * queue when asked, and the rings of the last slow and failed requests. */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/alloc.h"
#include "http/http_conn.h"

void fy_http_conn_timeline(const fy_http_conn_t *c, uint64_t now_ms, fy_http_timeline_t *t)
{
    /* marks in order; a missing one (0) takes the next one's value, so its stage lasts 0 and
     * the time goes to the stage before it */
    uint64_t mark[7] = {c->accepted_ms ? c->accepted_ms : c->started_ms, c->started_ms,
                        c->head_ms, c->complete_ms, c->checkout_ms, c->first_byte_ms, now_ms};
    for (int i = 5; i >= 0; i--) {
        if (mark[i] == 0 || mark[i] > mark[i + 1])
            mark[i] = mark[i + 1];
    }
    t->connect_ms = mark[1] - mark[0];
    t->head_ms = mark[2] - mark[1];
    t->body_ms = mark[3] - mark[2];
    t->queue_ms = mark[4] - mark[3];
    t->app_ms = mark[5] - mark[4];
    t->send_ms = mark[6] - mark[5];
    t->total_ms = mark[6] - mark[0];
}

/* The method and the path without its query, cut to fit. */
static void copy_target(const fy_http_conn_t *c, char method[16], char path[FY_HTTP_RECORD_PATH_MAX])
{
    snprintf(method, 16, "%s", c->req.method ? c->req.method : "-");
    size_t len = 0;
    const char *url = "";
    if (c->req.method != NULL) {
        url = fy_http_request_url(&c->req);
        len = c->req.url_len;
        const char *q = memchr(url, '?', len);
        if (q != NULL)
            len = (size_t)(q - url);
    }
    if (len >= FY_HTTP_RECORD_PATH_MAX)
        len = FY_HTTP_RECORD_PATH_MAX - 1;
    memcpy(path, url, len);
    path[len] = '\0';
}

void fy_http_conn_record(fy_http_conn_t *c, bool failed, uint64_t now_ms, const char *why)
{
    fy_http_server_t *srv = c->srv;
    unsigned k = failed ? 1 : 0;
    fy_http_request_record_t *r = &srv->records[k][srv->record_next[k]];
    srv->record_next[k] = (srv->record_next[k] + 1) % FY_HTTP_RECORDS;
    if (srv->record_count[k] < FY_HTTP_RECORDS)
        srv->record_count[k]++;
    memset(r, 0, sizeof *r);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    r->unix_ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    fy_http_conn_timeline(c, now_ms, &r->timeline);
    r->status = c->status;
    r->worker_pid = c->worker_pid;
    copy_target(c, r->method, r->path);
    snprintf(r->request_id, sizeof r->request_id, "%s", c->request_id);
    snprintf(r->reason, sizeof r->reason, "%s", fy_http_why_label((fy_http_why_t)c->why));
    if (why != NULL)
        snprintf(r->why, sizeof r->why, "%s", why);
}

size_t fy_http_server_records(const fy_http_server_t *srv, bool failed,
                              fy_http_request_record_t *out, size_t max)
{
    unsigned k = failed ? 1 : 0;
    size_t n = srv->record_count[k] < max ? srv->record_count[k] : max;
    for (size_t i = 0; i < n; i++) {
        unsigned at = (srv->record_next[k] + FY_HTTP_RECORDS - 1 - (unsigned)i) % FY_HTTP_RECORDS;
        out[i] = srv->records[k][at];
    }
    return n;
}

static void fill_info(const fy_http_conn_t *c, uint64_t now, fy_http_request_info_t *i)
{
    memset(i, 0, sizeof *i);
    copy_target(c, i->method, i->path);
    i->age_ms = c->started_ms && now > c->started_ms ? now - c->started_ms : 0;
    i->bytes_sent = c->body_sent;
    snprintf(i->request_id, sizeof i->request_id, "%s", c->request_id);
}

static int by_start(const void *a, const void *b)
{
    const fy_http_conn_t *x = *(const fy_http_conn_t *const *)a;
    const fy_http_conn_t *y = *(const fy_http_conn_t *const *)b;
    return x->started_ms < y->started_ms ? -1 : x->started_ms > y->started_ms;
}

size_t fy_http_server_list_requests(const fy_http_server_t *srv, bool queued,
                                    fy_http_request_info_t *out, size_t max)
{
    uint64_t now = uv_now(srv->loop);
    size_t n = 0;
    if (queued) {
        /* the pool's own order: requeued requests are at the head, where they are served */
        for (const fy_pool_waiter_t *w = fy_pool_queue_next(srv->pool, NULL); w != NULL;
             w = fy_pool_queue_next(srv->pool, w), n++) {
            if (n >= max)
                continue;
            const fy_http_conn_t *c = w->data;
            fill_info(c, now, &out[n]);
            out[n].position = (unsigned)n + 1;
        }
        return n;
    }
    const fy_http_conn_t **held = fy_xcalloc(srv->conn_count ? srv->conn_count : 1, sizeof *held);
    for (const fy_http_conn_t *c = srv->conns; c != NULL; c = c->next) {
        if (c->up != NULL && c->up->worker != NULL)
            held[n++] = c;
    }
    qsort(held, n, sizeof *held, by_start);
    for (size_t i = 0; i < n && i < max; i++) {
        fill_info(held[i], now, &out[i]);
        out[i].worker_pid = held[i]->worker_pid;
    }
    free(held);
    return n;
}
