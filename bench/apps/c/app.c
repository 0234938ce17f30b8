/* The bench's native ferry app (include/ferry.h): the same three routes as
 * bench/apps/{wsgi,rack,fcgi}. bench/run.py compiles it into build-release/bench-apps/c/app.so.
 *   GET /hello  -> 200 text/plain, 12 bytes "hello world\n"
 *   GET /1m     -> 200 application/octet-stream, 1 MiB (byte i is i % 251)
 *   POST /echo  -> 200 application/octet-stream, the request body, streamed back in 64 KiB
 *                  pieces (Content-Length taken from the request)
 *   anything else -> 404 */
#include <ferry.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MIB_LEN (1u << 20)
#define PIECE (64u * 1024u)

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

static int on_request(ferry_request_t *req)
{
    const char *path = ferry_request_path(req);
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
