/* The bench's native ferry app (include/ferry.h): the same three routes as
 * bench/apps/{wsgi,rack,fcgi}. bench/run.py compiles it into build-release/bench-apps/c/app.so.
 *   GET /hello  -> 200 text/plain, 12 bytes "hello world\n"
 *   GET /1m     -> 200 application/octet-stream, 1 MiB (byte i is i % 251)
 *   POST /echo  -> 200 application/octet-stream, the request body, streamed back in 64 KiB
 *                  pieces (Content-Length taken from the request)
 * and, for the session-protocol rows only (docs/performance.md):
 *   GET /20m       -> 200 application/octet-stream, 20 MiB (the 1 MiB pattern 20 times), written
 *                     1 MiB at a time (the slow-reader run)
 *   GET /mix/fast  -> 200 text/plain, the query string as the body (the mixed run's Lua script
 *                     sends its send time there and reads it back to time each request)
 *   GET /mix/slow  -> the same after sleeping 200 ms
 *   anything else -> 404 */
#include <ferry.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MIB_LEN (1u << 20)
#define PIECE (64u * 1024u)
#define BIG_MIBS 20
#define SLOW_MS 200
#define ECHO_MAX 256

static char mib[MIB_LEN];

static int answer_echo(ferry_request_t *req)
{
    char len[32];
    snprintf(len, sizeof len, "%" PRIu64, ferry_request_content_length(req));
    ferry_field_t fields[] = {
        {"Content-Type", "application/octet-stream"},
        {"Content-Length", len},
    };
    int rc = ferry_response_start(req, 200, fields, 2);
    static char piece[PIECE];
    for (;;) {
        if (rc != FERRY_OK)
            return rc;
        ssize_t n = ferry_request_read(req, piece, sizeof piece);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return ferry_response_end(req);
        rc = ferry_response_write(req, piece, (size_t)n);
    }
}

/* /mix/fast and /mix/slow: the query string back as the body (at most ECHO_MAX bytes). */
static int answer_mix(ferry_request_t *req, int slow)
{
    if (slow) {
        struct timespec ts = {SLOW_MS / 1000, (SLOW_MS % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    const char *q = ferry_request_query(req);
    size_t n = strnlen(q, ECHO_MAX);
    char len[32];
    snprintf(len, sizeof len, "%zu", n);
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", len}};
    int rc = ferry_response_start(req, 200, fields, 2);
    if (rc == FERRY_OK && n > 0)
        rc = ferry_response_write(req, q, n);
    return rc == FERRY_OK ? ferry_response_end(req) : rc;
}

static int answer_big(ferry_request_t *req)
{
    char len[32];
    snprintf(len, sizeof len, "%u", BIG_MIBS * MIB_LEN);
    ferry_field_t fields[] = {{"Content-Type", "application/octet-stream"},
                              {"Content-Length", len}};
    int rc = ferry_response_start(req, 200, fields, 2);
    for (int i = 0; i < BIG_MIBS && rc == FERRY_OK; i++)
        rc = ferry_response_write(req, mib, MIB_LEN);
    return rc;
}

static int on_request(ferry_request_t *req)
{
    const char *path = ferry_request_path(req);
    if (strncmp(path, "/mix/", 5) == 0) {
        if (strcmp(path + 5, "fast") == 0)
            return answer_mix(req, 0);
        if (strcmp(path + 5, "slow") == 0)
            return answer_mix(req, 1);
    }
    if (strcmp(path, "/20m") == 0)
        return answer_big(req);
    if (strcmp(path, "/hello") == 0) {
        ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "12"}};
        int rc = ferry_response_start(req, 200, fields, 2);
        return rc == FERRY_OK ? ferry_response_write(req, "hello world\n", 12) : rc;
    }
    if (strcmp(path, "/1m") == 0) {
        ferry_field_t fields[] = {{"Content-Type", "application/octet-stream"},
                                  {"Content-Length", "1048576"}};
        int rc = ferry_response_start(req, 200, fields, 2);
        return rc == FERRY_OK ? ferry_response_write(req, mib, MIB_LEN) : rc;
    }
    if (strcmp(path, "/echo") == 0 && strcmp(ferry_request_method(req), "POST") == 0)
        return answer_echo(req);
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", "10"}};
    int rc = ferry_response_start(req, 404, fields, 2);
    return rc == FERRY_OK ? ferry_response_write(req, "not found\n", 10) : rc;
}

int ferry_app_init(ferry_init_t *init)
{
    for (unsigned i = 0; i < MIB_LEN; i++)
        mib[i] = (char)(i % 251);
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
