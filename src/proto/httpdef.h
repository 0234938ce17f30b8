/* HTTP definitions shared by every part of ferry that reads or writes HTTP: the status reason
 * phrases and the token characters of RFC 9110. One copy of each, here, because both the front
 * (src/http) and the native worker (src/worker) need them and proto is the lowest module both
 * include (docs/architecture.md). Pure: constant data only, any thread. */
#ifndef FY_PROTO_HTTPDEF_H
#define FY_PROTO_HTTPDEF_H

#include <stdbool.h>

/* Every status code ferry names, with its RFC 9110 reason phrase (418 from RFC 2324, 425 from
 * RFC 8470, 428 and 429 and 431 from RFC 6585, 451 from RFC 7725). Expand with X(code, reason). */
#define FY_HTTPDEF_STATUS_LIST(X)                                                              \
    X(100, "Continue")                                                                         \
    X(101, "Switching Protocols")                                                              \
    X(200, "OK")                                                                               \
    X(201, "Created")                                                                          \
    X(202, "Accepted")                                                                         \
    X(203, "Non-Authoritative Information")                                                    \
    X(204, "No Content")                                                                       \
    X(205, "Reset Content")                                                                    \
    X(206, "Partial Content")                                                                  \
    X(300, "Multiple Choices")                                                                 \
    X(301, "Moved Permanently")                                                                \
    X(302, "Found")                                                                            \
    X(303, "See Other")                                                                        \
    X(304, "Not Modified")                                                                     \
    X(307, "Temporary Redirect")                                                               \
    X(308, "Permanent Redirect")                                                               \
    X(400, "Bad Request")                                                                      \
    X(401, "Unauthorized")                                                                     \
    X(403, "Forbidden")                                                                        \
    X(404, "Not Found")                                                                        \
    X(405, "Method Not Allowed")                                                               \
    X(406, "Not Acceptable")                                                                   \
    X(408, "Request Timeout")                                                                  \
    X(409, "Conflict")                                                                         \
    X(410, "Gone")                                                                             \
    X(411, "Length Required")                                                                  \
    X(412, "Precondition Failed")                                                              \
    X(413, "Content Too Large")                                                                \
    X(414, "URI Too Long")                                                                     \
    X(415, "Unsupported Media Type")                                                           \
    X(416, "Range Not Satisfiable")                                                            \
    X(417, "Expectation Failed")                                                               \
    X(418, "I'm a teapot")                                                                     \
    X(422, "Unprocessable Content")                                                            \
    X(425, "Too Early")                                                                        \
    X(426, "Upgrade Required")                                                                 \
    X(428, "Precondition Required")                                                            \
    X(429, "Too Many Requests")                                                                \
    X(431, "Request Header Fields Too Large")                                                  \
    X(451, "Unavailable For Legal Reasons")                                                    \
    X(500, "Internal Server Error")                                                            \
    X(501, "Not Implemented")                                                                  \
    X(502, "Bad Gateway")                                                                      \
    X(503, "Service Unavailable")                                                              \
    X(504, "Gateway Timeout")                                                                  \
    X(505, "HTTP Version Not Supported")

/* The reason phrase of <status> ("OK", "Not Found"), or "Unknown" for a code the list above
 * does not name (any int is accepted). The string is static. */
const char *fy_httpdef_status_reason(int status);

/* The RFC 9110 tchar characters other than digits and letters. */
#define FY_HTTPDEF_TCHAR_SYMBOLS "!#$%&'*+-.^_`|~"

/* True when <c> is an RFC 9110 tchar: a character allowed in a token (a method, a header
 * name). Inline because the request parser calls it for every byte of every header name. */
static inline bool fy_httpdef_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

/* The value of the hex digit <c> (RFC 5234 HEXDIG, either case: chunk sizes, percent-encoding),
 * or -1 when <c> is not one. */
static inline int fy_httpdef_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
