/* The C SDK (include/ferry.h): the request view over a parsed request block and the streaming
 * response writer. Every ferry_* symbol lives here; the ferry binary exports them to apps. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proto/frame.h"
#include "proto/httpdef.h"
#include "proto/resphead.h"
#include "worker/host.h"
#include "worker/worker_internal.h"
#include "core/sys.h"

static const char password_var[] = "FERRY_CONNECT_PASSWORD";

const char *ferry_strerror(int rc)
{
    switch (rc) {
    case FERRY_OK:
        return "success";
    case FERRY_ERROR:
        return "error";
    case FERRY_EINVAL:
        return "invalid argument";
    case FERRY_ESTATE:
        return "not allowed in the response's current state";
    case FERRY_EIO:
        return "connection failed";
    case FERRY_ETOOBIG:
        return "response head too large";
    case FERRY_ETIMEDOUT:
        return "timed out";
    default:
        return "unknown error code";
    }
}

void ferry_log(ferry_log_level_t level, const char *fmt, ...)
{
    fy_log_level_t lvl;
    switch (level) {
    case FERRY_LOG_ERROR:
        lvl = FY_LOG_ERROR;
        break;
    case FERRY_LOG_WARN:
        lvl = FY_LOG_WARN;
        break;
    case FERRY_LOG_NOTICE:
        lvl = FY_LOG_NOTICE;
        break;
    case FERRY_LOG_DEBUG:
        lvl = FY_LOG_DEBUG;
        break;
    default:
        lvl = FY_LOG_INFO;
        break;
    }
    va_list ap;
    va_start(ap, fmt);
    fy_logv(lvl, "app", fmt, ap);
    va_end(ap);
}

void fy_worker_request_init(struct ferry_request *req, fy_worker_session_t *session,
                            void *app_data)
{
    memset(req, 0, sizeof *req);
    req->session = session;
    req->app_data = app_data;
    const fy_reqblock_t *rb = &session->rb;
    req->names = fy_xcalloc(rb->count + 1, sizeof *req->names);
    req->values = fy_xcalloc(rb->count + 1, sizeof *req->values);
    for (size_t i = 0; i < rb->count; i++) {
        const fy_reqblock_pair_t *p = &rb->pairs[i];
        if (strcmp(p->name, password_var) == 0)
            continue;
        req->names[req->var_count] = p->name;
        req->values[req->var_count] = p->value;
        req->var_count++;
    }
    req->method = ferry_request_var(req, "REQUEST_METHOD");
    req->path = ferry_request_var(req, "PATH_INFO");
    req->query = ferry_request_var(req, "QUERY_STRING");
    req->uri = ferry_request_var(req, "REQUEST_URI");
    req->remote_addr = ferry_request_var(req, "REMOTE_ADDR");
    if (req->method == NULL)
        req->method = "";
    if (req->path == NULL)
        req->path = "";
    if (req->query == NULL)
        req->query = "";
    if (req->uri == NULL)
        req->uri = "";
    if (req->remote_addr == NULL)
        req->remote_addr = "";
}

void fy_worker_request_dispose(struct ferry_request *req)
{
    free(req->names);
    free(req->values);
    free(req->head);
    memset(req, 0, sizeof *req);
}

/* ---- request view ---- */

const char *ferry_request_method(const ferry_request_t *req)
{
    return req->method;
}
const char *ferry_request_path(const ferry_request_t *req)
{
    return req->path;
}
const char *ferry_request_query(const ferry_request_t *req)
{
    return req->query;
}
const char *ferry_request_uri(const ferry_request_t *req)
{
    return req->uri;
}
const char *ferry_request_remote_addr(const ferry_request_t *req)
{
    return req->remote_addr;
}
uint64_t ferry_request_content_length(const ferry_request_t *req)
{
    return req->session->content_length;
}
void *ferry_request_data(const ferry_request_t *req)
{
    return req->app_data;
}
size_t ferry_request_var_count(const ferry_request_t *req)
{
    return req->var_count;
}

const char *ferry_request_var(const ferry_request_t *req, const char *name)
{
    if (req == NULL || name == NULL || strcmp(name, password_var) == 0)
        return NULL;
    for (size_t i = 0; i < req->var_count; i++) {
        if (strcmp(req->names[i], name) == 0)
            return req->values[i];
    }
    return NULL;
}

const char *ferry_request_header(const ferry_request_t *req, const char *name)
{
    if (req == NULL || name == NULL || *name == '\0')
        return NULL;
    if (strcasecmp(name, "Content-Type") == 0)
        return ferry_request_var(req, "CONTENT_TYPE");
    if (strcasecmp(name, "Content-Length") == 0)
        return ferry_request_var(req, "CONTENT_LENGTH");
    char cgi[256] = "HTTP_";
    size_t len = strlen(name);
    if (len > sizeof cgi - 6)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '_')
            return NULL;
        if (c == '-')
            c = '_';
        else if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        cgi[5 + i] = c;
    }
    cgi[5 + len] = '\0';
    return ferry_request_var(req, cgi);
}

int ferry_request_var_at(const ferry_request_t *req, size_t index, const char **name,
                         const char **value)
{
    if (req == NULL || name == NULL || value == NULL || index >= req->var_count)
        return FERRY_EINVAL;
    *name = req->names[index];
    *value = req->values[index];
    return FERRY_OK;
}

ssize_t ferry_request_read(ferry_request_t *req, void *buf, size_t len)
{
    if (req == NULL || (buf == NULL && len > 0))
        return FERRY_EINVAL;
    ssize_t n = fy_worker_session_read_body(req->session, buf, len);
    if (n >= 0)
        return n;
    return n == -ETIMEDOUT ? FERRY_ETIMEDOUT : FERRY_EIO;
}

/* ---- response ---- */

static bool valid_header(const char *name, const char *value)
{
    if (name == NULL || value == NULL || *name == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (!fy_httpdef_is_tchar(*p))
            return false;
    }
    for (const char *p = value; *p; p++) {
        if (*p == '\r' || *p == '\n')
            return false;
    }
    return true;
}

/* Appends "<name>: <value>\r\n" to the pending head, keeping it within FY_RESPHEAD_MAX
 * (counting the final CRLF). */
static int head_append(ferry_request_t *req, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    size_t need = nl + 2 + vl + 2;
    if (req->head_len + need + 2 > FY_RESPHEAD_MAX)
        return FERRY_ETOOBIG;
    if (req->head_len + need > req->head_cap) {
        size_t cap = req->head_cap ? req->head_cap : 512;
        while (cap < req->head_len + need)
            cap *= 2;
        req->head = fy_xrealloc(req->head, cap);
        req->head_cap = cap;
    }
    char *p = req->head + req->head_len;
    memcpy(p, name, nl);
    p += nl;
    memcpy(p, ": ", 2);
    p += 2;
    memcpy(p, value, vl);
    p += vl;
    memcpy(p, "\r\n", 2);
    req->head_len += need;
    return FERRY_OK;
}

/* Notes a Content-Length the app declares, so the write that completes it can go with the END. */
static void note_length(ferry_request_t *req, const char *name, const char *value)
{
    if (strcasecmp(name, "Content-Length") != 0)
        return;
    uint64_t v = 0;
    const char *p = value;
    for (; *p >= '0' && *p <= '9' && v <= UINT64_MAX / 10 - 1; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    req->declared = p != value && *p == '\0';
    req->declared_len = v;
}

int ferry_response_start(ferry_request_t *req, int status, const ferry_field_t *fields,
                         size_t count)
{
    return fy_worker_response_start_reason(req, status, NULL, fields, count);
}

/* A reason phrase is HTAB, SP and visible characters (RFC 9112 §4: reason-phrase). */
static bool valid_reason(const char *reason)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)reason; *p; p++, n++) {
        if (n >= FY_WORKER_REASON_MAX || (*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    }
    return true;
}

void fy_worker_request_final_write_with_end(ferry_request_t *req)
{
    req->final_write_with_end = true;
}

int fy_worker_request_aborted(const ferry_request_t *req)
{
    return fy_worker_session_aborted(req->session);
}

int fy_worker_response_start_reason(ferry_request_t *req, int status, const char *reason,
                                    const ferry_field_t *fields, size_t count)
{
    if (req == NULL || status < 100 || status > 999 || (fields == NULL && count > 0))
        return FERRY_EINVAL;
    if (reason != NULL && !valid_reason(reason))
        return FERRY_EINVAL;
    if (req->status != 0)
        return FERRY_ESTATE;
    for (size_t i = 0; i < count; i++) {
        if (!valid_header(fields[i].name, fields[i].value))
            return FERRY_EINVAL;
    }
    char status_value[FY_WORKER_REASON_MAX + 8];
    snprintf(status_value, sizeof status_value, "%d %s", status,
             reason != NULL ? reason : fy_httpdef_status_reason(status));
    req->head_len = 0;
    int rc = head_append(req, "Status", status_value);
    for (size_t i = 0; rc == FERRY_OK && i < count; i++) {
        rc = head_append(req, fields[i].name, fields[i].value);
        note_length(req, fields[i].name, fields[i].value);
    }
    if (rc != FERRY_OK) {
        req->head_len = 0;
        return rc;
    }
    req->status = status;
    return FERRY_OK;
}

int ferry_response_add_header(ferry_request_t *req, const char *name, const char *value)
{
    if (req == NULL || !valid_header(name, value))
        return FERRY_EINVAL;
    if (req->status == 0 || req->head_sent)
        return FERRY_ESTATE;
    int rc = head_append(req, name, value);
    if (rc == FERRY_OK)
        note_length(req, name, value);
    return rc;
}

/* Hands the pending head, with its final CRLF, to the session. */
static int send_head(ferry_request_t *req)
{
    req->head_sent = true;
    if (req->head_len + 2 > req->head_cap) {
        req->head_cap = req->head_len + 2;
        req->head = fy_xrealloc(req->head, req->head_cap);
    }
    memcpy(req->head + req->head_len, "\r\n", 2);
    int rc = fy_worker_session_send_head(req->session, req->head, req->head_len + 2);
    if (rc != 0) {
        req->io_error = rc;
        return FERRY_EIO;
    }
    return FERRY_OK;
}

int ferry_response_write(ferry_request_t *req, const void *data, size_t len)
{
    if (req == NULL || (data == NULL && len > 0))
        return FERRY_EINVAL;
    if (req->status == 0 || req->ended)
        return FERRY_ESTATE;
    if (req->io_error != 0)
        return FERRY_EIO;
    if (!req->head_sent && send_head(req) != FERRY_OK)
        return FERRY_EIO;
    bool final = req->final_write_with_end && req->declared &&
                 req->written + len == req->declared_len;
    req->written += len;
    int rc = final ? fy_worker_session_write_final(req->session, data, len)
                   : fy_worker_session_write(req->session, data, len);
    if (rc != 0) {
        req->io_error = rc;
        return FERRY_EIO;
    }
    return FERRY_OK;
}

/* Ends the response. <now>: what is queued (a head without body, a final write) leaves at once,
 * since the app may still have work to do before on_request returns and the client need not
 * wait for it (v2's END follows when it returns); after on_request returned, it leaves with the
 * END in one message. */
static int end_response(ferry_request_t *req, bool now)
{
    if (req == NULL)
        return FERRY_EINVAL;
    if (req->status == 0)
        return FERRY_ESTATE;
    if (req->ended)
        return FERRY_OK;
    req->ended = true;
    if (req->io_error == 0 && !req->head_sent)
        send_head(req);
    if (now && req->io_error == 0) {
        int rc = fy_worker_session_flush(req->session);
        if (rc != 0)
            req->io_error = rc;
    }
    return req->io_error != 0 ? FERRY_EIO : FERRY_OK;
}

int ferry_response_end(ferry_request_t *req)
{
    return end_response(req, true);
}

void fy_worker_request_finish(ferry_request_t *req, int rc)
{
    fy_worker_session_t *s = req->session;
    unsigned end_flags = 0;
    if (fy_worker_session_aborted(s)) {
        /* The client left (docs/protocol.md §4.3 ABORT): whatever the app made of its failed
         * writes, the request just ends. */
        fy_log(FY_LOG_INFO, "worker", "method=%s path=%s rc=%d: the client went away; ended",
               req->method, req->path, rc);
    } else if (rc == FERRY_OK && req->status != 0) {
        end_response(req, false); /* fy_worker_session_end sends it, with the END */
    } else {
        if (rc == FERRY_OK)
            fy_log(FY_LOG_ERROR, "worker",
                   "method=%s path=%s: on_request returned without starting a response; "
                   "answering 500",
                   req->method, req->path);
        else if (!req->head_sent)
            fy_log(FY_LOG_ERROR, "worker",
                   "method=%s path=%s rc=%d (%s): app failed; answering 500", req->method,
                   req->path, rc, ferry_strerror(rc));
        else
            fy_log(FY_LOG_ERROR, "worker",
                   "method=%s path=%s rc=%d (%s): app failed after the head was sent; %s",
                   req->method, req->path, rc, ferry_strerror(rc),
                   s->version == 2 ? "ending it as failed" : "closing");
        if (req->head_sent) {
            end_flags = FY_FRAME_END_APP_FAILED;
        } else if (req->io_error == 0) {
            static const char body[] = "Internal Server Error\n";
            req->status = 0;
            req->ended = false;
            ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "22"}};
            if (ferry_response_start(req, 500, fields, 2) == FERRY_OK) {
                ferry_response_write(req, body, sizeof body - 1);
                ferry_response_end(req);
            }
        }
    }
    int end_rc = fy_worker_session_end(s, end_flags);
    if ((req->io_error == -EPIPE || end_rc == -EPIPE) && !fy_worker_session_aborted(s))
        fy_log(FY_LOG_WARN, "worker", "path=%s: connection failed while sending the response",
               req->path);
}
