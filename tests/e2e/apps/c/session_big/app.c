/* The e2e app of tests/e2e/test_session_slow_readers.py: large responses for clients that read
 * slowly or not at all.
 *
 *   GET /pid           200, the worker's pid in decimal
 *   GET /big?mib=N     200 with Content-Length N MiB (0 < N <= 1024), written in pieces of
 *                      PIECE bytes; the byte at offset k is k % 251, so a lost, repeated or
 *                      reordered piece shows (PIECE is a multiple of 251, 2^20 is not).
 *
 * When the environment names a file in SESSION_BIG_PROGRESS, /big keeps in it the number of body
 * bytes written so far (rewritten after every piece), so a test can see a worker held back. */
#include <fcntl.h>
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATTERN_PERIOD 251
#define PIECE (PATTERN_PERIOD * 261) /* 65511 bytes */
#define MIB_MAX 1024

static unsigned char piece[PIECE];

static int respond_text(ferry_request_t *req, int status, const char *body)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", strlen(body));
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", len}};
    int rc = ferry_response_start(req, status, fields, 2);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, body, strlen(body));
    return rc;
}

/* N of "mib=N" when the query is exactly that and 0 < N <= MIB_MAX, else 0. */
static unsigned long query_mib(ferry_request_t *req)
{
    const char *q = ferry_request_query(req);
    if (strncmp(q, "mib=", 4) != 0)
        return 0;
    char *end;
    unsigned long mib = strtoul(q + 4, &end, 10);
    return (*end == '\0' && end != q + 4 && mib <= MIB_MAX) ? mib : 0;
}

/* Rewrites $SESSION_BIG_PROGRESS (open at <fd>, or -1) to say <written>. */
static void note_progress(int fd, unsigned long long written)
{
    if (fd == -1)
        return;
    char text[32];
    int n = snprintf(text, sizeof text, "%20llu\n", written);
    if (pwrite(fd, text, (size_t)n, 0) != n)
        ferry_log(FERRY_LOG_ERROR, "cannot write the progress file");
}

static int route_big(ferry_request_t *req)
{
    unsigned long mib = query_mib(req);
    if (mib == 0)
        return respond_text(req, 400, "mib=1..1024\n");
    unsigned long long left = (unsigned long long)mib << 20;
    char len[32];
    snprintf(len, sizeof len, "%llu", left);
    ferry_field_t fields[] = {{"Content-Type", "application/octet-stream"},
                              {"Content-Length", len}};
    const char *progress = getenv("SESSION_BIG_PROGRESS");
    int fd = -1;
    if (progress != NULL && *progress != '\0')
        fd = open(progress, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    unsigned long long written = 0;
    note_progress(fd, written);
    int rc = ferry_response_start(req, 200, fields, 2);
    while (rc == FERRY_OK && left > 0) {
        size_t n = left < PIECE ? (size_t)left : PIECE;
        rc = ferry_response_write(req, piece, n);
        if (rc == FERRY_OK) {
            left -= n;
            written += n;
            note_progress(fd, written);
        }
    }
    if (fd != -1)
        close(fd);
    return rc;
}

static int on_request(ferry_request_t *req)
{
    const char *path = ferry_request_path(req);
    if (strcmp(path, "/pid") == 0) {
        char text[32];
        snprintf(text, sizeof text, "%d", (int)getpid());
        return respond_text(req, 200, text);
    }
    if (strcmp(path, "/big") == 0)
        return route_big(req);
    return respond_text(req, 404, "not found\n");
}

int ferry_app_init(ferry_init_t *init)
{
    for (size_t i = 0; i < PIECE; i++)
        piece[i] = (unsigned char)(i % PATTERN_PERIOD);
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
