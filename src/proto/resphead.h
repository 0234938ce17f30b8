/* The response head (docs/protocol.md §3), worker → core: first line "Status: NNN Reason" or
 * "HTTP/1.x NNN Reason", then "Name: value" lines, then an empty line. CRLF line ends; bare LF
 * tolerated from apps. Repeated headers kept in order. At most FY_RESPHEAD_MAX bytes. Pure.
 * A malformed head is -EPROTO, which the core maps to 502. */
#ifndef FY_PROTO_RESPHEAD_H
#define FY_PROTO_RESPHEAD_H

#include <stddef.h>

#define FY_RESPHEAD_MAX 131072u

typedef struct fy_resphead_header {
    const char *name;    /* points into the parsed data, not NUL-terminated */
    size_t name_len;
    const char *value;   /* leading and trailing spaces/tabs stripped */
    size_t value_len;
} fy_resphead_header_t;

/* Borrows the bytes it was parsed from; owns <headers>. */
typedef struct fy_resphead {
    int status;          /* 100..999 */
    const char *reason;  /* may be empty */
    size_t reason_len;
    size_t header_count;
    fy_resphead_header_t *headers;
    size_t head_len;     /* bytes of the head including the empty line; the body starts here */
} fy_resphead_t;

/* Parses the head at the start of <data>. Returns 1 when complete, -EAGAIN when the empty line
 * has not arrived yet (and len < FY_RESPHEAD_MAX), -EMSGSIZE when no head ends within
 * FY_RESPHEAD_MAX bytes, -EPROTO when malformed (bad first line, status not 3 digits, a header
 * line without a colon, an empty or invalid header name, NUL or bare CR in the head).
 * Callers that receive bytes piecemeal call it again on the grown buffer. */
int fy_resphead_parse(const char *data, size_t len, fy_resphead_t *out);
void fy_resphead_dispose(fy_resphead_t *head);

/* The first header named <name> (case-insensitive), or NULL. */
const fy_resphead_header_t *fy_resphead_find(const fy_resphead_t *head, const char *name);

#endif
