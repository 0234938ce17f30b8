/* One connection: block reading, password check, refusals, and a full request. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/worker_internal.h"

static const char secret[] = "0123456789abcdef0123456789abcdef";
static int fds[2];
static int calls;

static int on_request(ferry_request_t *req)
{
    calls++;
    char body[256];
    ssize_t n = ferry_request_read(req, body, sizeof body);
    if (n < 0)
        return (int)n;
    ferry_field_t f[] = {{"X-Path", ferry_request_path(req)}};
    int rc = ferry_response_start(req, 200, f, 1);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, body, (size_t)n);
    return rc;
}

static fy_worker_app_t app = {.callbacks = {.on_request = on_request}};
static char busy[64];
static fy_worker_ctx_t ctx = {
    .app = &app,
    .secret = secret,
    .header_timeout_ms = 300,
    .body_timeout_ms = 300,
    .busy_path = busy,
    .busy_path_cap = sizeof busy,
};

static void setup(void)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    calls = 0;
}

static void teardown(void)
{
    close(fds[0]);
    close(fds[1]);
}

TestSuite(conn, .init = setup, .fini = teardown);

/* Writes a block of NULL-terminated pairs plus <body> on the core side, then shuts it down. */
static void send_request(const char *const *pairs, const char *body)
{
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        cr_assert_eq(fy_reqblock_add_str(&b, pairs[i], pairs[i + 1]), 0);
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    cr_assert_eq(write(fds[1], wire, len), (ssize_t)len);
    fy_reqblock_builder_dispose(&b);
    if (body != NULL)
        cr_assert_eq(write(fds[1], body, strlen(body)), (ssize_t)strlen(body));
    shutdown(fds[1], SHUT_WR);
}

static char *response(void)
{
    static char buf[65536];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[1], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return buf;
}

static void send_raw(const void *data, size_t len)
{
    cr_assert_eq(write(fds[1], data, len), (ssize_t)len);
    shutdown(fds[1], SHUT_WR);
}

Test(conn, serves_a_request_with_a_body)
{
    static const char *const pairs[] = {
        "PATH_INFO", "/p", "CONTENT_LENGTH", "4", "FERRY_CONNECT_PASSWORD", secret, NULL};
    send_request(pairs, "body");
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), 0);
    cr_assert_str_eq(response(), "Status: 200 OK\r\nX-Path: /p\r\n\r\nbody");
    cr_assert_eq(calls, 1);
    cr_assert_str_eq(busy, "");
}

Test(conn, drains_a_body_the_app_did_not_read)
{
    static const char *const pairs[] = {
        "PATH_INFO", "/p", "CONTENT_LENGTH", "1000", "FERRY_CONNECT_PASSWORD", secret, NULL};
    static char body[1001];
    memset(body, 'b', 1000);
    send_request(pairs, body);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), 0);
    char rest[8];
    cr_assert_eq(recv(fds[0], rest, sizeof rest, MSG_DONTWAIT), 0, "body left unread");
}

Test(conn, refuses_a_wrong_password_without_reply)
{
    static const char *const pairs[] = {"PATH_INFO", "/p", "FERRY_CONNECT_PASSWORD",
                                        "0123456789abcdef0123456789abcdee", NULL};
    send_request(pairs, NULL);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EACCES);
    shutdown(fds[0], SHUT_WR);
    cr_assert_str_eq(response(), "");
    cr_assert_eq(calls, 0);
}

Test(conn, refuses_a_missing_password)
{
    static const char *const pairs[] = {"PATH_INFO", "/p", NULL};
    send_request(pairs, NULL);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EACCES);
    cr_assert_eq(calls, 0);
}

Test(conn, refuses_a_password_prefix)
{
    static const char *const pairs[] = {"FERRY_CONNECT_PASSWORD", "0123456789abcdef", NULL};
    send_request(pairs, NULL);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EACCES);
}

Test(conn, refuses_a_block_over_128_kib_from_its_prefix)
{
    uint8_t prefix[4] = {0x00, 0x02, 0x00, 0x01}; /* 131073 */
    send_raw(prefix, sizeof prefix);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EMSGSIZE);
}

Test(conn, refuses_an_odd_item_count)
{
    static const char block[] = "\0\0\0\x0a"
                                "A\0"
                                "1\0"
                                "B\0"
                                "2\0"
                                "C\0";
    send_raw(block, 4 + 10);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EPROTO);
}

Test(conn, refuses_a_truncated_block)
{
    static const char block[] = "\0\0\0\x20"
                                "A\0"
                                "1\0";
    send_raw(block, 8);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -ECONNRESET);
}

Test(conn, refuses_a_truncated_prefix)
{
    send_raw("\0\0", 2);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -ECONNRESET);
}

Test(conn, gives_up_on_a_block_that_stalls)
{
    cr_assert_eq(write(fds[1],
                       "\0\0\0\x20"
                       "A\0",
                       6),
                 6);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -ETIMEDOUT);
}

Test(conn, answers_400_to_a_bad_content_length)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "-1", "FERRY_CONNECT_PASSWORD", secret,
                                        NULL};
    send_request(pairs, NULL);
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), -EPROTO);
    shutdown(fds[0], SHUT_WR);
    cr_assert(strncmp(response(), "Status: 400 Bad Request\r\n", 25) == 0);
    cr_assert_eq(calls, 0);
}
