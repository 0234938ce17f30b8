/* The C SDK (include/ferry.h): the request view over a parsed request block and the streaming
 * response writer. Every ferry_* symbol lives here; the ferry binary exports them to apps. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proto/resphead.h"
#include "worker/worker_internal.h"
#include "core/sys.h"

static const char password_var[] = "FERRY_CONNECT_PASSWORD";

const char *fy_worker_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

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

int fy_worker_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
                    return -errno;
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Parses a CONTENT_LENGTH value: decimal digits only, no sign, no overflow. */
static int parse_length(const char *s, uint64_t *out)
{
    if (*s == '\0')
        return -EPROTO;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EPROTO;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EPROTO;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int fy_worker_request_init(struct ferry_request *req, int fd, char *block, fy_reqblock_t *rb,
                           void *app_data, int body_timeout_ms)
{
    memset(req, 0, sizeof *req);
    req->fd = fd;
    req->block = block;
    req->rb = *rb;
    memset(rb, 0, sizeof *rb);
    req->app_data = app_data;
    req->body_timeout_ms = body_timeout_ms;
    req->names = fy_xcalloc(req->rb.count + 1, sizeof *req->names);
    req->values = fy_xcalloc(req->rb.count + 1, sizeof *req->values);
    for (size_t i = 0; i < req->rb.count; i++) {
        const fy_reqblock_pair_t *p = &req->rb.pairs[i];
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
    req->is_head = strcmp(req->method, "HEAD") == 0;
    const char *cl = ferry_request_var(req, "CONTENT_LENGTH");
    if (cl != NULL && parse_length(cl, &req->content_length) != 0)
        return -EPROTO;
    req->body_left = req->content_length;
    return 0;
}

void fy_worker_request_dispose(struct ferry_request *req)
{
    free(req->names);
    free(req->values);
    free(req->head);
    fy_reqblock_dispose(&req->rb);
    free(req->block);
    memset(req, 0, sizeof *req);
    req->fd = -1;
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
    return req->content_length;
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
    if (req->body_left == 0 || len == 0)
        return 0;
    if (len > req->body_left)
        len = (size_t)req->body_left;
    int64_t deadline = fy_monotonic_ms() + req->body_timeout_ms;
    for (;;) {
        ssize_t n = recv(req->fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            req->body_left -= (uint64_t)n;
            return n;
        }
        if (n == 0) {
            fy_log(FY_LOG_WARN, "worker",
                   "path=%s body_missing=%" PRIu64 ": connection ended inside the request body",
                   req->path, req->body_left);
            return FERRY_EIO;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return FERRY_EIO;
        int64_t left = deadline - fy_monotonic_ms();
        if (left <= 0) {
            fy_log(FY_LOG_WARN, "worker", "path=%s timeout_ms=%d: request body stalled", req->path,
                   req->body_timeout_ms);
            return FERRY_ETIMEDOUT;
        }
        struct pollfd pfd = {.fd = req->fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR)
            return FERRY_EIO;
    }
}

/* ---- response ---- */

/* An HTTP token character (RFC 9110 tchar). */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool valid_header(const char *name, const char *value)
{
    if (name == NULL || value == NULL || *name == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (!is_tchar(*p))
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

int ferry_response_start(ferry_request_t *req, int status, const ferry_field_t *fields,
                         size_t count)
{
    if (req == NULL || status < 100 || status > 999 || (fields == NULL && count > 0))
        return FERRY_EINVAL;
    if (req->status != 0)
        return FERRY_ESTATE;
    for (size_t i = 0; i < count; i++) {
        if (!valid_header(fields[i].name, fields[i].value))
            return FERRY_EINVAL;
    }
    char status_value[64];
    snprintf(status_value, sizeof status_value, "%d %s", status, fy_worker_status_reason(status));
    req->head_len = 0;
    int rc = head_append(req, "Status", status_value);
    for (size_t i = 0; rc == FERRY_OK && i < count; i++)
        rc = head_append(req, fields[i].name, fields[i].value);
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
    return head_append(req, name, value);
}

/* Sends the pending head followed by <len> bytes of <data> in one writev where possible. */
static int send_head(ferry_request_t *req, const void *data, size_t len)
{
    req->head_sent = true;
    struct iovec iov[3] = {
        {.iov_base = req->head, .iov_len = req->head_len},
        {.iov_base = (void *)"\r\n", .iov_len = 2},
        {.iov_base = (void *)data, .iov_len = len},
    };
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len > 0 ? 3 : 2};
    ssize_t n;
    do {
        n = sendmsg(req->fd, &msg, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);
    if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        req->io_failed = true;
        return FERRY_EIO;
    }
    /* Finish a partial write segment by segment. */
    size_t done = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < msg.msg_iovlen; i++) {
        size_t seg = iov[i].iov_len;
        if (done >= seg) {
            done -= seg;
            continue;
        }
        if (fy_worker_send_all(req->fd, (char *)iov[i].iov_base + done, seg - done) != 0) {
            req->io_failed = true;
            return FERRY_EIO;
        }
        done = 0;
    }
    return FERRY_OK;
}

int ferry_response_write(ferry_request_t *req, const void *data, size_t len)
{
    if (req == NULL || (data == NULL && len > 0))
        return FERRY_EINVAL;
    if (req->status == 0 || req->ended)
        return FERRY_ESTATE;
    if (req->io_failed)
        return FERRY_EIO;
    if (req->is_head)
        len = 0;
    if (!req->head_sent)
        return send_head(req, data, len);
    if (len == 0)
        return FERRY_OK;
    if (fy_worker_send_all(req->fd, data, len) != 0) {
        req->io_failed = true;
        return FERRY_EIO;
    }
    return FERRY_OK;
}

int ferry_response_end(ferry_request_t *req)
{
    if (req == NULL)
        return FERRY_EINVAL;
    if (req->status == 0)
        return FERRY_ESTATE;
    if (req->ended)
        return FERRY_OK;
    int rc = FERRY_OK;
    if (!req->head_sent)
        rc = req->io_failed ? FERRY_EIO : send_head(req, NULL, 0);
    req->ended = true;
    return req->io_failed ? FERRY_EIO : rc;
}

void fy_worker_request_finish(ferry_request_t *req, int rc)
{
    if (rc == FERRY_OK && req->status != 0) {
        if (ferry_response_end(req) != FERRY_OK)
            fy_log(FY_LOG_WARN, "worker", "path=%s: connection failed while sending the response",
                   req->path);
        return;
    }
    if (rc == FERRY_OK)
        fy_log(FY_LOG_ERROR, "worker",
               "method=%s path=%s: on_request returned without starting a response; answering 500",
               req->method, req->path);
    else if (!req->head_sent)
        fy_log(FY_LOG_ERROR, "worker", "method=%s path=%s rc=%d (%s): app failed; answering 500",
               req->method, req->path, rc, ferry_strerror(rc));
    else
        fy_log(FY_LOG_ERROR, "worker",
               "method=%s path=%s rc=%d (%s): app failed after the head was sent; closing",
               req->method, req->path, rc, ferry_strerror(rc));
    if (req->head_sent || req->io_failed)
        return;
    static const char body[] = "Internal Server Error\n";
    req->status = 0;
    req->ended = false;
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "22"}};
    if (ferry_response_start(req, 500, fields, 2) == FERRY_OK) {
        ferry_response_write(req, body, sizeof body - 1);
        ferry_response_end(req);
    }
}
