/* One connection of the C worker: open it as a session (v1 or v2, session.c), then for each of
 * its requests hand the request to the app and finish the response through the SDK. */
#include <errno.h>
#include <string.h>

#include "worker/session.h"
#include "worker/worker_internal.h"

static void copy_cut(char *dst, size_t cap, const char *src)
{
    if (dst == NULL || cap == 0)
        return;
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* What the SIGQUIT line says the worker is doing: <path> and <request_id>, "" when idle. */
static void set_busy(fy_worker_ctx_t *ctx, const char *path, const char *request_id)
{
    copy_cut(ctx->busy_path, ctx->busy_path_cap, path);
    copy_cut(ctx->busy_request_id, ctx->busy_request_id_cap, request_id ? request_id : "");
}

static void serve_request(fy_worker_ctx_t *ctx, fy_worker_session_t *s)
{
    ferry_request_t req;
    fy_worker_request_init(&req, s, ctx->app->data);
    req.final_write_with_end = ctx->app->final_write_with_end;
    set_busy(ctx, req.path, fy_reqblock_get(&s->rb, "HTTP_X_REQUEST_ID", NULL));
    int app_rc = ctx->app->callbacks.on_request(&req);
    fy_worker_request_finish(&req, app_rc);
    set_busy(ctx, "", "");
    fy_worker_request_dispose(&req);
}

int fy_worker_conn_serve(fy_worker_ctx_t *ctx, int fd)
{
    fy_worker_session_config_t cfg = {
        .secret = ctx->secret,
        .header_timeout_ms = ctx->header_timeout_ms,
        .body_timeout_ms = ctx->body_timeout_ms,
        .stop = ctx->stop,
        .abort_probe_ms = FY_WORKER_ABORT_PROBE_MS,
    };
    fy_worker_session_t s;
    int rc = fy_worker_session_open(&s, fd, &cfg);
    while (rc == 0) {
        rc = fy_worker_session_next_request(&s);
        if (rc == 1) {
            serve_request(ctx, &s);
            rc = 0;
        } else if (rc == -EINPROGRESS) {
            /* The control channel, while idle: a re-fork request (refork.c). Its child leaves
             * the session to the parent and unwinds. */
            rc = fy_worker_control_event(ctx) == 1 ? -ECANCELED : 0;
        } else {
            break; /* 0: the session is over; or its error */
        }
    }
    fy_worker_session_dispose(&s);
    return rc;
}
