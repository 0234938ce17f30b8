/* The chunked transfer coding of request bodies (RFC 9112 §7.1), decoded by ferry itself rather
 * than by llhttp: llhttp 8 refuses the optional whitespace (BWS) that the grammar allows around
 * a chunk extension's ";" and "=" ("5 ;name=value", "5;name = value"). Everything else is as
 * strict as the head: CRLF line ends only, hex sizes of at most 16 digits, the CRLF after each
 * chunk's data, trailer fields with token names and visible values (docs/operations.md, "HTTP
 * strictness"). Pure: no I/O, no allocation. One decoder per request, loop thread only. */
#ifndef FY_HTTP_CHUNKED_H
#define FY_HTTP_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest chunk-size line (size plus extensions) and the longest trailer line: beyond that
 * the body is refused instead of buffering a line without end. */
#define FY_HTTP_CHUNK_LINE_MAX 4096

typedef struct fy_http_chunked {
    uint8_t state;
    uint8_t digits;     /* hex digits of the current size */
    bool quoted_escape; /* the byte after a backslash in a quoted extension value */
    uint64_t left;      /* data bytes left in the current chunk */
    size_t line_bytes;  /* bytes of the current size or trailer line */
    size_t name_bytes;  /* bytes of the current trailer field's name */
} fy_http_chunked_t;

/* Where the decoded data goes and what trailer fields count against; called synchronously. */
typedef struct fy_http_chunked_sink {
    void *ctx;
    /* <len> bytes of chunk data. Returns 0, or non-zero to stop decoding (the sink's own error,
     * e.g. 413: fy_http_chunked_feed then returns -ECANCELED). */
    int (*data)(void *ctx, const char *at, size_t len);
    /* A complete trailer field line of <len> bytes (checked; it is dropped, never merged into
     * the header section). Returns 0 or non-zero to stop, like data. */
    int (*trailer)(void *ctx, size_t len);
} fy_http_chunked_sink_t;

enum {
    FY_HTTP_CHUNKED_MORE = 0, /* every byte used; the body goes on */
    FY_HTTP_CHUNKED_DONE = 1, /* the body ended (after the trailer section's empty line) */
};

void fy_http_chunked_init(fy_http_chunked_t *d);

/* Decodes <len> bytes at <data> and sets *consumed (all of them, unless the body ended inside:
 * the rest belongs to the next request). Returns FY_HTTP_CHUNKED_MORE, FY_HTTP_CHUNKED_DONE,
 * -EPROTO for a malformed body with *reason set (a static string), -EMSGSIZE for a line past
 * FY_HTTP_CHUNK_LINE_MAX, or -ECANCELED when a sink callback stopped it. */
int fy_http_chunked_feed(fy_http_chunked_t *d, const char *data, size_t len, size_t *consumed,
                         const fy_http_chunked_sink_t *sink, const char **reason);

/* Whether the decoder is inside the trailer section (for the status of a too-long line). */
bool fy_http_chunked_in_trailer(const fy_http_chunked_t *d);

#endif
