/* Listeners, the connection list, the write-buffer cache and graceful stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/slab.h"
#include "core/log.h"
#include "http/http_conn.h"
#include "ipc/sock.h"

void fy_http_options_init(fy_http_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->header_timeout_ms = FY_HTTP_DEFAULT_HEADER_TIMEOUT_MS;
    opts->body_timeout_ms = FY_HTTP_DEFAULT_BODY_TIMEOUT_MS;
    opts->keepalive_timeout_ms = FY_HTTP_DEFAULT_KEEPALIVE_TIMEOUT_MS;
    opts->max_body_size = FY_HTTP_DEFAULT_MAX_BODY_SIZE;
    opts->max_uri_length = FY_HTTP_DEFAULT_MAX_URI_LENGTH;
    opts->max_header_size = FY_HTTP_DEFAULT_MAX_HEADER_SIZE;
    opts->max_header_count = FY_HTTP_DEFAULT_MAX_HEADER_COUNT;
    opts->body_buffer_threshold = FY_HTTP_DEFAULT_BODY_BUFFER_THRESHOLD;
    opts->environment = "production";
    opts->powered_by = true;
    opts->request_id_header = true;
    opts->access_log_fd = -1;
    opts->session_protocol = FY_HTTP_DEFAULT_SESSION_PROTOCOL;
    opts->response_buffer_max = FY_HTTP_DEFAULT_RESPONSE_BUFFER_MAX;
}

int fy_http_raise_nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return -errno;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > FY_HTTP_NOFILE_CAP)
        want = FY_HTTP_NOFILE_CAP;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return (int)(rl.rlim_cur > INT32_MAX ? INT32_MAX : rl.rlim_cur);
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
        int err = errno;
        fy_log(FY_LOG_WARN, "http", "soft=%llu hard=%llu: cannot raise the open-file limit: %s",
               (unsigned long long)old, (unsigned long long)rl.rlim_max, strerror(err));
        return -err;
    }
    fy_log(FY_LOG_INFO, "http", "open-file limit raised from %llu to %llu",
           (unsigned long long)old, (unsigned long long)want);
    return (int)want;
}

int fy_http_server_new(uv_loop_t *loop, fy_pool_t *pool, const fy_http_options_t *opts,
                       fy_http_server_t **out)
{
    if (opts->max_uri_length == 0 || opts->max_header_size == 0 || opts->max_header_count == 0)
        return -EINVAL;
    /* Every idle client costs a descriptor: use all the hard limit allows (a failure is logged
     * and not fatal: the server then serves fewer connections at once). */
    (void)fy_http_raise_nofile_limit();
    fy_http_server_t *srv = fy_xcalloc(1, sizeof *srv);
    srv->loop = loop;
    srv->pool = pool;
    srv->opts = *opts;
    srv->shared_in = fy_xmalloc(FY_HTTP_IO_SIZE);
    fy_slab_init(&srv->conn_slab, sizeof(fy_http_conn_t));
    fy_http_metrics_init(&srv->metrics);
    if (fy_random_bytes(&srv->request_id_state, sizeof srv->request_id_state) != 0)
        srv->request_id_state = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    /* v2 sessions live as long as their workers: the pool says when one is gone */
    fy_pool_set_worker_gone(pool, fy_http_session_worker_gone, srv);
    *out = srv;
    return 0;
}

fy_http_wbuf_t *fy_http_wbuf_get(fy_http_server_t *srv, fy_http_conn_t *c)
{
    fy_http_wbuf_t *w = srv->free_wbufs;
    if (w != NULL) {
        srv->free_wbufs = w->next;
        srv->free_wbuf_count--;
    } else {
        w = fy_xmalloc(sizeof *w);
    }
    w->conn = c;
    w->next = NULL;
    w->small = false;
    return w;
}

fy_http_wbuf_t *fy_http_wbuf_get_small(fy_http_conn_t *c)
{
    fy_http_wbuf_t *w = fy_xmalloc(offsetof(fy_http_wbuf_t, data));
    w->conn = c;
    w->next = NULL;
    w->small = true;
    return w;
}

void fy_http_wbuf_put(fy_http_server_t *srv, fy_http_wbuf_t *w)
{
    if (w->small) {
        free(w);
        return;
    }
    if (srv->free_wbuf_count >= FY_HTTP_WBUF_CACHE) {
        free(w);
        return;
    }
    w->next = srv->free_wbufs;
    srv->free_wbufs = w;
    srv->free_wbuf_count++;
}

static void on_listener_connection(uv_stream_t *s, int status)
{
    fy_http_listener_t *lst = s->data;
    if (status < 0) {
        fy_log(FY_LOG_WARN, "http", "accept: %s", uv_strerror(status));
        return;
    }
    fy_http_conn_accept(lst);
}

static fy_http_listener_t *new_listener(fy_http_server_t *srv)
{
    if (srv->listener_count >= FY_ARRAY_SIZE(srv->listeners))
        return NULL;
    fy_http_listener_t *lst = fy_xcalloc(1, sizeof *lst);
    lst->srv = srv;
    return lst;
}

static void on_listener_closed(uv_handle_t *h) { free(h->data); }

int fy_http_server_listen_tcp(fy_http_server_t *srv, const char *host, unsigned port)
{
    if (port > 65535)
        return -EINVAL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
        return -EINVAL;
    fy_http_listener_t *lst = new_listener(srv);
    if (lst == NULL)
        return -ENOSPC;
    uv_tcp_init(srv->loop, &lst->h.tcp);
    lst->h.handle.data = lst;
    int rc = uv_tcp_bind(&lst->h.tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen(&lst->h.stream, 511, on_listener_connection);
    if (rc < 0) {
        uv_close(&lst->h.handle, on_listener_closed);
        return rc;
    }
    snprintf(lst->host, sizeof lst->host, "%s", host);
    snprintf(lst->port, sizeof lst->port, "%u", port);
    lst->open = true;
    srv->listeners[srv->listener_count++] = lst;
    return 0;
}

int fy_http_server_listen_unix(fy_http_server_t *srv, const char *path)
{
    fy_http_listener_t *lst = new_listener(srv);
    if (lst == NULL)
        return -ENOSPC;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            free(lst);
            return -EEXIST;
        }
        unlink(path);   /* a stale socket file from an earlier run */
    }
    uv_pipe_init(srv->loop, &lst->h.pipe, 0);
    lst->h.handle.data = lst;
    lst->is_unix = true;
    int rc = uv_pipe_bind(&lst->h.pipe, path);
    if (rc == 0) {
        chmod(path, 0666);
        lst->unix_path = fy_xstrdup(path);
        rc = uv_listen(&lst->h.stream, 511, on_listener_connection);
    }
    if (rc < 0) {
        if (lst->unix_path) {
            unlink(lst->unix_path);
            free(lst->unix_path);
            lst->unix_path = NULL;
        }
        uv_close(&lst->h.handle, on_listener_closed);
        return rc;
    }
    snprintf(lst->host, sizeof lst->host, "localhost");
    snprintf(lst->port, sizeof lst->port, "0");
    lst->open = true;
    srv->listeners[srv->listener_count++] = lst;
    return 0;
}

int fy_http_server_listen_fd(fy_http_server_t *srv, int fd, char *url, size_t url_len)
{
    int listening = 0, type = 0;
    socklen_t n = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &n) == -1)
        return -errno;
    n = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &n) == -1)
        return -errno;
    if (!listening || type != SOCK_STREAM)
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) == -1)
        return -errno;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)
        return -EAFNOSUPPORT;
    fy_http_listener_t *lst = new_listener(srv);
    if (lst == NULL)
        return -ENOSPC;
    /* Workers must not inherit it. */
    int cloexec = fy_fd_set_cloexec(fd);
    if (cloexec < 0) {
        free(lst);
        return cloexec;
    }
    int rc;
    if (ss.ss_family == AF_UNIX) {
        uv_pipe_init(srv->loop, &lst->h.pipe, 0);
        lst->is_unix = true;   /* unix_path stays NULL: the file is its creator's to remove */
        rc = uv_pipe_open(&lst->h.pipe, fd);
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        size_t path_len = ss_len > offsetof(struct sockaddr_un, sun_path)
                              ? ss_len - offsetof(struct sockaddr_un, sun_path) : 0;
        if (path_len > 0 && un->sun_path[0] == '\0')
            snprintf(url, url_len, "unix:@%.*s", (int)path_len - 1, un->sun_path + 1);
        else
            snprintf(url, url_len, "unix:%.*s", (int)strnlen(un->sun_path, path_len),
                     un->sun_path);
        snprintf(lst->host, sizeof lst->host, "localhost");
        snprintf(lst->port, sizeof lst->port, "0");
    } else {
        uv_tcp_init(srv->loop, &lst->h.tcp);
        rc = uv_tcp_open(&lst->h.tcp, fd);
        char host[INET6_ADDRSTRLEN] = "";
        unsigned port;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            uv_ip4_name(in, host, sizeof host);
            port = ntohs(in->sin_port);
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(in6, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
        bool v6 = ss.ss_family == AF_INET6;
        snprintf(url, url_len, "http://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port);
        snprintf(lst->host, sizeof lst->host, "%s", host);
        snprintf(lst->port, sizeof lst->port, "%u", port);
    }
    lst->h.handle.data = lst;
    if (rc == 0)
        rc = uv_listen(&lst->h.stream, 511, on_listener_connection);
    if (rc < 0) {
        uv_close(&lst->h.handle, on_listener_closed);
        return rc;
    }
    lst->open = true;
    srv->listeners[srv->listener_count++] = lst;
    return 0;
}

size_t fy_http_server_connection_count(const fy_http_server_t *srv) { return srv->conn_count; }

static void maybe_done(fy_http_server_t *srv)
{
    if (!srv->stopping || srv->conn_count > 0 || srv->drain_count > 0 || srv->done_called)
        return;
    srv->done_called = true;
    if (srv->stop_timer_open) {
        uv_timer_stop(&srv->stop_timer);
    }
    if (srv->done)
        srv->done(srv, srv->done_data);
}

void fy_http_server_note_freed(fy_http_server_t *srv)
{
    /* Freed buffers leave free chunks all over the heap that malloc keeps; give their pages
     * back to the system after a batch (docs/operations.md, "Memory"). */
    srv->freed_since_trim++;
    if (srv->freed_since_trim >= FY_HTTP_TRIM_EVERY ||
        (srv->conn_count == 0 && srv->freed_since_trim >= FY_HTTP_TRIM_MIN)) {
        malloc_trim(0);
        srv->freed_since_trim = 0;
    }
}

void fy_http_server_forget(fy_http_server_t *srv, fy_http_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->conn_count--;
    fy_slab_free(&srv->conn_slab, c);
    fy_http_server_note_freed(srv);
    maybe_done(srv);
}

void fy_http_server_drain_add(fy_http_server_t *srv, fy_http_upstream_t *up)
{
    up->drain_prev = NULL;
    up->drain_next = srv->drains;
    if (srv->drains)
        srv->drains->drain_prev = up;
    srv->drains = up;
    srv->drain_count++;
}

void fy_http_server_drain_remove(fy_http_server_t *srv, fy_http_upstream_t *up)
{
    if (up->drain_prev)
        up->drain_prev->drain_next = up->drain_next;
    else
        srv->drains = up->drain_next;
    if (up->drain_next)
        up->drain_next->drain_prev = up->drain_prev;
    up->drain_prev = up->drain_next = NULL;
    srv->drain_count--;
    maybe_done(srv);
}

static void on_stop_timeout(uv_timer_t *t)
{
    fy_http_server_t *srv = t->data;
    if (srv->conn_count > 0 || srv->drain_count > 0)
        fy_log(FY_LOG_WARN, "http", "connections=%zu draining=%zu: shutdown timeout passed; "
               "closing them", srv->conn_count, srv->drain_count);
    for (fy_http_conn_t *c = srv->conns; c != NULL;) {
        fy_http_conn_t *next = c->next;
        fy_http_conn_abort(c);
        c = next;
    }
    while (srv->drains != NULL)
        fy_http_upstream_abort(srv->drains);
    maybe_done(srv);
}

void fy_http_server_stop(fy_http_server_t *srv, unsigned timeout_ms,
                         void (*done)(fy_http_server_t *srv, void *data), void *data)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->done = done;
    srv->done_data = data;
    fy_http_metrics_server_close(srv);
    for (unsigned i = 0; i < srv->listener_count; i++) {
        fy_http_listener_t *lst = srv->listeners[i];
        if (lst->unix_path) {
            unlink(lst->unix_path);
            free(lst->unix_path);
            lst->unix_path = NULL;
        }
        lst->open = false;
        uv_close(&lst->h.handle, on_listener_closed);
    }
    srv->listener_count = 0;
    for (fy_http_conn_t *c = srv->conns; c != NULL;) {
        fy_http_conn_t *next = c->next;
        fy_http_conn_stop(c);
        c = next;
    }
    uv_timer_init(srv->loop, &srv->stop_timer);
    srv->stop_timer.data = srv;
    srv->stop_timer_open = true;
    /* Runs at least once, so <done> is called from the loop even with no connection. */
    bool busy = srv->conn_count > 0 || srv->drain_count > 0;
    uv_timer_start(&srv->stop_timer, on_stop_timeout, busy ? timeout_ms : 0, 0);
}

static void on_stop_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void fy_http_server_free(fy_http_server_t *srv)
{
    if (srv == NULL)
        return;
    FY_ASSERT(srv->conn_count == 0);
    FY_ASSERT(srv->drain_count == 0);
    fy_http_metrics_server_close(srv);
    free(srv->shared_in);
    srv->shared_in = NULL;
    fy_slab_dispose(&srv->conn_slab);
    while (srv->free_wbufs) {
        fy_http_wbuf_t *w = srv->free_wbufs;
        srv->free_wbufs = w->next;
        free(w);
    }
    for (unsigned i = 0; i < srv->listener_count; i++) {
        fy_http_listener_t *lst = srv->listeners[i];
        if (lst->unix_path) {
            unlink(lst->unix_path);
            free(lst->unix_path);
        }
        uv_close(&lst->h.handle, on_listener_closed);
    }
    if (srv->stop_timer_open) {
        srv->stop_timer.data = srv;
        uv_close((uv_handle_t *)&srv->stop_timer, on_stop_timer_closed);
    } else {
        free(srv);
    }
}
