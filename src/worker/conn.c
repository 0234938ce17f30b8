/* One connection of the C worker: read the request block within a deadline, check the connect
 * password, hand the request to the app, finish the response, drain what the app left unread. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ipc/sock.h"
#include "worker/worker_internal.h"
#include "core/sys.h"

/* The longest the worker spends discarding a body the app did not read. */
#define DRAIN_TIMEOUT_MS 2000

/* Reads exactly <len> bytes before <deadline_ms>. Returns 0, -ECONNRESET on EOF before the end,
 * -ETIMEDOUT, or another negative errno. */
static int read_exact(int fd, void *buf, size_t len, int64_t deadline_ms)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int64_t left = deadline_ms - fy_monotonic_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR)
            return -errno;
    }
    return 0;
}

static const char *refusal_name(int rc)
{
    switch (rc) {
    case -EMSGSIZE:
        return "request block over 128 KiB";
    case -EPROTO:
        return "malformed request block";
    case -EACCES:
        return "wrong or missing connect password";
    case -ETIMEDOUT:
        return "request block did not arrive in time";
    case -ECONNRESET:
        return "connection ended inside the request block";
    default:
        return "cannot read the request block";
    }
}

/* Reads and parses the block; on success takes ownership into *block_out / *rb. */
static int read_block(fy_worker_ctx_t *ctx, int fd, char **block_out, fy_reqblock_t *rb)
{
    int64_t deadline = fy_monotonic_ms() + ctx->header_timeout_ms;
    uint8_t prefix[4];
    int rc = read_exact(fd, prefix, sizeof prefix, deadline);
    if (rc != 0)
        return rc;
    uint32_t size;
    rc = fy_reqblock_decode_size(prefix, &size);
    if (rc != 0)
        return rc;
    char *block = fy_xmalloc((size_t)size + 1);
    rc = read_exact(fd, block, size, deadline);
    if (rc == 0)
        rc = fy_reqblock_parse(block, size, rb);
    if (rc != 0) {
        free(block);
        return rc;
    }
    *block_out = block;
    return 0;
}

/* Discards the body bytes the app did not read, so closing does not reset the peer. */
static void drain_body(ferry_request_t *req)
{
    char buf[16384];
    int64_t deadline = fy_monotonic_ms() + DRAIN_TIMEOUT_MS;
    while (req->body_left > 0) {
        size_t want = req->body_left < sizeof buf ? (size_t)req->body_left : sizeof buf;
        int rc = read_exact(req->fd, buf, want, deadline);
        if (rc != 0)
            return;
        req->body_left -= want;
    }
}

int fy_worker_conn_serve(fy_worker_ctx_t *ctx, int fd)
{
    char *block = NULL;
    fy_reqblock_t rb;
    memset(&rb, 0, sizeof rb);
    int rc = read_block(ctx, fd, &block, &rb);
    if (rc == 0) {
        size_t pw_len = 0;
        const char *pw = fy_reqblock_get(&rb, "FERRY_CONNECT_PASSWORD", &pw_len);
        if (pw == NULL || !fy_secret_equal(pw, pw_len, ctx->secret, strlen(ctx->secret))) {
            fy_reqblock_dispose(&rb);
            free(block);
            rc = -EACCES;
        }
    }
    if (rc != 0) {
        fy_log(FY_LOG_WARN, "worker", "pid=%d: refused a connection: %s", (int)getpid(),
               refusal_name(rc));
        return rc;
    }

    ferry_request_t req;
    rc = fy_worker_request_init(&req, fd, block, &rb, ctx->app->data, ctx->body_timeout_ms);
    if (rc != 0) {
        fy_log(FY_LOG_WARN, "worker", "pid=%d: refused a request: CONTENT_LENGTH is not a number",
               (int)getpid());
        ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "12"}};
        if (ferry_response_start(&req, 400, fields, 2) == FERRY_OK) {
            ferry_response_write(&req, "bad request\n", 12);
            ferry_response_end(&req);
        }
        fy_worker_request_dispose(&req);
        return -EPROTO;
    }
    if (ctx->busy_path != NULL && ctx->busy_path_cap > 0) {
        size_t n = strlen(req.path);
        if (n >= ctx->busy_path_cap)
            n = ctx->busy_path_cap - 1;
        memcpy(ctx->busy_path, req.path, n);
        ctx->busy_path[n] = '\0';
    }
    int app_rc = ctx->app->callbacks.on_request(&req);
    fy_worker_request_finish(&req, app_rc);
    if (ctx->busy_path != NULL && ctx->busy_path_cap > 0)
        ctx->busy_path[0] = '\0';
    shutdown(fd, SHUT_WR);
    drain_body(&req);
    fy_worker_request_dispose(&req);
    return 0;
}
