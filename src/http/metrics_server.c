/* The Prometheus endpoint (--metrics-address, docs/operations.md "Monitoring"): a TCP listener
 * in the core's event loop, apart from the app's listeners, that answers `GET /metrics` (and
 * HEAD) with fy_http_metrics_text and anything else with 404 or 405. No worker is involved: a
 * saturated pool is still visible. Each connection carries one request, parsed by the front's own
 * strict parser (fy_http_request), and is closed after the answer; at most
 * FY_HTTP_METRICS_MAX_CLIENTS at once, each within FY_HTTP_METRICS_TIMEOUT_MS. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_conn.h"

#define FY_HTTP_METRICS_MAX_CLIENTS 16
#define FY_HTTP_METRICS_TIMEOUT_MS 10000
#define METRICS_READ_SIZE 4096

typedef struct metrics_client metrics_client_t;

struct fy_http_metrics_server {
    uv_tcp_t listener;
    fy_http_server_t *srv;   /* NULL once closed */
    fy_http_options_t opts;  /* the parser's limits: small, whatever the app's are */
    metrics_client_t *clients;
    unsigned client_count;
    bool closing, listener_closed;
    uint64_t scrapes;
};

struct metrics_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    fy_http_metrics_server_t *ms;
    metrics_client_t *prev, *next;
    fy_http_request_t req;
    fy_http_buf_t out;
    int open_handles;
    bool closing, answered;
    char rbuf[METRICS_READ_SIZE];
};

static void maybe_free(fy_http_metrics_server_t *ms)
{
    if (ms->closing && ms->listener_closed && ms->client_count == 0)
        free(ms);
}

static void on_client_closed(uv_handle_t *h)
{
    metrics_client_t *cl = h->data;
    if (--cl->open_handles > 0)
        return;
    fy_http_metrics_server_t *ms = cl->ms;
    fy_http_request_dispose(&cl->req);
    fy_http_buf_dispose(&cl->out);
    free(cl);
    ms->client_count--;
    maybe_free(ms);
}

static void close_client(metrics_client_t *cl)
{
    if (cl->closing)
        return;
    cl->closing = true;
    fy_http_metrics_server_t *ms = cl->ms;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        ms->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->tcp, on_client_closed);
    uv_close((uv_handle_t *)&cl->timer, on_client_closed);
}

static void on_written(uv_write_t *wr, int status)
{
    (void)status;
    close_client(wr->data);
}

/* Queues the response in cl->out and closes after it. */
static void answer(metrics_client_t *cl)
{
    cl->answered = true;
    uv_read_stop((uv_stream_t *)&cl->tcp);
    cl->write_req.data = cl;
    uv_buf_t buf = uv_buf_init(cl->out.data, (unsigned)cl->out.len);
    if (uv_write(&cl->write_req, (uv_stream_t *)&cl->tcp, &buf, 1, on_written) < 0)
        close_client(cl);
}

static void answer_error(metrics_client_t *cl, int status, const char *title, bool is_head)
{
    cl->out.len = 0;
    fy_http_error_response(status, is_head, false, false, title, NULL, &cl->out);
    answer(cl);
}

static void serve(metrics_client_t *cl)
{
    const fy_http_request_t *req = &cl->req;
    const char *url = fy_http_request_url(req);
    size_t path_len = req->url_len;
    const char *q = memchr(url, '?', path_len);
    if (q != NULL)
        path_len = (size_t)(q - url);
    if (path_len != 8 || memcmp(url, "/metrics", 8) != 0) {
        answer_error(cl, 404, "Only /metrics is served here.", req->is_head);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        answer_error(cl, 405, "/metrics answers GET and HEAD.", req->is_head);
        return;
    }
    if (cl->ms->srv == NULL) {
        answer_error(cl, 503, "The server is shutting down.", req->is_head);
        return;
    }
    cl->ms->scrapes++;
    char *text = fy_http_metrics_text(cl->ms->srv);
    size_t len = strlen(text);
    cl->out.len = 0;
    fy_http_buf_appendf(&cl->out,
                        "HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: text/plain; version=0.0.4; "
                        "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        fy_http_date_now(), len);
    if (!req->is_head)
        fy_http_buf_append(&cl->out, text, len);
    free(text);
    answer(cl);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    metrics_client_t *cl = h->data;
    *buf = uv_buf_init(cl->rbuf, sizeof cl->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    metrics_client_t *cl = s->data;
    if (cl->closing || cl->answered)
        return;
    if (nread < 0) {
        close_client(cl);
        return;
    }
    size_t used = 0;
    int rc = fy_http_request_feed(&cl->req, buf->base, (size_t)nread, &used);
    if (rc < 0) {
        answer_error(cl, cl->req.error_status, cl->req.error_reason, false);
        return;
    }
    if (rc == FY_HTTP_FEED_DONE)
        serve(cl);
}

static void on_timeout(uv_timer_t *t)
{
    close_client(t->data);
}

static void on_connection(uv_stream_t *listener, int status)
{
    fy_http_metrics_server_t *ms = listener->data;
    if (status < 0) {
        fy_log(FY_LOG_WARN, "metrics", "accept: %s", uv_strerror(status));
        return;
    }
    metrics_client_t *cl = fy_xcalloc(1, sizeof *cl);
    cl->ms = ms;
    uv_tcp_init(listener->loop, &cl->tcp);
    uv_timer_init(listener->loop, &cl->timer);
    cl->tcp.data = cl->timer.data = cl;
    cl->open_handles = 2;
    fy_http_request_init(&cl->req, &ms->opts);
    ms->client_count++;
    cl->next = ms->clients;
    if (ms->clients)
        ms->clients->prev = cl;
    ms->clients = cl;
    if (uv_accept(listener, (uv_stream_t *)&cl->tcp) != 0) {
        close_client(cl);
        return;
    }
    if (ms->client_count > FY_HTTP_METRICS_MAX_CLIENTS) {
        fy_log(FY_LOG_WARN, "metrics", "more than %d connections to the metrics endpoint: closed",
               FY_HTTP_METRICS_MAX_CLIENTS);
        close_client(cl);
        return;
    }
    uv_timer_start(&cl->timer, on_timeout, FY_HTTP_METRICS_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    fy_http_metrics_server_t *ms = h->data;
    ms->listener_closed = true;
    maybe_free(ms);
}

int fy_http_server_listen_metrics(fy_http_server_t *srv, const char *host, unsigned port)
{
    if (port == 0 || port > 65535 || srv->metrics_server != NULL)
        return -EINVAL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
        return -EINVAL;
    fy_http_metrics_server_t *ms = fy_xcalloc(1, sizeof *ms);
    ms->srv = srv;
    fy_http_options_init(&ms->opts);
    ms->opts.max_uri_length = 1024;
    ms->opts.max_header_size = 8192;
    ms->opts.max_header_count = 50;
    ms->opts.max_body_size = 1024;   /* a body on GET /metrics is refused (413) */
    ms->opts.body_buffer_threshold = METRICS_READ_SIZE;
    uv_tcp_init(srv->loop, &ms->listener);
    ms->listener.data = ms;
    int rc = uv_tcp_bind(&ms->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ms->listener, 64, on_connection);
    if (rc < 0) {
        ms->closing = true;
        ms->srv = NULL;
        uv_close((uv_handle_t *)&ms->listener, on_listener_closed);
        return rc;
    }
    srv->metrics_server = ms;
    fy_log(FY_LOG_INFO, "metrics", "address=%s%s%s:%u: serving /metrics", strchr(host, ':') ? "[" : "",
           host, strchr(host, ':') ? "]" : "", port);
    return 0;
}

void fy_http_metrics_server_close(fy_http_server_t *srv)
{
    fy_http_metrics_server_t *ms = srv->metrics_server;
    if (ms == NULL)
        return;
    srv->metrics_server = NULL;
    ms->srv = NULL;
    ms->closing = true;
    uv_close((uv_handle_t *)&ms->listener, on_listener_closed);
    while (ms->clients)
        close_client(ms->clients);
}
