/* Fuzzes the response head parser (src/proto/resphead.h).
 *
 * Properties checked on an accepted head: head_len <= len and <= FY_RESPHEAD_MAX; the head ends
 * in LF LF or LF CR LF; status in 100..999; every header name non-empty and free of ':' and
 * whitespace; values free of CR, LF and NUL and without surrounding blanks; parsing just the head
 * gives the same result, and one byte less is "need more". -EAGAIN only below the limit; every
 * error is one of the documented values; find() returns the first match. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "proto/resphead.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_any(const char *s, size_t len, const char *set, size_t set_len)
{
    for (size_t i = 0; i < len; i++)
        if (memchr(set, s[i], set_len) != NULL)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    fy_resphead_t head;
    int rc = fy_resphead_parse(s, size, &head);
    if (rc != 1) {
        FY_ASSERT(rc == -EAGAIN || rc == -EMSGSIZE || rc == -EPROTO);
        FY_ASSERT(head.headers == NULL && head.header_count == 0);
        if (rc == -EAGAIN)
            FY_ASSERT(size < FY_RESPHEAD_MAX);
        if (rc == -EMSGSIZE)
            FY_ASSERT(size >= FY_RESPHEAD_MAX);
        return 0;
    }
    FY_ASSERT(head.head_len <= size && head.head_len <= FY_RESPHEAD_MAX);
    FY_ASSERT(head.head_len >= 2 && s[head.head_len - 1] == '\n');
    FY_ASSERT(s[head.head_len - 2] == '\n' ||
          (head.head_len >= 3 && s[head.head_len - 2] == '\r' && s[head.head_len - 3] == '\n'));
    FY_ASSERT(head.status >= 100 && head.status <= 999);
    FY_ASSERT(head.reason >= s && head.reason + head.reason_len <= s + head.head_len);
    FY_ASSERT(!has_any(head.reason, head.reason_len, "\r\n\0", 3));
    for (size_t i = 0; i < head.header_count; i++) {
        const fy_resphead_header_t *h = &head.headers[i];
        FY_ASSERT(h->name_len > 0);
        FY_ASSERT(h->name >= s && h->name + h->name_len <= s + head.head_len);
        FY_ASSERT(!has_any(h->name, h->name_len, ": \t\r\n\v\f\0", 8));
        FY_ASSERT(h->value >= s && h->value + h->value_len <= s + head.head_len);
        FY_ASSERT(!has_any(h->value, h->value_len, "\r\n\0", 3));
        if (h->value_len > 0) {
            FY_ASSERT(h->value[0] != ' ' && h->value[0] != '\t');
            FY_ASSERT(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        /* find() returns the first header of that name (case-insensitive). */
        char name[64];
        if (h->name_len < sizeof name) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            const fy_resphead_header_t *found = fy_resphead_find(&head, name);
            FY_ASSERT(found != NULL && found <= h);
            FY_ASSERT(found->name_len == h->name_len &&
                  strncasecmp(found->name, h->name, h->name_len) == 0);
        }
    }

    fy_resphead_t again;
    FY_ASSERT(fy_resphead_parse(s, head.head_len, &again) == 1);
    FY_ASSERT(again.head_len == head.head_len && again.status == head.status);
    FY_ASSERT(again.header_count == head.header_count);
    fy_resphead_dispose(&again);
    FY_ASSERT(fy_resphead_parse(s, head.head_len - 1, &again) == -EAGAIN);
    fy_resphead_dispose(&head);
    return 0;
}
