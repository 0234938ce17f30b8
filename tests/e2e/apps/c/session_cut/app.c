/* The e2e app of tests/e2e/test_session_cut_body.py and test_session_client_abort.py: responses
 * that end badly after their head, so that a cut body can be told from a complete one.
 *
 *   GET /pid                  200, the worker's pid in decimal (Content-Length)
 *   GET /chunks-then-die      200 without Content-Length, CHUNKS writes, then _exit(3)
 *   GET /length-then-die      200 with Content-Length: DECLARED, SHORT bytes in CHUNKS writes,
 *                             then _exit(3)
 *   GET /chunks-then-fail     as /chunks-then-die, then on_request returns FERRY_ERROR
 *   GET /length-then-fail     as /length-then-die, then on_request returns FERRY_ERROR
 *   GET /die-before-head      _exit(3) before anything is sent; with ?ms=N after N ms (N <= 10000)
 *   GET /count                200, the pid, like /pid
 *   GET /stream               200 without Content-Length, "tick N\n" every 10 ms until a write
 *                             fails (at most STREAM_TICKS_MAX ticks: 60 s); with ?ms=N it
 *                             computes (sleeps) N ms before its head
 *   GET /streams-stopped      how many /stream responses this worker stopped on a failed write
 *   GET /first-then-wait      200 without Content-Length: "first\n", then 2 s later "second\n"
 *
 * The routes named *-then-* stream as an app that produces its body slowly does: PAUSE_MS after
 * each write, so every piece is due at the client before the app goes on (a worker may coalesce
 * writes that follow each other closely, not ones that wait).
 *
 * The worker is the process that calls on_request, so _exit(3) is "the worker dies". When the
 * environment names a file in SESSION_CUT_LOG, /die-before-head, /count and /stream append a line
 * "<path> <pid>\n" to it when they start, so a test can see which requests ran, where, and how
 * often. */
#include <errno.h>
#include <fcntl.h>
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNKS 3
#define DECLARED 1000
#define SHORT 300
#define STREAM_TICK_MS 10
#define STREAM_TICKS_MAX 6000
#define PAUSE_MS 20
#define WAIT_MS 2000

static unsigned long streams_stopped;

/* Appends "<path> <pid>\n" to $SESSION_CUT_LOG, when it is set, in one write. */
static void note_start(const char *path)
{
    const char *file = getenv("SESSION_CUT_LOG");
    if (file == NULL || *file == '\0')
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %d\n", path, (int)getpid());
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd == -1)
        return;
    if (write(fd, line, (size_t)n) != n)
        ferry_log(FERRY_LOG_ERROR, "cannot append to %s", file);
    close(fd);
}

/* N of the query "ms=N" when 0 <= N <= 10000, else 0. */
static long query_ms(ferry_request_t *req)
{
    const char *q = ferry_request_query(req);
    if (strncmp(q, "ms=", 3) != 0)
        return 0;
    char *end;
    long ms = strtol(q + 3, &end, 10);
    return (*end == '\0' && end != q + 3 && ms >= 0 && ms <= 10000) ? ms : 0;
}

static void sleep_ms(long ms)
{
    struct timespec wait = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) == -1 && errno == EINTR)
        ;
}

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

/* Writes "chunk-1\n" .. "chunk-CHUNKS\n", one ferry_response_write each, PAUSE_MS apart,
 * without a Content-Length (the core chunks it). */
static int write_chunks(ferry_request_t *req)
{
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    for (int i = 1; i <= CHUNKS && rc == FERRY_OK; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "chunk-%d\n", i);
        rc = ferry_response_write(req, line, (size_t)n);
        sleep_ms(PAUSE_MS);
    }
    return rc;
}

/* Declares DECLARED bytes and writes SHORT of them ('a') in CHUNKS writes, PAUSE_MS apart. */
static int write_short(ferry_request_t *req)
{
    char len[32];
    snprintf(len, sizeof len, "%d", DECLARED);
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}, {"Content-Length", len}};
    int rc = ferry_response_start(req, 200, fields, 2);
    char piece[SHORT / CHUNKS];
    memset(piece, 'a', sizeof piece);
    for (int i = 0; i < CHUNKS && rc == FERRY_OK; i++) {
        rc = ferry_response_write(req, piece, sizeof piece);
        sleep_ms(PAUSE_MS);
    }
    return rc;
}

static int route_first_then_wait(ferry_request_t *req)
{
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, "first\n", 6);
    sleep_ms(WAIT_MS);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, "second\n", 7);
    return rc;
}

static int route_stream(ferry_request_t *req)
{
    note_start(ferry_request_path(req));
    sleep_ms(query_ms(req));
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    for (int i = 1; i <= STREAM_TICKS_MAX && rc == FERRY_OK; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "tick %d\n", i);
        rc = ferry_response_write(req, line, (size_t)n);
        if (rc != FERRY_OK) {
            streams_stopped++;
            return rc;
        }
        sleep_ms(STREAM_TICK_MS);
    }
    return rc;
}

static int on_request(ferry_request_t *req)
{
    const char *path = ferry_request_path(req);
    char text[32];
    if (strcmp(path, "/pid") == 0) {
        snprintf(text, sizeof text, "%d", (int)getpid());
        return respond_text(req, 200, text);
    }
    if (strcmp(path, "/chunks-then-die") == 0) {
        write_chunks(req);
        _exit(3);
    }
    if (strcmp(path, "/length-then-die") == 0) {
        write_short(req);
        _exit(3);
    }
    if (strcmp(path, "/chunks-then-fail") == 0) {
        int rc = write_chunks(req);
        return rc == FERRY_OK ? FERRY_ERROR : rc;
    }
    if (strcmp(path, "/length-then-fail") == 0) {
        int rc = write_short(req);
        return rc == FERRY_OK ? FERRY_ERROR : rc;
    }
    if (strcmp(path, "/die-before-head") == 0) {
        note_start(path);
        sleep_ms(query_ms(req));
        _exit(3);
    }
    if (strcmp(path, "/count") == 0) {
        note_start(path);
        snprintf(text, sizeof text, "%d", (int)getpid());
        return respond_text(req, 200, text);
    }
    if (strcmp(path, "/stream") == 0)
        return route_stream(req);
    if (strcmp(path, "/first-then-wait") == 0)
        return route_first_then_wait(req);
    if (strcmp(path, "/streams-stopped") == 0) {
        snprintf(text, sizeof text, "%lu", streams_stopped);
        return respond_text(req, 200, text);
    }
    return respond_text(req, 404, "not found\n");
}

int ferry_app_init(ferry_init_t *init)
{
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
