/* Unit tests of response framing and error pages. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "http/http_internal.h"

static fy_http_options_t opts;
static fy_http_request_t req;
static fy_http_buf_t out;

static void setup(void)
{
    fy_http_options_init(&opts);
    fy_http_request_init(&req, &opts);
    memset(&out, 0, sizeof out);
}

static void teardown(void)
{
    fy_http_request_dispose(&req);
    fy_http_buf_dispose(&out);
}

TestSuite(http_response, .init = setup, .fini = teardown);

static void request(const char *wire)
{
    size_t used;
    cr_assert_eq(fy_http_request_feed(&req, wire, strlen(wire), &used), FY_HTTP_FEED_DONE);
}

static int frame(const char *head_text, fy_http_resp_plan_t *plan)
{
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(head_text, strlen(head_text), &head), 1);
    int rc = fy_http_response_head(&head, &req, req.keep_alive, true, &out, plan);
    fy_resphead_dispose(&head);
    fy_http_buf_append(&out, "", 1);
    return rc;
}

Test(http_response, keeps_the_workers_content_length)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_LENGTH);
    cr_assert_eq(plan.content_length, 5);
    cr_assert(plan.keep_alive);
    cr_assert(strncmp(out.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    cr_assert(strstr(out.data, "Content-Length: 5\r\n") != NULL);
    cr_assert(strstr(out.data, "X-A: 1\r\n") != NULL);
    cr_assert(strstr(out.data, "Date: ") != NULL);
    cr_assert(strstr(out.data, "X-Powered-By: ferry/") != NULL);
}

Test(http_response, chunks_a_body_without_length_for_http_11)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_CHUNKED);
    cr_assert(strstr(out.data, "Transfer-Encoding: chunked\r\n") != NULL);
    cr_assert(strstr(out.data, "Connection: x") == NULL);
}

Test(http_response, closes_after_a_body_without_length_for_http_10)
{
    request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_CLOSE);
    cr_assert(!plan.keep_alive);
    cr_assert(strstr(out.data, "Connection: close\r\n") != NULL);
}

Test(http_response, sends_no_body_for_head)
{
    request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: 12\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_NONE);
    cr_assert(strstr(out.data, "Content-Length: 12\r\n") != NULL);
}

Test(http_response, sends_no_body_for_204)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 204 No Content\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_NONE);
    cr_assert(strstr(out.data, "Transfer-Encoding") == NULL);
}

Test(http_response, refuses_a_bad_content_length)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: -1\r\n\r\n", &plan), -EPROTO);
}

Test(http_response, refuses_conflicting_content_lengths)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &plan), -EPROTO);
}

Test(http_response, refuses_an_interim_status)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 101 Switching\r\n\r\n", &plan), -EPROTO);
}

Test(http_response, error_page_escapes_its_detail_and_closes)
{
    fy_http_error_response(400, false, false, true, "bad", "<script>", &out);
    fy_http_buf_append(&out, "", 1);
    cr_assert(strncmp(out.data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    cr_assert(strstr(out.data, "Connection: close\r\n") != NULL);
    cr_assert(strstr(out.data, "&lt;script&gt;") != NULL);
    cr_assert(strstr(out.data, "<script>") == NULL);
}

Test(http_response, error_page_for_head_has_no_body)
{
    fy_http_error_response(503, true, true, false, "busy", NULL, &out);
    fy_http_buf_append(&out, "", 1);
    const char *end = strstr(out.data, "\r\n\r\n");
    cr_assert(end != NULL && end[4] == '\0');
    cr_assert(strstr(out.data, "X-Powered-By") == NULL);
}

Test(http_response, replaces_the_workers_framing_and_hop_by_hop_headers)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                       "Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\n"
                       "Trailer: X-T\r\nX-Kept: 1\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_CHUNKED);
    cr_assert(plan.keep_alive);
    const char *te = strstr(out.data, "Transfer-Encoding: chunked\r\n");
    cr_assert(te != NULL && strstr(te + 1, "Transfer-Encoding") == NULL, "%s", out.data);
    cr_assert(strstr(out.data, "Connection:") == NULL, "%s", out.data);
    cr_assert(strstr(out.data, "Keep-Alive") == NULL);
    cr_assert(strstr(out.data, "Proxy-Connection") == NULL);
    cr_assert(strstr(out.data, "TE:") == NULL);
    cr_assert(strstr(out.data, "Trailer") == NULL);
    cr_assert(strstr(out.data, "X-Kept: 1\r\n") != NULL);
}

Test(http_response, drops_headers_named_by_the_workers_connection_header)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nConnection: x-a, X-B\r\nX-A: 1\r\nX-B: 2\r\n"
                       "X-C: 3\r\nContent-Length: 0\r\n\r\n", &plan), 0);
    cr_assert(strstr(out.data, "X-A") == NULL, "%s", out.data);
    cr_assert(strstr(out.data, "X-B") == NULL, "%s", out.data);
    cr_assert(strstr(out.data, "X-C: 3\r\n") != NULL);
}

Test(http_response, never_sends_both_length_and_chunked)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                       &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_LENGTH);
    cr_assert(strstr(out.data, "Transfer-Encoding") == NULL);
    cr_assert(strstr(out.data, "Content-Length: 5\r\n") != NULL);
}

Test(http_response, sends_no_body_length_or_chunking_for_304)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 304 Not Modified\r\nContent-Length: 5\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_NONE);
    cr_assert(strstr(out.data, "Transfer-Encoding") == NULL);
    cr_assert(strstr(out.data, "Content-Length") == NULL);
}

Test(http_response, says_keep_alive_to_an_http_10_client_that_asked)
{
    request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 200 OK\r\nContent-Length: 1\r\n\r\n", &plan), 0);
    cr_assert(plan.keep_alive);
    cr_assert(strstr(out.data, "Connection: keep-alive\r\n") != NULL);
}

Test(http_response, error_page_for_417_names_its_reason)
{
    fy_http_error_response(417, false, true, false, NULL, NULL, &out);
    fy_http_buf_append(&out, "", 1);
    cr_assert(strncmp(out.data, "HTTP/1.1 417 Expectation Failed\r\n", 33) == 0, "%s", out.data);
    cr_assert(strstr(out.data, "<title>417 Expectation Failed</title>") != NULL, "%s", out.data);
}

Test(http_response, refuses_a_status_past_599)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 600 Beyond\r\nContent-Length: 2\r\n\r\n", &plan), -EPROTO);
    cr_assert_eq(frame("Status: 999 Beyond\r\n\r\n", &plan), -EPROTO);
}

Test(http_response, sends_205_with_a_zero_length_and_no_body)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 205 Reset Content\r\nContent-Length: 5\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_NONE);
    cr_assert(plan.keep_alive);
    cr_assert(strstr(out.data, "Content-Length: 0\r\n") != NULL, "%s", out.data);
    cr_assert(strstr(out.data, "Content-Length: 5") == NULL, "%s", out.data);
    cr_assert(strstr(out.data, "Transfer-Encoding") == NULL, "%s", out.data);
}

Test(http_response, sends_205_without_a_length_as_zero_length_not_chunked)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 205 Reset Content\r\n\r\n", &plan), 0);
    cr_assert_eq(plan.framing, FY_HTTP_FRAME_NONE);
    cr_assert(strstr(out.data, "Content-Length: 0\r\n") != NULL, "%s", out.data);
    cr_assert(strstr(out.data, "Transfer-Encoding") == NULL, "%s", out.data);
}

Test(http_response, a_status_line_without_a_reason_gets_the_standard_one)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 505\r\nContent-Length: 0\r\n\r\n", &plan), 0);
    cr_assert(strncmp(out.data, "HTTP/1.1 505 HTTP Version Not Supported\r\n", 41) == 0, "%s",
              out.data);
}

Test(http_response, a_status_without_a_standard_reason_gets_unknown)
{
    request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    fy_http_resp_plan_t plan;
    cr_assert_eq(frame("Status: 299\r\nContent-Length: 0\r\n\r\n", &plan), 0);
    cr_assert(strncmp(out.data, "HTTP/1.1 299 Unknown\r\n", 22) == 0, "%s", out.data);
}
