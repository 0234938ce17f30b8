/* Response head parser. See resphead.h and docs/protocol.md.
 *
 * Each call parses from the start of the buffer: a caller that receives the head piecemeal calls
 * it again on the grown buffer. The head is at most FY_RESPHEAD_MAX bytes, so the rescanning is
 * bounded; a malformed line is reported as soon as it is complete, without waiting for the end of
 * the head. */
#include "resphead.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "httpdef.h"

/* Control characters other than HTAB may not appear in a reason or a value. */
static bool is_bad_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses "NNN" or "NNN Reason" at <s> (<len> bytes) into <out>. */
static int parse_status_and_reason(const char *s, size_t len, fy_resphead_t *out)
{
    if (len < 3)
        return -EPROTO;
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            return -EPROTO;
    if (s[0] == '0')
        return -EPROTO;
    out->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (len == 3) {
        out->reason = s + 3;
        out->reason_len = 0;
        return 0;
    }
    if (s[3] != ' ')
        return -EPROTO;
    const char *reason = s + 4;
    size_t reason_len = len - 4;
    for (size_t i = 0; i < reason_len; i++)
        if (is_bad_ctl((unsigned char)reason[i]))
            return -EPROTO;
    while (reason_len > 0 && is_ows(reason[reason_len - 1]))
        reason_len--;
    out->reason = reason;
    out->reason_len = reason_len;
    return 0;
}

/* The first line: "Status: NNN Reason" (the CGI form; the name is case-insensitive and may be
 * followed by spaces) or "HTTP/1.x NNN Reason". */
static int parse_first_line(const char *line, size_t len, fy_resphead_t *out)
{
    static const char status_prefix[] = "status:";
    static const char http_prefix[] = "HTTP/1.";
    if (len >= sizeof status_prefix - 1 &&
        strncasecmp(line, status_prefix, sizeof status_prefix - 1) == 0) {
        size_t pos = sizeof status_prefix - 1;
        while (pos < len && is_ows(line[pos]))
            pos++;
        return parse_status_and_reason(line + pos, len - pos, out);
    }
    if (len >= sizeof http_prefix - 1 + 2 &&
        memcmp(line, http_prefix, sizeof http_prefix - 1) == 0) {
        size_t pos = sizeof http_prefix - 1;
        if (line[pos] < '0' || line[pos] > '9' || line[pos + 1] != ' ')
            return -EPROTO;
        return parse_status_and_reason(line + pos + 2, len - pos - 2, out);
    }
    return -EPROTO;
}

static int parse_header_line(const char *line, size_t len, fy_resphead_header_t *h)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return -EPROTO;
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++)
        if (!fy_httpdef_is_tchar((unsigned char)line[i]))
            return -EPROTO;
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    for (size_t i = 0; i < value_len; i++)
        if (is_bad_ctl((unsigned char)value[i]))
            return -EPROTO;
    while (value_len > 0 && is_ows(value[0])) {
        value++;
        value_len--;
    }
    while (value_len > 0 && is_ows(value[value_len - 1]))
        value_len--;
    h->name = line;
    h->name_len = name_len;
    h->value = value;
    h->value_len = value_len;
    return 0;
}

static int fail(fy_resphead_t *out, int err)
{
    free(out->headers);
    memset(out, 0, sizeof *out);
    return err;
}

int fy_resphead_parse(const char *data, size_t len, fy_resphead_t *out)
{
    memset(out, 0, sizeof *out);
    size_t limit = len < FY_RESPHEAD_MAX ? len : FY_RESPHEAD_MAX;
    size_t cap = 0;
    size_t pos = 0;
    bool first = true;
    for (;;) {
        const char *nl = memchr(data + pos, '\n', limit - pos);
        if (nl == NULL) {
            /* An incomplete line: refuse what is already wrong, else wait for more. A CR at the
             * very end may still be followed by LF. */
            for (size_t i = pos; i < limit; i++) {
                if (data[i] == '\0' || (data[i] == '\r' && i + 1 < limit))
                    return fail(out, -EPROTO);
            }
            return fail(out, len >= FY_RESPHEAD_MAX ? -EMSGSIZE : -EAGAIN);
        }
        size_t end = (size_t)(nl - data);
        size_t next = end + 1;
        if (end > pos && data[end - 1] == '\r')
            end--;
        const char *line = data + pos;
        size_t line_len = end - pos;
        if (memchr(line, '\0', line_len) != NULL || memchr(line, '\r', line_len) != NULL)
            return fail(out, -EPROTO);
        if (first) {
            int rc = parse_first_line(line, line_len, out);
            if (rc < 0)
                return fail(out, rc);
            first = false;
        } else if (line_len == 0) {
            out->head_len = next;
            return 1;
        } else {
            if (out->header_count == cap) {
                /* Every header line takes at least 3 bytes of a head bounded by
                 * FY_RESPHEAD_MAX, so the array stays bounded. */
                cap = cap ? cap * 2 : 16;
                out->headers = fy_xrealloc(out->headers, cap * sizeof *out->headers);
            }
            int rc = parse_header_line(line, line_len, &out->headers[out->header_count]);
            if (rc < 0)
                return fail(out, rc);
            out->header_count++;
        }
        pos = next;
    }
}

void fy_resphead_dispose(fy_resphead_t *head)
{
    free(head->headers);
    memset(head, 0, sizeof *head);
}

const fy_resphead_header_t *fy_resphead_find(const fy_resphead_t *head, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < head->header_count; i++) {
        const fy_resphead_header_t *h = &head->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0)
            return h;
    }
    return NULL;
}
