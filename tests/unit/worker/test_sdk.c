/* The C SDK: request view and response writer over a socketpair. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/host.h"
#include "worker/worker_internal.h"

static int fds[2]; /* fds[0]: the worker side, fds[1]: the core side */
static fy_worker_session_t session;
static ferry_request_t req;
static const fy_worker_session_config_t config = {
    .secret = "secret", .header_timeout_ms = 200, .body_timeout_ms = 200};

/* Builds a v1 request over fds[0] from NULL-terminated name/value pairs (plus the connect
 * password): the core side writes its block, the worker side opens the session and takes it. */
static int make_request(const char *const *pairs)
{
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        cr_assert_eq(fy_reqblock_add_str(&b, pairs[i], pairs[i + 1]), 0);
    cr_assert_eq(fy_reqblock_add_str(&b, "FERRY_CONNECT_PASSWORD", "secret"), 0);
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    cr_assert_eq(write(fds[1], wire, len), (ssize_t)len);
    fy_reqblock_builder_dispose(&b);
    cr_assert_eq(fy_worker_session_open(&session, fds[0], &config), 0);
    cr_assert_eq(session.version, 1);
    int rc = fy_worker_session_next_request(&session);
    if (rc != 1)
        return rc;
    fy_worker_request_init(&req, &session, (void *)0x1234);
    return 0;
}

static void setup(void)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void teardown(void)
{
    fy_worker_request_dispose(&req);
    fy_worker_session_dispose(&session);
    close(fds[0]);
    close(fds[1]);
}

/* Reads what the worker side wrote so far (after closing it). */
static char *peer_output(size_t *len_out)
{
    shutdown(fds[0], SHUT_WR);
    static char buf[1 << 20];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[1], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static const char *const basic[] = {"REQUEST_METHOD",
                                    "GET",
                                    "PATH_INFO",
                                    "/a b",
                                    "QUERY_STRING",
                                    "x=1",
                                    "REQUEST_URI",
                                    "/a%20b?x=1",
                                    "REMOTE_ADDR",
                                    "10.0.0.1",
                                    "HTTP_USER_AGENT",
                                    "t/1",
                                    "HTTP_X_EMPTY",
                                    "",
                                    "CONTENT_TYPE",
                                    "text/x",
                                    "FERRY_CONNECT_PASSWORD",
                                    "secret",
                                    NULL};

TestSuite(sdk, .init = setup, .fini = teardown);

Test(sdk, exposes_method_path_query_uri_and_remote_addr)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_str_eq(ferry_request_method(&req), "GET");
    cr_assert_str_eq(ferry_request_path(&req), "/a b");
    cr_assert_str_eq(ferry_request_query(&req), "x=1");
    cr_assert_str_eq(ferry_request_uri(&req), "/a%20b?x=1");
    cr_assert_str_eq(ferry_request_remote_addr(&req), "10.0.0.1");
    cr_assert_eq(ferry_request_content_length(&req), 0);
    cr_assert_eq(ferry_request_data(&req), (void *)0x1234);
}

Test(sdk, missing_variables_read_as_empty_strings)
{
    static const char *const none[] = {"HTTP_X", "1", NULL};
    cr_assert_eq(make_request(none), 0);
    cr_assert_str_eq(ferry_request_method(&req), "");
    cr_assert_str_eq(ferry_request_path(&req), "");
    cr_assert_str_eq(ferry_request_query(&req), "");
}

Test(sdk, hides_the_connect_password)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_null(ferry_request_var(&req, "FERRY_CONNECT_PASSWORD"));
    cr_assert_eq(ferry_request_var_count(&req), 8);
    for (size_t i = 0; i < ferry_request_var_count(&req); i++) {
        const char *name, *value;
        cr_assert_eq(ferry_request_var_at(&req, i, &name, &value), FERRY_OK);
        cr_assert_str_neq(name, "FERRY_CONNECT_PASSWORD");
    }
}

Test(sdk, var_at_refuses_an_index_out_of_range)
{
    cr_assert_eq(make_request(basic), 0);
    const char *name, *value;
    cr_assert_eq(ferry_request_var_at(&req, 8, &name, &value), FERRY_EINVAL);
    cr_assert_eq(ferry_request_var_at(&req, 0, NULL, &value), FERRY_EINVAL);
}

Test(sdk, empty_values_are_present_not_null)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_str_eq(ferry_request_var(&req, "HTTP_X_EMPTY"), "");
    cr_assert_null(ferry_request_var(&req, "HTTP_X_ABSENT"));
}

Test(sdk, header_lookup_maps_http_names_to_cgi_names)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_str_eq(ferry_request_header(&req, "user-agent"), "t/1");
    cr_assert_str_eq(ferry_request_header(&req, "X-Empty"), "");
    cr_assert_str_eq(ferry_request_header(&req, "Content-Type"), "text/x");
    cr_assert_null(ferry_request_header(&req, "X_Empty"));
    cr_assert_null(ferry_request_header(&req, ""));
}

Test(sdk, parses_content_length)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "18446744073709551615", NULL};
    cr_assert_eq(make_request(pairs), 0);
    cr_assert_eq(ferry_request_content_length(&req), UINT64_MAX);
}

Test(sdk, refuses_a_content_length_that_is_not_a_number)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "12x", NULL};
    cr_assert_eq(make_request(pairs), -EPROTO);
}

Test(sdk, refuses_a_content_length_that_overflows)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "18446744073709551616", NULL};
    cr_assert_eq(make_request(pairs), -EPROTO);
}

Test(sdk, refuses_an_empty_content_length)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "", NULL};
    cr_assert_eq(make_request(pairs), -EPROTO);
}

Test(sdk, reads_exactly_content_length_bytes_then_zero)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "5", NULL};
    cr_assert_eq(make_request(pairs), 0);
    cr_assert_eq(write(fds[1], "hello-extra", 11), 11);
    char buf[16];
    ssize_t n = ferry_request_read(&req, buf, 3);
    cr_assert_eq(n, 3);
    n = ferry_request_read(&req, buf + 3, sizeof buf - 3);
    cr_assert_eq(n, 2);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(ferry_request_read(&req, buf, sizeof buf), 0);
}

Test(sdk, read_fails_with_eio_when_the_body_is_cut_short)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "10", NULL};
    cr_assert_eq(make_request(pairs), 0);
    cr_assert_eq(write(fds[1], "abc", 3), 3);
    shutdown(fds[1], SHUT_WR);
    char buf[16];
    cr_assert_eq(ferry_request_read(&req, buf, sizeof buf), 3);
    cr_assert_eq(ferry_request_read(&req, buf, sizeof buf), FERRY_EIO);
}

Test(sdk, read_times_out_when_the_body_stalls)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "10", NULL};
    cr_assert_eq(make_request(pairs), 0);
    char buf[16];
    cr_assert_eq(ferry_request_read(&req, buf, sizeof buf), FERRY_ETIMEDOUT);
}

Test(sdk, read_refuses_a_null_buffer)
{
    static const char *const pairs[] = {"CONTENT_LENGTH", "10", NULL};
    cr_assert_eq(make_request(pairs), 0);
    cr_assert_eq(ferry_request_read(&req, NULL, 4), FERRY_EINVAL);
}

Test(sdk, writes_status_line_headers_and_body)
{
    cr_assert_eq(make_request(basic), 0);
    ferry_field_t f[] = {{"Content-Type", "text/plain"}};
    cr_assert_eq(ferry_response_start(&req, 201, f, 1), FERRY_OK);
    cr_assert_eq(ferry_response_add_header(&req, "X-A", "1"), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "ab", 2), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "cd", 2), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL),
                     "Status: 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nabcd");
}

Test(sdk, keeps_repeated_headers_in_order)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_add_header(&req, "Set-Cookie", "a=1"), FERRY_OK);
    cr_assert_eq(ferry_response_add_header(&req, "Set-Cookie", "b=2"), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL),
                     "Status: 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n");
}

Test(sdk, head_request_sends_the_head_and_drops_the_body)
{
    static const char *const pairs[] = {"REQUEST_METHOD", "HEAD", NULL};
    cr_assert_eq(make_request(pairs), 0);
    ferry_field_t f[] = {{"Content-Length", "5"}};
    cr_assert_eq(ferry_response_start(&req, 200, f, 1), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "hello", 5), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "more", 4), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL), "Status: 200 OK\r\nContent-Length: 5\r\n\r\n");
}

Test(sdk, start_sends_the_standard_reason_phrase)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 404, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL), "Status: 404 Not Found\r\n\r\n");
}

Test(sdk, unknown_status_gets_a_generic_reason)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 599, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL), "Status: 599 Unknown\r\n\r\n");
}

Test(sdk, a_host_may_give_its_own_reason_phrase)
{
    cr_assert_eq(make_request(basic), 0);
    ferry_field_t f[] = {{"X-A", "1"}};
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, "Fine\tthanks", f, 1), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_str_eq(peer_output(NULL), "Status: 200 Fine\tthanks\r\nX-A: 1\r\n\r\n");
}

Test(sdk, a_reason_phrase_with_control_characters_or_too_long_is_refused)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, "OK\r\nX-Evil: 1", NULL, 0),
                 FERRY_EINVAL);
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, "OK\n", NULL, 0), FERRY_EINVAL);
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, "O\x7fK", NULL, 0), FERRY_EINVAL);
    char longest[FY_WORKER_REASON_MAX + 2];
    memset(longest, 'r', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, longest, NULL, 0), FERRY_EINVAL);
    longest[FY_WORKER_REASON_MAX] = '\0';
    cr_assert_eq(fy_worker_response_start_reason(&req, 200, longest, NULL, 0), FERRY_OK);
    cr_assert_eq(fy_worker_request_aborted(&req), 0);
}

Test(sdk, start_refuses_a_status_out_of_range)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 99, NULL, 0), FERRY_EINVAL);
    cr_assert_eq(ferry_response_start(&req, 1000, NULL, 0), FERRY_EINVAL);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 1), FERRY_EINVAL);
}

Test(sdk, start_refuses_a_header_name_that_is_not_a_token)
{
    cr_assert_eq(make_request(basic), 0);
    ferry_field_t f[] = {{"Bad Name", "v"}};
    cr_assert_eq(ferry_response_start(&req, 200, f, 1), FERRY_EINVAL);
    ferry_field_t g[] = {{"", "v"}};
    cr_assert_eq(ferry_response_start(&req, 200, g, 1), FERRY_EINVAL);
    /* Nothing was kept: a valid start still works. */
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
}

Test(sdk, refuses_header_values_with_cr_or_lf)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_add_header(&req, "X", "a\r\nInjected: 1"), FERRY_EINVAL);
    cr_assert_eq(ferry_response_add_header(&req, "X", "a\nb"), FERRY_EINVAL);
    cr_assert_eq(ferry_response_add_header(&req, "X", NULL), FERRY_EINVAL);
}

Test(sdk, start_twice_is_a_state_error)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_ESTATE);
}

Test(sdk, write_and_add_header_before_start_are_state_errors)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_write(&req, "x", 1), FERRY_ESTATE);
    cr_assert_eq(ferry_response_add_header(&req, "X", "1"), FERRY_ESTATE);
    cr_assert_eq(ferry_response_end(&req), FERRY_ESTATE);
}

Test(sdk, add_header_after_the_head_was_sent_is_a_state_error)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "x", 1), FERRY_OK);
    cr_assert_eq(ferry_response_add_header(&req, "X", "1"), FERRY_ESTATE);
}

Test(sdk, write_after_end_is_a_state_error)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "x", 1), FERRY_ESTATE);
}

Test(sdk, head_over_128_kib_is_refused)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    static char value[8192];
    memset(value, 'v', sizeof value - 1);
    int rc = FERRY_OK;
    int added = 0;
    while (rc == FERRY_OK && added < 100) {
        rc = ferry_response_add_header(&req, "X-Big", value);
        added++;
    }
    cr_assert_eq(rc, FERRY_ETOOBIG);
    cr_assert_lt(added, 100);
    /* The head sent is still complete and within the limit. */
    cr_assert_eq(ferry_response_end(&req), FERRY_OK);
    size_t len;
    char *out = peer_output(&len);
    cr_assert_leq(len, 131072);
    cr_assert_eq(memcmp(out + len - 4, "\r\n\r\n", 4), 0);
}

Test(sdk, write_to_a_closed_peer_fails_with_eio)
{
    cr_assert_eq(make_request(basic), 0);
    close(fds[1]);
    fds[1] = -1;
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "x", 1), FERRY_EIO);
    cr_assert_eq(ferry_response_write(&req, "x", 1), FERRY_EIO);
}

Test(sdk, app_error_before_the_head_becomes_500)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    fy_worker_request_finish(&req, FERRY_ERROR);
    char *out = peer_output(NULL);
    cr_assert(strncmp(out, "Status: 500 Internal Server Error\r\n", 35) == 0, "%s", out);
    cr_assert(strstr(out, "\r\n\r\nInternal Server Error\n") != NULL, "%s", out);
}

Test(sdk, returning_ok_without_a_response_becomes_500)
{
    cr_assert_eq(make_request(basic), 0);
    fy_worker_request_finish(&req, FERRY_OK);
    cr_assert(strncmp(peer_output(NULL), "Status: 500 ", 12) == 0);
}

Test(sdk, app_error_after_the_head_only_closes)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 200, NULL, 0), FERRY_OK);
    cr_assert_eq(ferry_response_write(&req, "part", 4), FERRY_OK);
    fy_worker_request_finish(&req, FERRY_ERROR);
    cr_assert_str_eq(peer_output(NULL), "Status: 200 OK\r\n\r\npart");
}

Test(sdk, finish_ends_a_started_response)
{
    cr_assert_eq(make_request(basic), 0);
    cr_assert_eq(ferry_response_start(&req, 204, NULL, 0), FERRY_OK);
    fy_worker_request_finish(&req, FERRY_OK);
    cr_assert_str_eq(peer_output(NULL), "Status: 204 No Content\r\n\r\n");
}

Test(sdk, strerror_names_each_code)
{
    cr_assert_str_eq(ferry_strerror(FERRY_EIO), "connection failed");
    cr_assert_str_eq(ferry_strerror(12345), "unknown error code");
}
