/* The C conformance app: the routes of tests/conformance/APPS.md on the ferry C SDK. */
#include <errno.h>
#include <ferry.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"

#define PIECE (64 * 1024)

static unsigned long close_count;
static unsigned char pattern[PIECE + 251];

static int respond(ferry_request_t *req, int status, const char *type, const char *body)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", strlen(body));
    ferry_field_t fields[] = {{"Content-Type", type}, {"Content-Length", len}};
    int rc = ferry_response_start(req, status, fields, 2);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, body, strlen(body));
    return rc;
}

/* The value of <name> in the query string, or NULL. Writes at most <cap> bytes into <out>. */
static const char *query_param(ferry_request_t *req, const char *name, char *out, size_t cap)
{
    const char *q = ferry_request_query(req);
    size_t nl = strlen(name);
    while (*q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return out;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return NULL;
}

static long query_long(ferry_request_t *req, const char *name, long fallback)
{
    char buf[32];
    if (query_param(req, name, buf, sizeof buf) == NULL)
        return fallback;
    char *end;
    long v = strtol(buf, &end, 10);
    return (*end == '\0' && end != buf && v >= 0) ? v : fallback;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int route_env(ferry_request_t *req)
{
    static const char *const listed[] = {"REQUEST_METHOD",  "PATH_INFO",     "QUERY_STRING",
                                         "SCRIPT_NAME",     "SERVER_NAME",   "SERVER_PORT",
                                         "SERVER_PROTOCOL", "REMOTE_ADDR",   "REMOTE_PORT",
                                         "CONTENT_TYPE",    "CONTENT_LENGTH"};
    size_t count = ferry_request_var_count(req);
    const char **names = calloc(count + 1, sizeof *names);
    if (names == NULL)
        return FERRY_ERROR;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name, *value;
        if (ferry_request_var_at(req, i, &name, &value) != FERRY_OK)
            continue;
        int keep = strncmp(name, "HTTP_", 5) == 0;
        for (size_t j = 0; !keep && j < sizeof listed / sizeof listed[0]; j++)
            keep = strcmp(name, listed[j]) == 0;
        if (keep)
            names[n++] = name;
    }
    qsort(names, n, sizeof *names, compare_names);
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    for (size_t i = 0; rc == FERRY_OK && i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        const char *value = ferry_request_var(req, names[i]);
        rc = ferry_response_write(req, names[i], strlen(names[i]));
        if (rc == FERRY_OK)
            rc = ferry_response_write(req, "=", 1);
        if (rc == FERRY_OK)
            rc = ferry_response_write(req, value, strlen(value));
        if (rc == FERRY_OK)
            rc = ferry_response_write(req, "\n", 1);
    }
    free(names);
    return rc;
}

static int route_sha256(ferry_request_t *req)
{
    sha256_t s;
    sha256_init(&s);
    char buf[65536];
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = ferry_request_read(req, buf, sizeof buf);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        sha256_update(&s, buf, (size_t)n);
        total += (unsigned long long)n;
    }
    char hex[65], body[128];
    sha256_final_hex(&s, hex);
    snprintf(body, sizeof body, "%llu %s\n", total, hex);
    return respond(req, 200, "text/plain", body);
}

static int route_echo(ferry_request_t *req)
{
    const char *type = ferry_request_var(req, "CONTENT_TYPE");
    if (type == NULL || *type == '\0')
        type = "application/octet-stream";
    char len[32];
    snprintf(len, sizeof len, "%llu", (unsigned long long)ferry_request_content_length(req));
    ferry_field_t fields[] = {{"Content-Type", type}, {"Content-Length", len}};
    int rc = ferry_response_start(req, 200, fields, 2);
    char buf[65536];
    while (rc == FERRY_OK) {
        ssize_t n = ferry_request_read(req, buf, sizeof buf);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        rc = ferry_response_write(req, buf, (size_t)n);
    }
    return rc;
}

static int route_stream(ferry_request_t *req)
{
    long mib = query_long(req, "mib", 1);
    ferry_field_t fields[] = {{"Content-Type", "application/octet-stream"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    unsigned long long offset = 0, total = (unsigned long long)mib * 1024 * 1024;
    while (rc == FERRY_OK && offset < total) {
        size_t piece = total - offset < PIECE ? (size_t)(total - offset) : PIECE;
        rc = ferry_response_write(req, pattern + offset % 251, piece);
        offset += piece;
    }
    return rc;
}

/* The pattern of /stream without end, until a write fails: the client left (v1) or the core
 * sent ABORT (v2, docs/protocol.md §4.3), so ferry_response_write returns an error. */
static int route_endless(ferry_request_t *req)
{
    ferry_field_t fields[] = {{"Content-Type", "application/octet-stream"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    unsigned long long offset = 0;
    while (rc == FERRY_OK) {
        rc = ferry_response_write(req, pattern + offset % 251, PIECE);
        offset += PIECE;
    }
    return rc;
}

/* Sends the head and a first chunk, then fails: the body is cut (END says APP_FAILED over v2,
 * docs/protocol.md §4.2). */
static int route_fail_after_head(ferry_request_t *req)
{
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, "first chunk\n", 12);
    if (rc != FERRY_OK)
        return rc;
    ferry_log(FERRY_LOG_ERROR, "conformance app: /fail-after-head: failing on purpose");
    return FERRY_ERROR;
}

static int route_cookies(ferry_request_t *req)
{
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "8"}};
    int rc = ferry_response_start(req, 200, fields, 2);
    if (rc == FERRY_OK)
        rc = ferry_response_add_header(req, "Set-Cookie", "a=1; Path=/");
    if (rc == FERRY_OK)
        rc = ferry_response_add_header(req, "Set-Cookie", "b=2; Path=/");
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, "cookies\n", 8);
    return rc;
}

static int route_status(ferry_request_t *req, const char *code_text)
{
    char *end;
    long code = strtol(code_text, &end, 10);
    if (*end != '\0' || end - code_text != 3 || code < 100 || code > 999)
        return respond(req, 404, "text/plain", "not found\n");
    if (code == 204 || code == 304 || code < 200)
        return ferry_response_start(req, (int)code, NULL, 0);
    char body[32];
    snprintf(body, sizeof body, "status %ld\n", code);
    return respond(req, (int)code, "text/plain", body);
}

static int route_slow(ferry_request_t *req)
{
    long ms = query_long(req, "ms", 0);
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    /* A signal (SIGQUIT, SIGUSR1) interrupts the sleep; sleep the remainder. */
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
    char body[48];
    snprintf(body, sizeof body, "slept %ld\n", ms);
    return respond(req, 200, "text/plain", body);
}

/* Sleeps forever: SIGQUIT's backtraces must name this function (exported, so that
 * backtrace_symbols can). */
void *conformance_parked_thread(void *arg);
__attribute__((noinline)) void *conformance_parked_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static int route_park_thread(ferry_request_t *req)
{
    static bool parked;
    if (!parked) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, conformance_parked_thread, NULL) != 0)
            return respond(req, 500, "text/plain", "pthread_create failed\n");
        pthread_detach(tid);
        parked = true;
    }
    return respond(req, 200, "text/plain", "parked\n");
}

static int on_request(ferry_request_t *req)
{
    const char *path = ferry_request_path(req);
    char body[64];
    if (strcmp(path, "/hello") == 0)
        return respond(req, 200, "text/plain", "hello world\n");
    if (strcmp(path, "/env") == 0)
        return route_env(req);
    if (strcmp(path, "/sha256") == 0)
        return route_sha256(req);
    if (strcmp(path, "/echo") == 0)
        return route_echo(req);
    if (strcmp(path, "/stream") == 0)
        return route_stream(req);
    if (strcmp(path, "/endless") == 0)
        return route_endless(req);
    if (strcmp(path, "/fail-after-head") == 0)
        return route_fail_after_head(req);
    if (strcmp(path, "/cookies") == 0)
        return route_cookies(req);
    if (strncmp(path, "/status/", 8) == 0)
        return route_status(req, path + 8);
    if (strcmp(path, "/raise") == 0) {
        ferry_log(FERRY_LOG_ERROR, "conformance app: /raise: failing on purpose");
        return FERRY_ERROR;
    }
    if (strcmp(path, "/slow") == 0)
        return route_slow(req);
    if (strcmp(path, "/park-thread") == 0)
        return route_park_thread(req);
    if (strcmp(path, "/pid") == 0) {
        snprintf(body, sizeof body, "%d", (int)getpid());
        return respond(req, 200, "text/plain", body);
    }
    if (strcmp(path, "/close-tracked") == 0) {
        int rc = respond(req, 200, "text/plain", "tracked\n");
        /* The C counterpart of body.close: the response was finished. */
        if (ferry_response_end(req) == FERRY_OK)
            close_count++;
        return rc;
    }
    if (strcmp(path, "/close-count") == 0) {
        snprintf(body, sizeof body, "%lu", close_count);
        return respond(req, 200, "text/plain", body);
    }
    return respond(req, 404, "text/plain", "not found\n");
}

int ferry_app_init(ferry_init_t *init)
{
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i % 251);
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
