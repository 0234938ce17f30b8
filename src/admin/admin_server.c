/* The admin server: see admin_server.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin_server.h"
#include "core/alloc.h"
#include "core/log.h"
#include "proto/msgchan.h"

#define PASSWORD_MAX 256
#define LISTEN_BACKLOG 16

typedef enum { WANT_PASSWORD, WANT_COMMAND, ANSWERED } client_state_t;

typedef struct admin_client {
    uv_pipe_t pipe;
    uv_timer_t timer;
    fy_admin_server_t *srv;
    struct admin_client *prev, *next;
    fy_msgparser_t parser;
    client_state_t state;
    int open_handles;
    bool closing;
    pid_t peer_pid;
    uv_write_t write_req;
    uint8_t reply_len[4];
    char *reply;
    char rbuf[1024];
} admin_client_t;

struct fy_admin_server {
    uv_pipe_t listener;
    fy_admin_ops_t ops;
    char address[FY_ADDRESS_MAX];
    char password[FY_SECRET_HEX_LEN + 1];
    admin_client_t *clients;
    unsigned client_count;
    bool closing;
    bool listener_closed;
};

static void maybe_free_server(fy_admin_server_t *srv)
{
    if (srv->closing && srv->listener_closed && srv->client_count == 0)
        free(srv);
}

static void on_client_handle_closed(uv_handle_t *h)
{
    admin_client_t *cl = h->data;
    if (--cl->open_handles > 0)
        return;
    fy_admin_server_t *srv = cl->srv;
    fy_msgparser_dispose(&cl->parser);
    free(cl->reply);
    free(cl);
    srv->client_count--;
    maybe_free_server(srv);
}

static void close_client(admin_client_t *cl)
{
    if (cl->closing)
        return;
    cl->closing = true;
    fy_admin_server_t *srv = cl->srv;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        srv->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->pipe, on_client_handle_closed);
    uv_close((uv_handle_t *)&cl->timer, on_client_handle_closed);
}

static void on_client_timeout(uv_timer_t *t)
{
    admin_client_t *cl = t->data;
    fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: no complete command within %d ms: connection "
           "closed", (int)cl->peer_pid, FY_ADMIN_CLIENT_TIMEOUT_MS);
    close_client(cl);
}

static void on_reply_written(uv_write_t *wr, int status)
{
    admin_client_t *cl = wr->data;
    if (status < 0)
        fy_log(FY_LOG_DEBUG, "admin", "peer_pid=%d: reply not delivered: %s", (int)cl->peer_pid,
               uv_strerror(status));
    close_client(cl);
}

/* Sends <json> (taken) as one scalar message, then closes the connection. */
static void reply(admin_client_t *cl, char *json)
{
    cl->state = ANSWERED;
    uv_read_stop((uv_stream_t *)&cl->pipe);
    cl->reply = json;
    size_t len = strlen(json);
    fy_scalar_encode_header(cl->reply_len, (uint32_t)len);
    uv_buf_t bufs[2] = {uv_buf_init((char *)cl->reply_len, 4), uv_buf_init(json, (unsigned)len)};
    cl->write_req.data = cl;
    if (uv_write(&cl->write_req, (uv_stream_t *)&cl->pipe, bufs, 2, on_reply_written) < 0)
        close_client(cl);
}

static char *dump(json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return text;
}

static void run_command(admin_client_t *cl, const fy_array_t *msg)
{
    fy_admin_server_t *srv = cl->srv;
    const char *name = msg->items[0];
    bool slow = strcmp(name, "slow") == 0 && msg->count == 1 && srv->ops.slow != NULL;
    if ((strcmp(name, "status") == 0 && msg->count == 1) || slow) {
        char *json = dump(slow ? srv->ops.slow(srv->ops.data) : srv->ops.status(srv->ops.data));
        if (json == NULL) {
            fy_log(FY_LOG_ERROR, "admin", "peer_pid=%d: the status cannot be encoded",
                   (int)cl->peer_pid);
            close_client(cl);
            return;
        }
        reply(cl, json);
        return;
    }
    if (strcmp(name, "metrics") == 0 && msg->count == 1 && srv->ops.metrics != NULL) {
        char *text = srv->ops.metrics(srv->ops.data);
        char *json = dump(json_pack("{s:s}", "prometheus", text ? text : ""));
        free(text);
        if (json != NULL)
            reply(cl, json);
        else
            close_client(cl);
        return;
    }
    if (strcmp(name, "restart") == 0 && msg->count == 1) {
        fy_log(FY_LOG_NOTICE, "admin", "peer_pid=%d: restart asked for", (int)cl->peer_pid);
        int rc = srv->ops.restart(srv->ops.data);
        json_t *doc = rc == 0 ? json_pack("{s:b, s:i}", "restarting", 1, "pid", (int)getpid())
                              : json_pack("{s:b, s:i, s:s}", "restarting", 0, "pid",
                                          (int)getpid(), "error",
                                          rc == -ESHUTDOWN ? "shutting down" : strerror(-rc));
        char *json = dump(doc);
        if (json != NULL)
            reply(cl, json);
        else
            close_client(cl);
        return;
    }
    if (strcmp(name, "stop") == 0 && msg->count == 1) {
        fy_log(FY_LOG_NOTICE, "admin", "peer_pid=%d: stop asked for", (int)cl->peer_pid);
        char *json = dump(json_pack("{s:b, s:i}", "stopping", 1, "pid", (int)getpid()));
        if (json != NULL)
            reply(cl, json);
        else
            close_client(cl);
        srv->ops.stop(srv->ops.data);
        return;
    }
    fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: unknown command \"%.64s\" (%zu items): "
           "connection closed", (int)cl->peer_pid, name, msg->count);
    close_client(cl);
}

/* Handles the message the parser completed. */
static void take_message(admin_client_t *cl)
{
    if (cl->state == WANT_PASSWORD) {
        char *password = NULL;
        size_t len = 0;
        if (fy_msgparser_take_scalar(&cl->parser, &password, &len) != 0) {
            close_client(cl);
            return;
        }
        bool ok = fy_secret_equal(password, len, cl->srv->password, FY_SECRET_HEX_LEN);
        free(password);
        if (!ok) {
            fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: wrong password: connection closed",
                   (int)cl->peer_pid);
            close_client(cl);
            return;
        }
        cl->state = WANT_COMMAND;
        fy_msgparser_expect(&cl->parser, FY_MSG_ARRAY, 0);
        return;
    }
    fy_array_t msg = {0};
    if (fy_msgparser_take_array(&cl->parser, &msg) != 0) {
        close_client(cl);
        return;
    }
    run_command(cl, &msg);
    fy_array_dispose(&msg);
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    admin_client_t *cl = h->data;
    *buf = uv_buf_init(cl->rbuf, sizeof cl->rbuf);
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_client_t *cl = s->data;
    if (nread < 0) {
        if (cl->state != ANSWERED)
            fy_log(FY_LOG_DEBUG, "admin", "peer_pid=%d: closed before a command (%s)",
                   (int)cl->peer_pid, uv_strerror((int)nread));
        close_client(cl);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    while (left > 0 && !cl->closing && cl->state != ANSWERED) {
        size_t used = 0;
        int rc = fy_msgparser_feed(&cl->parser, p, left, &used);
        p += used;
        left -= used;
        if (rc == 1) {
            take_message(cl);
            continue;
        }
        if (rc != -EAGAIN) {
            fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: malformed message (%s): connection closed",
                   (int)cl->peer_pid, strerror(-rc));
            close_client(cl);
            return;
        }
    }
    if (left > 0 && !cl->closing) {
        fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: bytes after the command: connection closed",
               (int)cl->peer_pid);
        close_client(cl);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    fy_admin_server_t *srv = listener->data;
    if (status < 0) {
        fy_log(FY_LOG_WARN, "admin", "accept: %s", uv_strerror(status));
        return;
    }
    admin_client_t *cl = fy_xcalloc(1, sizeof *cl);
    cl->srv = srv;
    uv_pipe_init(listener->loop, &cl->pipe, 0);
    uv_timer_init(listener->loop, &cl->timer);
    cl->pipe.data = cl->timer.data = cl;
    cl->open_handles = 2;
    fy_msgparser_init(&cl->parser);
    fy_msgparser_expect(&cl->parser, FY_MSG_SCALAR, PASSWORD_MAX);
    srv->client_count++;
    cl->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = cl;
    srv->clients = cl;
    if (uv_accept(listener, (uv_stream_t *)&cl->pipe) != 0) {
        close_client(cl);
        return;
    }
    uv_os_fd_t fd;
    uid_t uid = 0;
    int rc = uv_fileno((uv_handle_t *)&cl->pipe, &fd);
    if (rc == 0)
        rc = fy_peer_check_uid(fd, &cl->peer_pid, &uid);
    if (rc != 0) {
        fy_log(FY_LOG_WARN, "admin", "peer_pid=%d uid=%u: refused (%s): connection closed",
               (int)cl->peer_pid, (unsigned)uid,
               rc == -EPERM ? "another user" : strerror(-rc));
        close_client(cl);
        return;
    }
    if (srv->client_count > FY_ADMIN_MAX_CLIENTS) {
        fy_log(FY_LOG_WARN, "admin", "peer_pid=%d: more than %d admin connections: closed",
               (int)cl->peer_pid, FY_ADMIN_MAX_CLIENTS);
        close_client(cl);
        return;
    }
    uv_timer_start(&cl->timer, on_client_timeout, FY_ADMIN_CLIENT_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&cl->pipe, on_client_alloc, on_client_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    fy_admin_server_t *srv = h->data;
    srv->listener_closed = true;
    maybe_free_server(srv);
}

int fy_admin_server_start(uv_loop_t *loop, const char *dir, const fy_admin_ops_t *ops,
                          fy_admin_server_t **out)
{
    fy_admin_server_t *srv = fy_xcalloc(1, sizeof *srv);
    srv->ops = *ops;
    int rc = fy_secret_generate(srv->password);
    if (rc < 0) {
        free(srv);
        return rc;
    }
    int fd = fy_unix_listen_auto(dir, "ferry-admin", LISTEN_BACKLOG, srv->address);
    if (fd < 0) {
        free(srv);
        return fd;
    }
    uv_pipe_init(loop, &srv->listener, 0);
    srv->listener.data = srv;
    rc = uv_pipe_open(&srv->listener, fd);
    if (rc != 0)
        close(fd); /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        fy_unix_address_unlink(srv->address);
        /* freed by on_listener_closed once libuv lets go of the handle */
        srv->closing = true;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        return rc;
    }
    *out = srv;
    return 0;
}

const char *fy_admin_server_address(const fy_admin_server_t *srv) { return srv->address; }
const char *fy_admin_server_password(const fy_admin_server_t *srv) { return srv->password; }

void fy_admin_server_close(fy_admin_server_t *srv)
{
    if (srv == NULL || srv->closing)
        return;
    srv->closing = true;
    fy_unix_address_unlink(srv->address);
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    while (srv->clients)
        close_client(srv->clients);
}
