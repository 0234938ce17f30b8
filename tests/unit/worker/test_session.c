/* The worker's end of a connection from the core (src/worker/session.c): v1 (docs/protocol.md
 * §2, §3) and session protocol v2 (§4) over a socketpair. The test plays the core on fds[1] and
 * mostly writes what the core would send before the session reads it; the few cases that need
 * the session to be waiting first use a thread that watches the main thread fall asleep. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sys.h"
#include "proto/frame.h"
#include "proto/reqblock.h"
#include "worker/session.h"

static const char secret[] = "0123456789abcdef0123456789abcdef";
static const char ok_head[] = "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n";

static int fds[2] = {-1, -1}; /* fds[0]: the worker (session) side, fds[1]: the core side */
static fy_worker_session_t s;
static fy_worker_session_config_t cfg;
static FILE *log_file;

#define PAIRS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void setup(void)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    memset(&s, 0, sizeof s);
    cfg = (fy_worker_session_config_t){
        .secret = secret, .header_timeout_ms = 500, .body_timeout_ms = 500, .stop = NULL};
    log_file = tmpfile();
    cr_assert_not_null(log_file);
    fy_log_set_fd(fileno(log_file));
}

static void teardown(void)
{
    fy_worker_session_dispose(&s);
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    fds[0] = fds[1] = -1;
    fy_log_set_fd(2);
    fclose(log_file);
}

TestSuite(session, .init = setup, .fini = teardown, .timeout = 20);

/* Everything logged so far in this test. */
static const char *log_text(void)
{
    static char buf[65536];
    ssize_t n = pread(fileno(log_file), buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void assert_logged(const char *what)
{
    const char *text = log_text();
    cr_assert_not_null(strstr(text, what), "log lacks \"%s\":\n%s", what, text);
}

/* ---- the core's side: writing ------------------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void core_write(const void *data, size_t len)
{
    cr_assert_eq(write_all(fds[1], data, len), 0, "core write: %s", strerror(errno));
}

static void core_done(void)
{
    cr_assert_eq(shutdown(fds[1], SHUT_WR), 0);
}

/* A header with every field free, for frames the codec would refuse to encode. */
static void raw_header(uint8_t out[FY_FRAME_HEADER_LEN], uint32_t len, uint8_t type,
                       uint8_t flags, uint16_t reserved, uint32_t id)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    out[4] = type;
    out[5] = flags;
    out[6] = (uint8_t)(reserved >> 8);
    out[7] = (uint8_t)reserved;
    out[8] = (uint8_t)(id >> 24);
    out[9] = (uint8_t)(id >> 16);
    out[10] = (uint8_t)(id >> 8);
    out[11] = (uint8_t)id;
}

static void core_raw(uint32_t len, uint8_t type, uint8_t flags, uint16_t reserved, uint32_t id)
{
    uint8_t h[FY_FRAME_HEADER_LEN];
    raw_header(h, len, type, flags, reserved, id);
    core_write(h, sizeof h);
}

/* Builds a valid frame (header, then payload) into <out>; returns its size. */
static size_t build_frame(uint8_t *out, uint8_t type, uint32_t id, const void *payload,
                          size_t len)
{
    fy_frame_encode_header(out, type, 0, id, (uint32_t)len);
    if (len > 0)
        memcpy(out + FY_FRAME_HEADER_LEN, payload, len);
    return FY_FRAME_HEADER_LEN + len;
}

static void core_frame(uint8_t type, uint32_t id, const void *payload, size_t len)
{
    uint8_t h[FY_FRAME_HEADER_LEN];
    fy_frame_encode_header(h, type, 0, id, (uint32_t)len);
    core_write(h, sizeof h);
    if (len > 0)
        core_write(payload, len);
}

static void core_hello(const char *password)
{
    core_frame(FY_FRAME_HELLO, 0, password, strlen(password));
}

/* The request block of <pairs> (name, value, ..., NULL) and, unless <password> is NULL, the
 * connect password, in wire form (u32 prefix first). */
static fy_reqblock_builder_t block_of(const char *const *pairs, const char *password)
{
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        cr_assert_eq(fy_reqblock_add_str(&b, pairs[i], pairs[i + 1]), 0);
    if (password != NULL)
        cr_assert_eq(fy_reqblock_add_str(&b, "FERRY_CONNECT_PASSWORD", password), 0);
    return b;
}

/* A v1 request: the u32-prefixed block, then <body> (may be NULL). */
static void core_v1(const char *const *pairs, const char *password, const char *body)
{
    fy_reqblock_builder_t b = block_of(pairs, password);
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    core_write(wire, len);
    fy_reqblock_builder_dispose(&b);
    if (body != NULL)
        core_write(body, strlen(body));
}

/* REQ(<id>): the block of §2 without its prefix. */
static void core_req_pw(uint32_t id, const char *const *pairs, const char *password)
{
    fy_reqblock_builder_t b = block_of(pairs, password);
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    core_frame(FY_FRAME_REQ, id, wire + 4, len - 4);
    fy_reqblock_builder_dispose(&b);
}

static void core_req(uint32_t id, const char *const *pairs)
{
    core_req_pw(id, pairs, secret);
}

static void core_body(uint32_t id, const char *bytes)
{
    core_frame(FY_FRAME_BODY, id, bytes, strlen(bytes));
}

static void core_eob(uint32_t id)
{
    core_frame(FY_FRAME_EOB, id, NULL, 0);
}

static void core_abort(uint32_t id)
{
    core_frame(FY_FRAME_ABORT, id, NULL, 0);
}

/* A GET of <path> with no body: REQ(<id>) and EOB(<id>). */
static void core_get(uint32_t id, const char *path)
{
    core_req(id, PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", path));
    core_eob(id);
}

/* ---- the core's side: reading -------------------------------------------------------------- */

static uint8_t got[1u << 20];
static size_t got_len, got_off;

/* Takes what the worker has sent so far, without waiting. */
static void core_take(void)
{
    for (;;) {
        cr_assert_lt(got_len, sizeof got, "the worker sent more than the test expects");
        ssize_t n = recv(fds[1], got + got_len, sizeof got - got_len, MSG_DONTWAIT);
        if (n > 0) {
            got_len += (size_t)n;
            continue;
        }
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        cr_assert_eq(errno, EINTR, "core recv: %s", strerror(errno));
    }
}

/* Ends the worker side (dispose, close) and takes everything it sent, up to EOF. */
static void finish_and_take(void)
{
    fy_worker_session_dispose(&s);
    close(fds[0]);
    fds[0] = -1;
    for (;;) {
        struct pollfd pfd = {.fd = fds[1], .events = POLLIN};
        cr_assert_eq(poll(&pfd, 1, 2000), 1, "no EOF from the worker side");
        cr_assert_lt(got_len, sizeof got, "the worker sent more than the test expects");
        ssize_t n = read(fds[1], got + got_len, sizeof got - got_len);
        /* A worker that closes with the core's bytes unread resets the connection: the bytes
         * it sent before are read first all the same. */
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        cr_assert_gt(n, 0, "core read: %s", strerror(errno));
        got_len += (size_t)n;
    }
}

static const char *type_name(uint8_t t)
{
    return fy_frame_type_name(t);
}

/* The next frame the worker sent must be <type>(<id>) with <flags> and exactly <payload>. */
static void expect_frame(uint8_t type, uint8_t flags, uint32_t id, const void *payload,
                         size_t len)
{
    fy_frame_t f;
    size_t used;
    int rc = fy_frame_decode(got + got_off, got_len - got_off, FY_FRAME_TO_CORE, &f, &used);
    cr_assert_eq(rc, 1, "expected %s(%u) at offset %zu of %zu, decode: %d", type_name(type), id,
                 got_off, got_len, rc);
    cr_assert_eq(f.type, type, "expected %s(%u), got %s(%u)", type_name(type), id,
                 type_name(f.type), f.id);
    cr_assert_eq(f.id, id, "%s: expected id %u, got %u", type_name(type), id, f.id);
    cr_assert_eq(f.flags, flags, "%s(%u): flags 0x%02x, expected 0x%02x", type_name(type), id,
                 f.flags, flags);
    cr_assert_eq(f.len, len, "%s(%u): %u payload bytes, expected %zu", type_name(type), id,
                 f.len, len);
    if (len > 0)
        cr_assert_eq(memcmp(f.payload, payload, len), 0, "%s(%u): payload differs",
                     type_name(type), id);
    got_off += used;
}

static void expect_head(uint32_t id, const char *head)
{
    expect_frame(FY_FRAME_HEAD, 0, id, head, strlen(head));
}

/* One or more DATA(<id>) frames whose payloads together are exactly <len> bytes of <body>. */
static void expect_data_n(uint32_t id, const void *body, size_t len)
{
    size_t have = 0;
    while (have < len) {
        fy_frame_t f;
        size_t used;
        int rc = fy_frame_decode(got + got_off, got_len - got_off, FY_FRAME_TO_CORE, &f, &used);
        cr_assert_eq(rc, 1, "expected DATA(%u) at offset %zu, decode: %d", id, got_off, rc);
        cr_assert_eq(f.type, FY_FRAME_DATA, "expected DATA(%u), got %s(%u) after %zu of %zu bytes",
                     id, type_name(f.type), f.id, have, len);
        cr_assert_eq(f.id, id);
        cr_assert_eq(f.flags, 0);
        cr_assert_gt(f.len, 0, "an empty DATA frame");
        cr_assert_leq(f.len, FY_FRAME_DATA_MAX);
        cr_assert_leq(have + f.len, len, "DATA(%u) past the body: %zu bytes", id, have + f.len);
        cr_assert_eq(memcmp(f.payload, (const uint8_t *)body + have, f.len), 0,
                     "DATA(%u) differs from byte %zu", id, have);
        have += f.len;
        got_off += used;
    }
}

static void expect_data(uint32_t id, const char *body)
{
    expect_data_n(id, body, strlen(body));
}

static void expect_end(uint32_t id, uint8_t flags)
{
    expect_frame(FY_FRAME_END, flags, id, NULL, 0);
}

static void expect_nothing_more(void)
{
    cr_assert_eq(got_off, got_len, "%zu unexpected bytes from the worker at offset %zu",
                 got_len - got_off, got_off);
}

/* The raw v1 response must be exactly <text>. */
static void expect_v1_output(const char *text)
{
    size_t len = strlen(text);
    got[got_len < sizeof got ? got_len : sizeof got - 1] = '\0';
    cr_assert_eq(got_len, len, "v1 output of %zu bytes, expected %zu: \"%s\"", got_len, len,
                 (const char *)got);
    cr_assert_eq(memcmp(got, text, len), 0, "v1 output \"%s\", expected \"%s\"",
                 (const char *)got, text);
}

/* ---- the worker's side ---------------------------------------------------------------------- */

static void open_v2(void)
{
    core_hello(secret);
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(s.version, 2);
    cr_assert_eq(s.id, 0);
}

static void next_is(uint32_t id, const char *path, uint64_t content_length)
{
    cr_assert_eq(fy_worker_session_next_request(&s), 1);
    cr_assert_eq(s.id, id, "request id %u, expected %u", s.id, id);
    cr_assert_str_eq(s.path, path);
    cr_assert_eq(s.content_length, content_length);
    cr_assert(!fy_worker_session_aborted(&s));
}

/* Reads the whole body (pieces of at most <piece> bytes) and requires exactly <want>, then 0. */
static void read_body_is(const char *want, size_t piece)
{
    char buf[4096];
    size_t have = 0, len = strlen(want);
    cr_assert_leq(piece, sizeof buf);
    for (;;) {
        ssize_t n = fy_worker_session_read_body(&s, buf + have, piece);
        if (n == 0)
            break;
        cr_assert_gt(n, 0, "read_body: %zd after %zu bytes", n, have);
        cr_assert_leq((size_t)n, piece);
        have += (size_t)n;
        cr_assert_leq(have, len, "read_body past CONTENT_LENGTH");
        cr_assert_lt(have + piece, sizeof buf);
    }
    cr_assert_eq(have, len, "read %zu body bytes, expected %zu", have, len);
    cr_assert_eq(memcmp(buf, want, len), 0);
    char c;
    cr_assert_eq(fy_worker_session_read_body(&s, &c, 1), 0, "read_body after the end");
}

static void respond(const char *body)
{
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, body, strlen(body)), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
}

/* ---- v1: open and one request (§2, §3) ------------------------------------------------------ */

Test(session, v1_block_is_recognised_and_served)
{
    core_v1(PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/echo", "QUERY_STRING", "",
                  "CONTENT_LENGTH", "5"),
            secret, "hello");
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(s.version, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), 1);
    cr_assert_str_eq(s.path, "/echo");
    cr_assert_eq(s.content_length, 5);
    cr_assert(!s.is_head);
    cr_assert_str_eq(fy_reqblock_get(&s.rb, "REQUEST_METHOD", NULL), "POST");
    cr_assert_str_eq(fy_reqblock_get(&s.rb, "QUERY_STRING", NULL), "");
    read_body_is("hello", 2);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "olleh", 5), 0);
    cr_assert(!fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0, "v1 carries one request");
    finish_and_take();
    expect_v1_output("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nolleh");
}

Test(session, v1_head_request_drops_body_writes)
{
    core_v1(PAIRS("REQUEST_METHOD", "HEAD", "PATH_INFO", "/"), secret, NULL);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 1);
    cr_assert(s.is_head);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "dropped", 7), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_v1_output(ok_head);
}

Test(session, v1_wrong_password_is_refused_without_reply)
{
    core_v1(PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/"), "0123456789abcdef0123456789abcdeX",
            NULL);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(s.version, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EACCES);
    assert_logged("refused a connection: wrong or missing connect password");
    finish_and_take();
    expect_v1_output("");
}

Test(session, v1_missing_password_is_refused)
{
    core_v1(PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/"), NULL, NULL);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -EACCES);
    finish_and_take();
    expect_v1_output("");
}

Test(session, v1_times_out_before_five_bytes)
{
    cfg.header_timeout_ms = 60;
    core_write("\0\0\0", 3);
    int64_t t0 = fy_monotonic_ms();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -ETIMEDOUT);
    int64_t took = fy_monotonic_ms() - t0;
    cr_assert_geq(took, 55, "gave up after %lld ms", (long long)took);
    cr_assert_lt(took, 1000, "gave up after %lld ms", (long long)took);
    assert_logged("request block did not arrive in time");
}

Test(session, v1_times_out_inside_the_block)
{
    cfg.header_timeout_ms = 60;
    core_write("\0\0\0\x28REQUEST_METHOD", 18); /* a 40-byte block, 14 bytes of it */
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(s.version, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -ETIMEDOUT);
}

Test(session, v1_eof_after_four_bytes_is_a_reset)
{
    core_write("\0\0\0\x10", 4);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -ECONNRESET);
    assert_logged("connection ended inside the request block");
}

Test(session, v1_eof_at_once_is_a_reset)
{
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -ECONNRESET);
}

Test(session, v1_block_over_128_kib_is_refused_from_its_prefix)
{
    core_write("\0\x02\0\x01", 4); /* 131073: no more bytes come, no shutdown */
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EMSGSIZE);
}

Test(session, v1_malformed_block_is_refused)
{
    core_write("\0\0\0\x02" "A\0", 6); /* one item: a name without its value */
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    finish_and_take();
    expect_v1_output("");
}

Test(session, v1_bad_content_length_is_answered_400)
{
    core_v1(PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "12x"), secret,
            NULL);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    finish_and_take();
    expect_v1_output("Status: 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: "
                     "12\r\n\r\nbad request\n");
}

Test(session, v1_body_cut_by_eof_is_eio)
{
    core_v1(PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "10"), secret,
            "abc");
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 1);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
}

/* ---- v2: HELLO (§4.1) ------------------------------------------------------------------------ */

Test(session, v2_hello_with_the_secret_opens_a_session)
{
    open_v2();
    core_done();
    cr_assert_eq(fy_worker_session_next_request(&s), 0, "no request: the core closed");
    finish_and_take();
    expect_nothing_more();
    cr_assert_eq(got_len, 0);
}

Test(session, v2_wrong_secret_is_refused)
{
    core_hello("0123456789abcdef0123456789abcdeX");
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EACCES);
    cr_assert_eq(s.version, 2);
    assert_logged("refused a session: wrong connect password in HELLO");
    finish_and_take();
    cr_assert_eq(got_len, 0, "a refused session gets no reply");
}

Test(session, v2_secret_prefix_is_refused)
{
    core_hello("0123456789abcdef0123456789abcde");
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EACCES);
}

Test(session, v2_empty_hello_is_refused)
{
    core_frame(FY_FRAME_HELLO, 0, NULL, 0);
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EACCES);
}

Test(session, v2_oversized_hello_is_refused_from_its_header)
{
    core_raw(FY_FRAME_SECRET_MAX + 1, FY_FRAME_HELLO, 0, 0, 0); /* no payload, no shutdown */
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EMSGSIZE);
    assert_logged("session protocol violation");
}

Test(session, v2_hello_with_reserved_bits_is_eproto)
{
    core_raw(4, FY_FRAME_HELLO, 0, 0x0100, 0);
    core_write("abcd", 4);
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EPROTO);
}

Test(session, v2_hello_with_flags_is_eproto)
{
    core_raw(4, FY_FRAME_HELLO, 0x01, 0, 0);
    core_write("abcd", 4);
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EPROTO);
}

Test(session, v2_hello_with_an_id_is_eproto)
{
    core_raw((uint32_t)strlen(secret), FY_FRAME_HELLO, 0, 0, 1);
    core_write(secret, strlen(secret));
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EPROTO);
    assert_logged("not HELLO");
}

Test(session, v2_garbage_after_a_zero_fifth_byte_is_eproto)
{
    core_write("\0\0\0\x04\0\xff\xff\xff\xff\xff\xff\xff" "abcd", 16);
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EPROTO);
}

Test(session, v2_hello_cut_by_eof_is_eproto)
{
    core_raw((uint32_t)strlen(secret), FY_FRAME_HELLO, 0, 0, 0);
    core_write(secret, 10);
    core_done();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -EPROTO);
}

Test(session, v2_hello_that_stalls_times_out)
{
    cfg.header_timeout_ms = 60;
    core_raw((uint32_t)strlen(secret), FY_FRAME_HELLO, 0, 0, 0);
    int64_t t0 = fy_monotonic_ms();
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), -ETIMEDOUT);
    int64_t took = fy_monotonic_ms() - t0;
    cr_assert_geq(took, 55, "gave up after %lld ms", (long long)took);
    cr_assert_lt(took, 1000, "gave up after %lld ms", (long long)took);
    assert_logged("no complete HELLO within 60 ms");
}

/* ---- v2: requests (§4.3) --------------------------------------------------------------------- */

Test(session, v2_request_round_trip)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/echo", "CONTENT_LENGTH", "5"));
    core_body(1, "he");
    core_body(1, "llo");
    core_eob(1);
    core_done();
    next_is(1, "/echo", 5);
    cr_assert(!s.is_head);
    cr_assert_str_eq(fy_reqblock_get(&s.rb, "REQUEST_METHOD", NULL), "POST");
    read_body_is("hello", 64);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    core_take();
    cr_assert_eq(got_len, 0, "the HEAD waits for the first write");
    cr_assert_eq(fy_worker_session_write(&s, "hello ", 6), 0);
    core_take();
    cr_assert_gt(got_len, strlen(ok_head) + FY_FRAME_HEADER_LEN, "the HEAD left with the write");
    cr_assert_eq(fy_worker_session_write(&s, "world", 5), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "hello world");
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_body_read_in_small_pieces_across_frames)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "PUT", "PATH_INFO", "/p", "CONTENT_LENGTH", "11"));
    core_body(1, "abcd");
    core_body(1, "e");
    core_body(1, "fghijk");
    core_eob(1);
    core_done();
    next_is(1, "/p", 11);
    read_body_is("abcdefghijk", 3);
    respond("");
    finish_and_take();
    expect_head(1, ok_head);
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_two_requests_back_to_back_are_both_served)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/one", "CONTENT_LENGTH", "3"));
    core_body(1, "abc");
    core_eob(1);
    core_get(2, "/two");
    core_done();
    next_is(1, "/one", 3);
    read_body_is("abc", 64);
    respond("first");
    next_is(2, "/two", 0);
    cr_assert_str_eq(fy_reqblock_get(&s.rb, "REQUEST_METHOD", NULL), "GET");
    read_body_is("", 64);
    respond("second");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "first");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "second");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_end_discards_the_body_the_app_did_not_read)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/early", "CONTENT_LENGTH", "6"));
    core_body(1, "abc");
    core_body(1, "def");
    core_eob(1);
    core_get(2, "/next");
    core_done();
    next_is(1, "/early", 6);
    char c;
    cr_assert_eq(fy_worker_session_read_body(&s, &c, 1), 1);
    cr_assert_eq(c, 'a');
    respond("413");
    next_is(2, "/next", 0);
    respond("ok");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "413");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "ok");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_body_cut_by_eob_is_eio)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/cut", "CONTENT_LENGTH", "10"));
    core_body(1, "abc");
    core_eob(1);
    core_get(2, "/after");
    core_done();
    next_is(1, "/cut", 10);
    char buf[32];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("body_missing=7: EOB came before CONTENT_LENGTH bytes");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    next_is(2, "/after", 0);
    respond("x");
    finish_and_take();
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "x");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_end_with_app_failed_carries_the_flag)
{
    open_v2();
    core_get(1, "/fail");
    core_done();
    next_is(1, "/fail", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "part", 4), 0);
    cr_assert_eq(fy_worker_session_end(&s, FY_FRAME_END_APP_FAILED), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "part");
    expect_end(1, FY_FRAME_END_APP_FAILED);
    expect_nothing_more();
}

Test(session, v2_end_sends_a_head_that_no_write_took)
{
    open_v2();
    core_get(1, "/empty");
    core_done();
    next_is(1, "/empty", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "", 0), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_flush_sends_the_queued_head)
{
    open_v2();
    core_get(1, "/");
    core_done();
    next_is(1, "/", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_flush(&s), 0);
    core_take();
    expect_head(1, ok_head);
    expect_nothing_more();
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_head_request_drops_body_writes)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "HEAD", "PATH_INFO", "/h"));
    core_eob(1);
    core_done();
    next_is(1, "/h", 0);
    cr_assert(s.is_head);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "dropped", 7), 0);
    cr_assert_eq(fy_worker_session_write(&s, "also", 4), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_bad_content_length_is_answered_400_and_the_next_request_served)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/bad", "CONTENT_LENGTH", "-1"));
    core_body(1, "whatever");
    core_eob(1);
    core_get(2, "/good");
    core_done();
    next_is(2, "/good", 0);
    respond("fine");
    finish_and_take();
    expect_head(1, "Status: 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: "
                   "12\r\n\r\n");
    expect_data(1, "bad request\n");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "fine");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_core_closing_between_requests_ends_the_session)
{
    open_v2();
    core_get(1, "/");
    core_done();
    next_is(1, "/", 0);
    respond("a");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0, "still over");
    cr_assert_eq(fy_worker_session_next_request(&s), 0, "still over");
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "a");
    expect_end(1, 0);
    expect_nothing_more();
}

/* A thread that reads the core side to EOF, for responses larger than the socket buffers. */
struct sink {
    int fd;
    uint8_t *buf;
    size_t len, cap;
    int err;
};

static void *sink_main(void *arg)
{
    struct sink *k = arg;
    for (;;) {
        if (k->len == k->cap) {
            k->err = ENOBUFS;
            return NULL;
        }
        ssize_t n = read(k->fd, k->buf + k->len, k->cap - k->len);
        if (n == 0)
            return NULL;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            k->err = errno;
            return NULL;
        }
        k->len += (size_t)n;
    }
}

Test(session, v2_large_write_goes_out_in_frames_of_at_most_1_mib)
{
    open_v2();
    core_get(1, "/big");
    core_done();
    size_t len = FY_FRAME_DATA_MAX * 2 + 10;
    uint8_t *body = malloc(len);
    cr_assert_not_null(body);
    for (size_t i = 0; i < len; i++)
        body[i] = (uint8_t)(i % 251);
    struct sink k = {.fd = fds[1], .cap = len + 4096};
    k.buf = malloc(k.cap);
    cr_assert_not_null(k.buf);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, sink_main, &k), 0);
    next_is(1, "/big", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, body, len), 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    fy_worker_session_dispose(&s);
    close(fds[0]);
    fds[0] = -1;
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(k.err, 0, "sink: %s", strerror(k.err));
    /* Parse what the sink got with the same helpers. */
    size_t off = 0;
    fy_frame_t f;
    size_t used;
    cr_assert_eq(fy_frame_decode(k.buf, k.len, FY_FRAME_TO_CORE, &f, &used), 1);
    cr_assert_eq(f.type, FY_FRAME_HEAD);
    cr_assert_eq(f.len, strlen(ok_head));
    off += used;
    size_t have = 0, frames = 0;
    while (have < len) {
        cr_assert_eq(fy_frame_decode(k.buf + off, k.len - off, FY_FRAME_TO_CORE, &f, &used), 1);
        cr_assert_eq(f.type, FY_FRAME_DATA, "%s after %zu body bytes", type_name(f.type), have);
        cr_assert_eq(f.id, 1);
        cr_assert_leq(f.len, FY_FRAME_DATA_MAX);
        cr_assert_leq(have + f.len, len);
        cr_assert_eq(memcmp(f.payload, body + have, f.len), 0, "DATA differs after %zu", have);
        have += f.len;
        off += used;
        frames++;
    }
    cr_assert_geq(frames, 3, "%zu DATA frames for %zu bytes", frames, len);
    cr_assert_eq(fy_frame_decode(k.buf + off, k.len - off, FY_FRAME_TO_CORE, &f, &used), 1);
    cr_assert_eq(f.type, FY_FRAME_END);
    cr_assert_eq(f.flags, 0);
    cr_assert_eq(off + used, k.len, "bytes after END");
    free(k.buf);
    free(body);
}

/* A thread that writes the core's side, for requests larger than the socket buffers. */
struct source {
    int fd;
    const uint8_t *buf;
    size_t len;
    int err;
};

static void *source_main(void *arg)
{
    struct source *k = arg;
    if (write_all(k->fd, k->buf, k->len) != 0)
        k->err = errno;
    else if (shutdown(k->fd, SHUT_WR) != 0)
        k->err = errno;
    return NULL;
}

Test(session, v2_full_size_body_frames_are_read_exactly)
{
    size_t blen = FY_FRAME_DATA_MAX * 2 + 5;
    uint8_t *body = malloc(blen);
    cr_assert_not_null(body);
    for (size_t i = 0; i < blen; i++)
        body[i] = (uint8_t)(i * 7 % 253);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", blen);
    fy_reqblock_builder_t b =
        block_of(PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/up", "CONTENT_LENGTH", cl),
                 secret);
    const uint8_t *block;
    size_t block_len;
    fy_reqblock_finish(&b, &block, &block_len);
    size_t cap = 3 * FY_FRAME_HEADER_LEN + 64 + block_len + blen + 5 * FY_FRAME_HEADER_LEN;
    uint8_t *wire = malloc(cap);
    cr_assert_not_null(wire);
    size_t n = build_frame(wire, FY_FRAME_HELLO, 0, secret, strlen(secret));
    n += build_frame(wire + n, FY_FRAME_REQ, 1, block + 4, block_len - 4);
    n += build_frame(wire + n, FY_FRAME_BODY, 1, body, FY_FRAME_DATA_MAX);
    n += build_frame(wire + n, FY_FRAME_BODY, 1, body + FY_FRAME_DATA_MAX, FY_FRAME_DATA_MAX);
    n += build_frame(wire + n, FY_FRAME_BODY, 1, body + 2 * FY_FRAME_DATA_MAX, 5);
    n += build_frame(wire + n, FY_FRAME_EOB, 1, NULL, 0);
    cr_assert_leq(n, cap);
    fy_reqblock_builder_dispose(&b);
    struct source k = {.fd = fds[1], .buf = wire, .len = n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, source_main, &k), 0);
    cfg.header_timeout_ms = cfg.body_timeout_ms = 5000;
    cr_assert_eq(fy_worker_session_open(&s, fds[0], &cfg), 0);
    cr_assert_eq(s.version, 2);
    next_is(1, "/up", blen);
    uint8_t *got_body = malloc(blen + 1);
    cr_assert_not_null(got_body);
    size_t have = 0;
    for (;;) {
        ssize_t r = fy_worker_session_read_body(&s, got_body + have, 100000);
        if (r == 0)
            break;
        cr_assert_gt(r, 0, "read_body: %zd after %zu", r, have);
        have += (size_t)r;
        cr_assert_leq(have, blen);
    }
    cr_assert_eq(have, blen);
    cr_assert_eq(memcmp(got_body, body, blen), 0);
    respond("got it");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(k.err, 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "got it");
    expect_end(1, 0);
    expect_nothing_more();
    free(got_body);
    free(wire);
    free(body);
}

/* ---- v2: ABORT (§4.3) ----------------------------------------------------------------------- */

Test(session, v2_abort_during_the_response_stops_it_and_the_session_goes_on)
{
    open_v2();
    core_get(1, "/stream");
    next_is(1, "/stream", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "before", 6), 0);
    /* The client leaves; the core sends ABORT and already the next request. */
    core_abort(1);
    core_get(2, "/next");
    core_done();
    cr_assert_eq(fy_worker_session_write(&s, "after", 5), -ECONNABORTED);
    cr_assert(fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_write(&s, "more", 4), -ECONNABORTED);
    cr_assert_eq(fy_worker_session_flush(&s), -ECONNABORTED);
    cr_assert_eq(fy_worker_session_end(&s, FY_FRAME_END_APP_FAILED), 0);
    assert_logged("id=1 path=/stream: ABORT: the client went away");
    next_is(2, "/next", 0);
    respond("two");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "before");
    expect_end(1, 0); /* APP_FAILED is dropped after an ABORT */
    expect_head(2, ok_head);
    expect_data(2, "two");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_abort_before_the_head_refuses_the_head)
{
    open_v2();
    core_get(1, "/slow");
    next_is(1, "/slow", 0);
    core_abort(1);
    core_done();
    /* The ABORT is in the socket, not yet read: send_head looks only at what is buffered, a
     * write would take it. A flush takes it too. */
    cr_assert_eq(fy_worker_session_flush(&s), -ECONNABORTED);
    cr_assert(fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), -ECONNABORTED);
    cr_assert_eq(fy_worker_session_end(&s, FY_FRAME_END_APP_FAILED), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_abort_while_the_body_is_read)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/up", "CONTENT_LENGTH", "6"));
    core_body(1, "abc");
    next_is(1, "/up", 6);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 3);
    core_abort(1);
    core_body(1, "def");
    core_eob(1);
    core_get(2, "/two");
    core_done();
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "def", 3), 0);
    cr_assert(fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), -ECONNABORTED);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    next_is(2, "/two", 0);
    respond("2");
    finish_and_take();
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "2");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_abort_after_head_queued_drops_the_head)
{
    open_v2();
    core_get(1, "/q");
    next_is(1, "/q", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    core_abort(1);
    core_done();
    cr_assert_eq(fy_worker_session_write(&s, "x", 1), -ECONNABORTED);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_end(1, 0); /* the queued HEAD never went out */
    expect_nothing_more();
}

Test(session, v2_abort_of_an_ended_request_is_ignored)
{
    open_v2();
    core_get(1, "/one");
    next_is(1, "/one", 0);
    respond("1");
    /* ABORT(1) crossed END(1) on the wire, twice over: between requests and inside the next. */
    core_abort(1);
    core_req(2, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/two", "CONTENT_LENGTH", "3"));
    core_abort(1);
    core_body(2, "abc");
    core_eob(2);
    core_done();
    next_is(2, "/two", 3);
    read_body_is("abc", 64);
    cr_assert(!fy_worker_session_aborted(&s));
    respond("2");
    cr_assert(!fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "1");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "2");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_abort_of_an_ended_request_during_a_response_is_ignored)
{
    open_v2();
    core_get(1, "/one");
    next_is(1, "/one", 0);
    respond("1");
    core_get(2, "/two");
    next_is(2, "/two", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    core_abort(1);
    core_done();
    cr_assert_eq(fy_worker_session_write(&s, "still", 5), 0);
    cr_assert(!fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "1");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "still");
    expect_end(2, 0);
    expect_nothing_more();
}

/* docs/protocol.md §4.3: "An ABORT for a request the worker has not started yet (it was
 * dispatched ahead) means: do not start it; read its body up to EOB and answer END(n) alone." */
Test(session, v2_abort_right_behind_a_req_is_not_started)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/gone", "CONTENT_LENGTH", "3"));
    core_abort(1);
    core_body(1, "abc");
    core_eob(1);
    core_get(2, "/two");
    core_done();
    next_is(2, "/two", 0);
    respond("2");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "2");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_abort_after_the_eob_of_a_request_written_ahead_is_not_started)
{
    open_v2();
    core_get(1, "/one");
    next_is(1, "/one", 0);
    /* Dispatch-ahead: request 2 and then its ABORT arrive while request 1 runs. */
    core_req(2, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/gone", "CONTENT_LENGTH", "2"));
    core_body(2, "xy");
    core_eob(2);
    core_abort(2);
    core_get(3, "/three");
    core_done();
    respond("1");
    next_is(3, "/three", 0);
    respond("3");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "1");
    expect_end(1, 0);
    expect_end(2, 0);
    expect_head(3, ok_head);
    expect_data(3, "3");
    expect_end(3, 0);
    expect_nothing_more();
}

Test(session, v2_abort_of_a_not_started_request_then_the_core_closes)
{
    open_v2();
    core_get(1, "/gone");
    core_abort(1);
    core_done();
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_end(1, 0);
    expect_nothing_more();
}

/* ---- v2: protocol violations from the core (§4.4) ------------------------------------------ */

/* After a violation the session reports it again and sends nothing. */
static void assert_broken(int rc)
{
    cr_assert_eq(fy_worker_session_next_request(&s), rc);
    assert_logged("session protocol violation");
    finish_and_take();
    expect_nothing_more();
}

Test(session, v2_unknown_frame_type_between_requests)
{
    open_v2();
    core_raw(0, 0x05, 0, 0, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    assert_broken(-EPROTO);
    cr_assert_eq(got_len, 0);
}

Test(session, v2_frame_of_the_other_direction_between_requests)
{
    open_v2();
    core_raw(0, FY_FRAME_END, 0, 0, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    assert_broken(-EPROTO);
}

Test(session, v2_req_with_flags_is_refused)
{
    open_v2();
    core_raw(0, FY_FRAME_REQ, 0x02, 0, 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
}

Test(session, v2_req_of_the_wrong_id)
{
    open_v2();
    core_get(2, "/");
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    assert_logged("REQ of id 2, expected 1");
    assert_broken(-EPROTO);
}

Test(session, v2_second_hello)
{
    open_v2();
    core_hello(secret);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
}

Test(session, v2_body_between_requests)
{
    open_v2();
    core_body(1, "abc");
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
}

Test(session, v2_abort_of_a_request_never_sent_between_requests)
{
    open_v2();
    core_abort(5);
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
}

Test(session, v2_req_over_its_limit_is_refused_from_its_header)
{
    open_v2();
    core_raw(FY_FRAME_BLOCK_MAX + 1, FY_FRAME_REQ, 0, 0, 1); /* no payload, no shutdown */
    cr_assert_eq(fy_worker_session_next_request(&s), -EMSGSIZE);
    assert_logged("a REQ frame of 131073 bytes, over its limit");
    assert_broken(-EMSGSIZE);
}

Test(session, v2_body_over_its_limit_is_refused_from_its_header)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "2000000"));
    core_raw(FY_FRAME_DATA_MAX + 1, FY_FRAME_BODY, 0, 0, 1);
    next_is(1, "/", 2000000);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("a BODY frame of 1048577 bytes, over its limit");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0, "the violation is reported by next_request");
    assert_broken(-EMSGSIZE);
}

Test(session, v2_body_of_the_wrong_id)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "3"));
    core_body(2, "abc");
    core_eob(1);
    next_is(1, "/", 3);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("BODY of id 2 inside request 1, before its EOB");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    assert_broken(-EPROTO);
}

Test(session, v2_eob_of_the_wrong_id_met_while_ending)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/"));
    core_eob(7);
    next_is(1, "/", 0);
    cr_assert_eq(fy_worker_session_end(&s, 0), -EPROTO);
    assert_broken(-EPROTO);
}

Test(session, v2_body_past_content_length)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "2"));
    core_body(1, "abc");
    core_eob(1);
    next_is(1, "/", 2);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("BODY past CONTENT_LENGTH");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    assert_broken(-EPROTO);
}

Test(session, v2_next_req_before_the_eob)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "3"));
    core_get(2, "/");
    next_is(1, "/", 3);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("REQ of id 2 inside request 1, before its EOB");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    assert_broken(-EPROTO);
}

Test(session, v2_malformed_block_in_req)
{
    open_v2();
    core_frame(FY_FRAME_REQ, 1, "NAME\0", 5); /* a name without its value */
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    assert_logged("malformed request block in REQ 1");
    assert_broken(-EPROTO);
}

Test(session, v2_req_without_the_password_is_refused)
{
    open_v2();
    core_req_pw(1, PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/"), NULL);
    core_eob(1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EACCES);
    cr_assert_eq(fy_worker_session_next_request(&s), -EACCES);
    finish_and_take();
    expect_nothing_more();
}

Test(session, v2_req_with_a_wrong_password_is_refused)
{
    open_v2();
    core_req_pw(1, PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/"), "nope");
    core_eob(1);
    cr_assert_eq(fy_worker_session_next_request(&s), -EACCES);
    assert_logged("wrong or missing connect password in REQ 1");
}

Test(session, v2_connection_ending_inside_a_frame_between_requests)
{
    open_v2();
    core_write("\0\0\0\x10\x01\0", 6);
    core_done();
    cr_assert_eq(fy_worker_session_next_request(&s), -EPROTO);
    assert_logged("the connection ended inside a frame (6 bytes of it)");
    assert_broken(-EPROTO);
}

Test(session, v2_connection_ending_inside_a_body)
{
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/", "CONTENT_LENGTH", "5"));
    core_body(1, "ab");
    core_done();
    next_is(1, "/", 5);
    char buf[16];
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), 2);
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -EIO);
    assert_logged("the connection ended inside request 1 (before its EOB)");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    assert_broken(-EPROTO);
}

Test(session, v2_frame_that_stalls_between_requests_times_out)
{
    cfg.header_timeout_ms = 60;
    open_v2();
    core_write("\0\0\0\x10\x01\0", 6);
    int64_t t0 = fy_monotonic_ms();
    cr_assert_eq(fy_worker_session_next_request(&s), -ETIMEDOUT);
    int64_t took = fy_monotonic_ms() - t0;
    cr_assert_geq(took, 55, "gave up after %lld ms", (long long)took);
    cr_assert_lt(took, 1000, "gave up after %lld ms", (long long)took);
    assert_broken(-ETIMEDOUT);
}

Test(session, v2_body_that_stalls_times_out)
{
    cfg.body_timeout_ms = 60;
    open_v2();
    core_req(1, PAIRS("REQUEST_METHOD", "POST", "PATH_INFO", "/slow", "CONTENT_LENGTH", "5"));
    next_is(1, "/slow", 5);
    char buf[16];
    int64_t t0 = fy_monotonic_ms();
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -ETIMEDOUT);
    int64_t took = fy_monotonic_ms() - t0;
    cr_assert_geq(took, 55, "gave up after %lld ms", (long long)took);
    cr_assert_lt(took, 1000, "gave up after %lld ms", (long long)took);
    assert_logged("request body stalled");
    cr_assert_eq(fy_worker_session_read_body(&s, buf, sizeof buf), -ETIMEDOUT);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -ETIMEDOUT);
    finish_and_take();
    expect_nothing_more();
}

/* ---- v2: soft stop (§4.3 Closing) ----------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;
static int wake[2] = {-1, -1};
static fy_worker_stop_t stop;

static void with_stop(void)
{
    stop_flag = 0;
    cr_assert_eq(pipe2(wake, O_NONBLOCK | O_CLOEXEC), 0);
    stop = (fy_worker_stop_t){.flag = &stop_flag, .wake_fd = wake[0]};
    cfg.stop = &stop;
}

static void close_wake(void)
{
    close(wake[0]);
    close(wake[1]);
}

/* Waits (bounded) until the thread <tid> is asleep: the session's only sleep is its poll. */
static void wait_asleep(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int64_t until = fy_monotonic_ms() + 3000;
    while (fy_monotonic_ms() < until) {
        char buf[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            return;
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        if (p != NULL && p[1] == ' ' && p[2] == 'S')
            return;
        sched_yield();
    }
}

struct waker {
    pid_t main_tid;
    bool raise_flag;     /* set the flag before the byte, as the SIGUSR1 handler does */
    const uint8_t *send; /* then write these bytes as the core, if any */
    size_t send_len;
    int err;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    wait_asleep(w->main_tid);
    if (w->raise_flag) {
        stop_flag = 1;
        if (write(wake[1], "x", 1) != 1)
            w->err = errno;
    }
    if (w->send_len > 0 && write_all(fds[1], w->send, w->send_len) != 0)
        w->err = errno;
    return NULL;
}

Test(session, v2_soft_stop_while_idle_wakes_the_session)
{
    with_stop();
    open_v2();
    struct waker w = {.main_tid = (pid_t)syscall(SYS_gettid), .raise_flag = true};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w), 0);
    int64_t t0 = fy_monotonic_ms();
    cr_assert_eq(fy_worker_session_next_request(&s), -ECANCELED);
    cr_assert_lt(fy_monotonic_ms() - t0, 2000);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(w.err, 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -ECANCELED, "still stopping");
    finish_and_take();
    expect_nothing_more();
    close_wake();
}

Test(session, v2_soft_stop_already_raised_starts_no_request)
{
    with_stop();
    open_v2();
    core_get(1, "/");
    stop_flag = 1;
    cr_assert_eq(write(wake[1], "x", 1), 1);
    cr_assert_eq(fy_worker_session_next_request(&s), -ECANCELED);
    finish_and_take();
    expect_nothing_more();
    close_wake();
}

Test(session, v2_wake_byte_without_the_flag_is_drained_and_the_wait_goes_on)
{
    with_stop();
    open_v2();
    cr_assert_eq(write(wake[1], "x", 1), 1);
    uint8_t wire[256];
    fy_reqblock_builder_t b = block_of(PAIRS("REQUEST_METHOD", "GET", "PATH_INFO", "/w"), secret);
    const uint8_t *block;
    size_t block_len;
    fy_reqblock_finish(&b, &block, &block_len);
    cr_assert_lt(block_len + 2 * FY_FRAME_HEADER_LEN, sizeof wire);
    size_t n = build_frame(wire, FY_FRAME_REQ, 1, block + 4, block_len - 4);
    n += build_frame(wire + n, FY_FRAME_EOB, 1, NULL, 0);
    fy_reqblock_builder_dispose(&b);
    struct waker w = {.main_tid = (pid_t)syscall(SYS_gettid), .send = wire, .send_len = n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w), 0);
    next_is(1, "/w", 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(w.err, 0);
    char c;
    cr_assert_eq(read(wake[0], &c, 1), -1, "the wake byte was not taken");
    cr_assert_eq(errno, EAGAIN);
    respond("w");
    core_done();
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "w");
    expect_end(1, 0);
    expect_nothing_more();
    close_wake();
}

Test(session, v2_soft_stop_during_a_request_ends_it_with_closing)
{
    with_stop();
    open_v2();
    core_get(1, "/slow");
    core_get(2, "/ahead"); /* dispatched ahead: must not start */
    core_done();
    next_is(1, "/slow", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    stop_flag = 1;
    cr_assert_eq(write(wake[1], "x", 1), 1);
    cr_assert_eq(fy_worker_session_write(&s, "done", 4), 0, "the request still finishes");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -ECANCELED);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "done");
    expect_end(1, FY_FRAME_END_CLOSING);
    expect_nothing_more();
    close_wake();
}

Test(session, v2_soft_stop_during_a_failed_request_keeps_both_flags)
{
    with_stop();
    open_v2();
    core_get(1, "/fail");
    core_done();
    next_is(1, "/fail", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "pa", 2), 0);
    stop_flag = 1;
    cr_assert_eq(fy_worker_session_end(&s, FY_FRAME_END_APP_FAILED), 0);
    cr_assert_eq(fy_worker_session_next_request(&s), -ECANCELED);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "pa");
    expect_end(1, FY_FRAME_END_APP_FAILED | FY_FRAME_END_CLOSING);
    expect_nothing_more();
    close_wake();
}

Test(session, v2_a_write_in_the_first_millisecond_does_not_look_for_an_abort)
{
    /* The runtime's interval, stretched so that the test cannot cross it: within it a write makes
     * no system call to look for an ABORT; the request ends normally, and the ABORT that crossed
     * its END is ignored before the next request. */
    cfg.abort_probe_ms = 60000;
    open_v2();
    core_get(1, "/quick");
    next_is(1, "/quick", 0);
    core_abort(1);
    core_get(2, "/next");
    core_done();
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write(&s, "quick", 5), 0);
    cr_assert(!fy_worker_session_aborted(&s));
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    next_is(2, "/next", 0);
    respond("two");
    cr_assert_eq(fy_worker_session_next_request(&s), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data(1, "quick");
    expect_end(1, 0);
    expect_head(2, ok_head);
    expect_data(2, "two");
    expect_end(2, 0);
    expect_nothing_more();
}

Test(session, v2_a_final_write_leaves_with_the_end_in_one_message)
{
    open_v2();
    core_get(1, "/");
    core_done();
    next_is(1, "/", 0);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write_final(&s, "hello", 5), 0);
    /* Nothing has left yet: head and data wait for the END. */
    char c;
    cr_assert_eq(recv(fds[1], &c, 1, MSG_DONTWAIT), -1);
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    /* One message: HEAD, DATA and END readable at once. */
    uint8_t buf[512];
    ssize_t n = recv(fds[1], buf, sizeof buf, MSG_DONTWAIT);
    size_t want = 3 * FY_FRAME_HEADER_LEN + strlen(ok_head) + 5;
    cr_assert_eq(n, (ssize_t)want, "got %zd of %zu bytes", n, want);
    memcpy(got, buf, (size_t)n);
    got_len = (size_t)n;
    expect_head(1, ok_head);
    expect_data(1, "hello");
    expect_end(1, 0);
    expect_nothing_more();
}

Test(session, v2_a_large_final_write_goes_out_at_once)
{
    open_v2();
    core_get(1, "/");
    core_done();
    next_is(1, "/", 0);
    static char big[FY_WORKER_FINAL_WRITE_MAX + 1];
    memset(big, 'b', sizeof big);
    cr_assert_eq(fy_worker_session_send_head(&s, ok_head, strlen(ok_head)), 0);
    cr_assert_eq(fy_worker_session_write_final(&s, big, sizeof big), 0);
    char c;
    cr_assert_eq(recv(fds[1], &c, 1, MSG_PEEK | MSG_DONTWAIT), 1, "sent before the END");
    cr_assert_eq(fy_worker_session_end(&s, 0), 0);
    finish_and_take();
    expect_head(1, ok_head);
    expect_data_n(1, big, sizeof big);
    expect_end(1, 0);
    expect_nothing_more();
}
