/* The chunked request body decoder (chunked.h): a byte state machine over
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 *
 * (RFC 9112 §7.1, RFC 9110 §5.6). Extensions are checked and ignored. */
#include <errno.h>

#include "http/chunked.h"
#include "proto/httpdef.h"

enum {
    ST_SIZE_START,   /* the first hex digit of a chunk size */
    ST_SIZE,         /* more hex digits */
    ST_BWS_SEMI,     /* whitespace that must be followed by ";" */
    ST_BWS_NAME,     /* after ";": whitespace, then an extension name */
    ST_NAME,         /* an extension name */
    ST_AFTER_NAME,   /* whitespace after a name: "=" or ";" follows */
    ST_BWS_VALUE,    /* after "=": whitespace, then a token or a quoted string */
    ST_TOKEN_VALUE,
    ST_QUOTED,       /* inside a quoted-string value */
    ST_AFTER_QUOTED, /* the closing DQUOTE was seen */
    ST_SIZE_LF,      /* the LF of the size line */
    ST_DATA,
    ST_DATA_CR,      /* the CRLF after a chunk's data */
    ST_DATA_LF,
    ST_TRAILER_START, /* the first byte of a trailer line, or the CR of the empty one */
    ST_TRAILER_NAME,
    ST_TRAILER_VALUE,
    ST_TRAILER_LF,
    ST_END_LF,       /* the LF of the empty line that ends the body */
    ST_DONE,
};

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* qdtext of RFC 9110 §5.6.4: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text. */
static bool is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* What a quoted-pair may escape: HTAB, SP, VCHAR, obs-text. */
static bool is_escapable(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* field-vchar, SP and HTAB: what a field value may hold (RFC 9110 §5.5). */
static bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

bool fy_http_chunked_in_trailer(const fy_http_chunked_t *d)
{
    return d->state >= ST_TRAILER_START && d->state <= ST_TRAILER_LF;
}

void fy_http_chunked_init(fy_http_chunked_t *d)
{
    *d = (fy_http_chunked_t){.state = ST_SIZE_START};
}

/* After the CR of a size line or a byte that may end an extension. */
static bool ends_line(fy_http_chunked_t *d, unsigned char c)
{
    if (c != '\r')
        return false;
    d->state = ST_SIZE_LF;
    return true;
}

int fy_http_chunked_feed(fy_http_chunked_t *d, const char *data, size_t len, size_t *consumed,
                         const fy_http_chunked_sink_t *sink, const char **reason)
{
    size_t i = 0;
    *consumed = 0;
    *reason = NULL;
#define REFUSE(why)                                                                            \
    do {                                                                                       \
        *reason = (why);                                                                       \
        *consumed = i;                                                                         \
        return -EPROTO;                                                                        \
    } while (0)
    while (i < len) {
        if (d->state == ST_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > d->left)
                n = (size_t)d->left;
            if (sink->data(sink->ctx, data + i, n) != 0) {
                *consumed = i;
                return -ECANCELED;
            }
            d->left -= n;
            i += n;
            if (d->left == 0)
                d->state = ST_DATA_CR;
            continue;
        }
        unsigned char c = (unsigned char)data[i];
        bool in_line =
            d->state < ST_DATA || (d->state >= ST_TRAILER_START && d->state <= ST_TRAILER_LF);
        if (in_line && ++d->line_bytes > FY_HTTP_CHUNK_LINE_MAX) {
            *reason = d->state < ST_DATA ? "chunk size line too long" : "trailer field too long";
            *consumed = i;
            return -EMSGSIZE;
        }
        switch (d->state) {
        case ST_SIZE_START:
        case ST_SIZE: {
            int v = fy_httpdef_hex_value(c);
            if (v >= 0) {
                if (d->digits == 16)
                    REFUSE("chunk size too large");
                d->left = d->left << 4 | (uint64_t)v;
                d->digits++;
                d->state = ST_SIZE;
                break;
            }
            if (d->state == ST_SIZE_START)
                REFUSE("invalid chunk size");
            if (is_ws(c))
                d->state = ST_BWS_SEMI;
            else if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!ends_line(d, c))
                REFUSE("invalid chunk size");
            break;
        }
        case ST_BWS_SEMI:
            if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!is_ws(c))
                REFUSE("invalid chunk extension");
            break;
        case ST_BWS_NAME:
            if (fy_httpdef_is_tchar(c))
                d->state = ST_NAME;
            else if (!is_ws(c))
                REFUSE("invalid chunk extension name");
            break;
        case ST_NAME:
            if (fy_httpdef_is_tchar(c))
                break;
            if (is_ws(c))
                d->state = ST_AFTER_NAME;
            else if (c == '=')
                d->state = ST_BWS_VALUE;
            else if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!ends_line(d, c))
                REFUSE("invalid chunk extension name");
            break;
        case ST_AFTER_NAME:
            if (c == '=')
                d->state = ST_BWS_VALUE;
            else if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!is_ws(c))
                REFUSE("invalid chunk extension");
            break;
        case ST_BWS_VALUE:
            if (c == '"')
                d->state = ST_QUOTED;
            else if (fy_httpdef_is_tchar(c))
                d->state = ST_TOKEN_VALUE;
            else if (!is_ws(c))
                REFUSE("invalid chunk extension value");
            break;
        case ST_TOKEN_VALUE:
            if (fy_httpdef_is_tchar(c))
                break;
            if (is_ws(c))
                d->state = ST_BWS_SEMI;
            else if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!ends_line(d, c))
                REFUSE("invalid chunk extension value");
            break;
        case ST_QUOTED:
            if (d->quoted_escape) {
                if (!is_escapable(c))
                    REFUSE("invalid quoted-pair in a chunk extension");
                d->quoted_escape = false;
            } else if (c == '\\') {
                d->quoted_escape = true;
            } else if (c == '"') {
                d->state = ST_AFTER_QUOTED;
            } else if (!is_qdtext(c)) {
                REFUSE("invalid character in a quoted chunk extension");
            }
            break;
        case ST_AFTER_QUOTED:
            if (is_ws(c))
                d->state = ST_BWS_SEMI;
            else if (c == ';')
                d->state = ST_BWS_NAME;
            else if (!ends_line(d, c))
                REFUSE("invalid chunk extension");
            break;
        case ST_SIZE_LF:
            if (c != '\n')
                REFUSE("CR without LF in a chunk size line");
            d->line_bytes = 0;
            d->digits = 0;
            d->state = d->left == 0 ? ST_TRAILER_START : ST_DATA;
            break;
        case ST_DATA_CR:
            if (c != '\r')
                REFUSE("chunk data not followed by CRLF");
            d->state = ST_DATA_LF;
            break;
        case ST_DATA_LF:
            if (c != '\n')
                REFUSE("chunk data not followed by CRLF");
            d->state = ST_SIZE_START;
            break;
        case ST_TRAILER_START:
            if (c == '\r') {
                d->state = ST_END_LF;
            } else if (fy_httpdef_is_tchar(c)) {
                d->name_bytes = 1;
                d->state = ST_TRAILER_NAME;
            } else {
                REFUSE(is_ws(c) ? "obsolete line folding in a trailer"
                                : c == '\n' ? "bare LF in the trailer section"
                                            : "invalid character in a trailer field name");
            }
            break;
        case ST_TRAILER_NAME:
            if (c == ':')
                d->state = ST_TRAILER_VALUE;
            else if (fy_httpdef_is_tchar(c))
                d->name_bytes++;
            else
                REFUSE("invalid character in a trailer field name");
            break;
        case ST_TRAILER_VALUE:
            if (c == '\r')
                d->state = ST_TRAILER_LF;
            else if (!is_value_byte(c))
                REFUSE(c == '\n' ? "bare LF in the trailer section"
                                 : "invalid character in a trailer field value");
            break;
        case ST_TRAILER_LF:
            if (c != '\n')
                REFUSE("CR without LF in the trailer section");
            if (sink->trailer != NULL && sink->trailer(sink->ctx, d->line_bytes - 2) != 0) {
                *consumed = i;
                return -ECANCELED;
            }
            d->line_bytes = 0;
            d->state = ST_TRAILER_START;
            break;
        case ST_END_LF:
            if (c != '\n')
                REFUSE("CR without LF at the end of the chunked body");
            d->state = ST_DONE;
            *consumed = i + 1;
            return FY_HTTP_CHUNKED_DONE;
        default:
            *consumed = i;
            return FY_HTTP_CHUNKED_DONE;
        }
        i++;
    }
#undef REFUSE
    *consumed = len;
    return d->state == ST_DONE ? FY_HTTP_CHUNKED_DONE : FY_HTTP_CHUNKED_MORE;
}
