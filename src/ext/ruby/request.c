/* One Rack request (the Rack 2.2 SPEC) on the C worker runtime: the env from the request
 * variables, the call, the [status, headers, body] triple, the head, the body (each, or to_path),
 * body.close, HEAD, and the app's errors (a 500 before the head, a cut response after it:
 * docs/protocol.md §3, §4.3). The rules are the old Ruby loader's, listed in
 * loaders/ruby/README.md.
 *
 * The head is handed to the runtime only when it must go: with the first non-empty body piece,
 * or after the body's each returned. Until then an error still becomes a 500. */
#include "ext.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proto/httpdef.h"
#include "proto/resphead.h"
#include "worker/host.h"

/* Pieces up to this size are copied before the GVL is released (a String may change or move
 * while another thread runs); longer ones are frozen (shared, not copied) instead. */
#define COPY_MAX 65536

/* ---- env keys and constants ----------------------------------------------------------------- */

/* The variable names most requests carry, as frozen interned keys; the first ones are those the
 * env rules look at. Any other name becomes a key per request (Hash#[]= freezes it). */
enum {
    K_REQUEST_METHOD,
    K_SCRIPT_NAME,
    K_PATH_INFO,
    K_REQUEST_URI,
    K_QUERY_STRING,
    K_SERVER_NAME,
    K_SERVER_PORT,
    K_SERVER_PROTOCOL,
    K_HTTP_HOST,
    K_HTTPS,
    K_CONTENT_LENGTH,
    K_HTTP_CONTENT_TYPE,
    K_HTTP_CONTENT_LENGTH,
    K_SPECIAL_COUNT
};
static const char *const common_names[] = {
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "REQUEST_URI", "QUERY_STRING", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_HOST", "HTTPS", "CONTENT_LENGTH",
    "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
    /* the rest: plain copies */
    "REMOTE_ADDR", "REMOTE_PORT", "CONTENT_TYPE", "HTTP_USER_AGENT", "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING", "HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION", "HTTP_COOKIE",
    "HTTP_REFERER", "HTTP_ORIGIN", "HTTP_CACHE_CONTROL", "HTTP_AUTHORIZATION",
    "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO", "HTTP_X_REQUEST_ID", "HTTP_UPGRADE", "HTTP_PRAGMA", "HTTP_DNT",
    "HTTP_VERSION", "GATEWAY_INTERFACE", "SERVER_SOFTWARE", "HTTP_X_REAL_IP",
};
#define COMMON_COUNT (sizeof common_names / sizeof common_names[0])
static size_t common_lens[COMMON_COUNT];
static VALUE common_keys[COMMON_COUNT];

static VALUE key_version, key_input, key_errors, key_url_scheme, key_multithread,
    key_multiprocess, key_run_once, key_hijack;
static VALUE value_http, value_https;
static VALUE rack_version = Qnil; /* Rack::VERSION */

static ID id_call, id_each, id_close, id_to_path, id_integer;
static VALUE sym_exception;

/* The reason phrases of Rack::Utils::HTTP_STATUS_CODES, "Unknown" for the others (the old
 * loader's), or all NULL when Rack::Utils is not loaded (then the runtime's). "Unknown" is not
 * copied into each slot: 900 small mallocs in every worker forked by a preloader took free
 * chunks all over the shared heap, a copy-on-write fault each (docs/performance.md, "Smart
 * spawning"). */
static char *reasons[1000];
static bool reasons_read; /* HTTP_STATUS_CODES was read: a code it lacks is "Unknown" */

static VALUE frozen_key(const char *s)
{
    VALUE k = rb_interned_str_cstr(s);
    rb_gc_register_mark_object(k);
    return k;
}

void fy_rbext_request_init(void)
{
    for (size_t i = 0; i < COMMON_COUNT; i++) {
        common_lens[i] = strlen(common_names[i]);
        common_keys[i] = frozen_key(common_names[i]);
    }
    key_version = frozen_key("rack.version");
    key_input = frozen_key("rack.input");
    key_errors = frozen_key("rack.errors");
    key_url_scheme = frozen_key("rack.url_scheme");
    key_multithread = frozen_key("rack.multithread");
    key_multiprocess = frozen_key("rack.multiprocess");
    key_run_once = frozen_key("rack.run_once");
    key_hijack = frozen_key("rack.hijack?");
    value_http = frozen_key("http");
    value_https = frozen_key("https");
    rb_gc_register_address(&rack_version);
    id_call = rb_intern("call");
    id_each = rb_intern("each");
    id_close = rb_intern("close");
    id_to_path = rb_intern("to_path");
    id_integer = rb_intern("Integer");
    sym_exception = ID2SYM(rb_intern("exception"));
}

static int reason_i(VALUE code, VALUE text, VALUE arg)
{
    if (FIXNUM_P(code) && FIX2LONG(code) >= 100 && FIX2LONG(code) <= 999 &&
        RB_TYPE_P(text, T_STRING)) {
        long c = FIX2LONG(code);
        free(reasons[c]);
        reasons[c] = fy_xstrndup(RSTRING_PTR(text), (size_t)RSTRING_LEN(text));
        /* what the runtime takes (host.h): printable, at most FY_WORKER_REASON_MAX bytes */
        for (char *p = reasons[c]; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        }
        if (strlen(reasons[c]) > 200)
            reasons[c][200] = '\0';
    }
    return ST_CONTINUE;
}

void fy_rbext_request_setup(void)
{
    VALUE rack = rb_const_defined(rb_cObject, rb_intern("Rack"))
                     ? rb_const_get(rb_cObject, rb_intern("Rack")) : Qnil;
    if (!NIL_P(rack) && rb_const_defined(rack, rb_intern("VERSION")))
        rack_version = rb_const_get(rack, rb_intern("VERSION"));
    else
        rack_version = rb_obj_freeze(rb_ary_new_from_args(2, INT2FIX(1), INT2FIX(3)));
    if (NIL_P(rack) || !rb_const_defined(rack, rb_intern("Utils")))
        return;
    VALUE utils = rb_const_get(rack, rb_intern("Utils"));
    if (!rb_const_defined(utils, rb_intern("HTTP_STATUS_CODES")))
        return;
    VALUE codes = rb_const_get(utils, rb_intern("HTTP_STATUS_CODES"));
    if (!RB_TYPE_P(codes, T_HASH))
        return;
    reasons_read = true;
    rb_hash_foreach(codes, reason_i, Qnil);
}

/* ---- the env -------------------------------------------------------------------------------- */

static int common_index(const char *name, size_t len)
{
    for (size_t i = 0; i < COMMON_COUNT; i++) {
        if (common_lens[i] == len && memcmp(common_names[i], name, len) == 0)
            return (int)i;
    }
    return -1;
}

static VALUE bin(const char *s, size_t n)
{
    return rb_str_new(s, (long)n); /* ASCII-8BIT */
}

static bool https_on(const char *v)
{
    return v != NULL && (strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0 ||
                         strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0);
}

static bool empty(const char *v)
{
    return v == NULL || *v == '\0';
}

/* SCRIPT_NAME is the mount point ("" at the root, never "/", no trailing slash); PATH_INFO the
 * rest, starting with "/" ("/" when both would be empty). Rack's PATH_INFO is the path as the
 * client sent it, still percent-encoded (what WEBrick, Puma and Unicorn pass; Rack::Files, Rails'
 * router and Sinatra decode it themselves): it comes from REQUEST_URI's path minus the
 * SCRIPT_NAME prefix; the core's decoded PATH_INFO is used only when REQUEST_URI is not an
 * origin-form path under SCRIPT_NAME (asterisk-form, a test client). */
static void split_path(VALUE env, const char *script_in, const char *path_in, const char *uri)
{
    size_t slen = script_in ? strlen(script_in) : 0;
    if (slen > 0 && script_in[slen - 1] == '/') {
        while (slen > 0 && script_in[slen - 1] == '/')
            slen--;
    }
    VALUE script = rb_str_buf_new((long)slen + 1);
    if (slen > 0 && script_in[0] != '/')
        rb_str_cat(script, "/", 1);
    rb_str_cat(script, script_in ? script_in : "", (long)slen);
    const char *sp = RSTRING_PTR(script);
    size_t sl = (size_t)RSTRING_LEN(script);

    const char *raw = NULL;
    size_t raw_len = 0;
    if (uri != NULL && uri[0] == '/') {
        size_t ulen = strcspn(uri, "?#");
        if (sl == 0) {
            raw = uri;
            raw_len = ulen;
        } else if (ulen >= sl && memcmp(uri, sp, sl) == 0 && (ulen == sl || uri[sl] == '/')) {
            raw = uri + sl;
            raw_len = ulen - sl;
        }
    }
    if (raw == NULL) {
        raw = path_in ? path_in : "";
        raw_len = strlen(raw);
    }
    VALUE path;
    if (raw_len == 0 && sl == 0) {
        path = bin("/", 1);
    } else if (raw_len > 0 && raw[0] != '/') {
        path = rb_str_buf_new((long)raw_len + 1);
        rb_str_cat(path, "/", 1);
        rb_str_cat(path, raw, (long)raw_len);
    } else {
        path = bin(raw, raw_len);
    }
    rb_hash_aset(env, common_keys[K_SCRIPT_NAME], script);
    rb_hash_aset(env, common_keys[K_PATH_INFO], path);
}

/* HTTP_HOST as \A(\[[^\]]*\]|[^:\[\]]*)(?::(\d*))?\z: the name and the port (each may be empty,
 * then NULL). False when it does not match. */
static bool split_host(const char *host, const char **name, size_t *name_len, const char **port,
                       size_t *port_len)
{
    const char *p = host;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL)
            return false;
        p = close + 1;
    } else {
        p += strcspn(p, ":[]");
        if (*p == '[' || *p == ']')
            return false;
    }
    *name = host;
    *name_len = (size_t)(p - host);
    *port = NULL;
    *port_len = 0;
    if (*p == '\0')
        return true;
    if (*p != ':')
        return false;
    const char *digits = ++p;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p != '\0')
        return false;
    *port = digits;
    *port_len = (size_t)(p - digits);
    return true;
}

/* The Rack env of <req>: every variable as a binary String (the runtime left the connect
 * password out; the first of a repeated name wins; names starting with "rack.",
 * HTTP_CONTENT_TYPE, HTTP_CONTENT_LENGTH and an empty CONTENT_LENGTH are dropped), QUERY_STRING
 * "" when absent, SCRIPT_NAME/PATH_INFO as split_path says, SERVER_NAME/SERVER_PORT from
 * HTTP_HOST when the core sent none, SERVER_PROTOCOL HTTP/1.1 by default, and the rack.* keys. */
static VALUE build_env(ferry_request_t *req, VALUE input)
{
    VALUE env = rb_hash_new();
    const char *special[K_SPECIAL_COUNT] = {NULL};
    uint64_t seen = 0; /* the common names already set (first wins) */
    size_t count = ferry_request_var_count(req);
    for (size_t i = 0; i < count; i++) {
        const char *name, *value;
        if (ferry_request_var_at(req, i, &name, &value) != FERRY_OK)
            continue;
        size_t nlen = strlen(name);
        if (nlen >= 5 && memcmp(name, "rack.", 5) == 0)
            continue;
        int k = common_index(name, nlen);
        if (k >= 0) {
            if (seen & (UINT64_C(1) << k))
                continue;
            seen |= UINT64_C(1) << k;
            if (k < K_SPECIAL_COUNT)
                special[k] = value;
            if (k == K_SCRIPT_NAME || k == K_PATH_INFO || k == K_HTTP_CONTENT_TYPE ||
                k == K_HTTP_CONTENT_LENGTH || (k == K_CONTENT_LENGTH && *value == '\0'))
                continue;
            rb_hash_aset(env, common_keys[k], bin(value, strlen(value)));
            continue;
        }
        VALUE key = bin(name, nlen);
        if (rb_hash_lookup2(env, key, Qundef) != Qundef)
            continue;
        rb_hash_aset(env, key, bin(value, strlen(value)));
    }
    if (special[K_QUERY_STRING] == NULL)
        rb_hash_aset(env, common_keys[K_QUERY_STRING], bin("", 0));
    split_path(env, special[K_SCRIPT_NAME], special[K_PATH_INFO], special[K_REQUEST_URI]);
    bool https = https_on(special[K_HTTPS]);
    if (empty(special[K_SERVER_PROTOCOL]))
        rb_hash_aset(env, common_keys[K_SERVER_PROTOCOL], bin("HTTP/1.1", 8));
    bool name_missing = empty(special[K_SERVER_NAME]);
    bool port_missing = empty(special[K_SERVER_PORT]);
    if (name_missing || port_missing) {
        const char *hn = NULL, *hp = NULL;
        size_t hn_len = 0, hp_len = 0;
        if (!split_host(special[K_HTTP_HOST] ? special[K_HTTP_HOST] : "", &hn, &hn_len, &hp,
                        &hp_len)) {
            hn = hp = NULL;
            hn_len = hp_len = 0;
        }
        if (name_missing)
            rb_hash_aset(env, common_keys[K_SERVER_NAME],
                         hn_len > 0 ? bin(hn, hn_len) : bin("localhost", 9));
        if (port_missing)
            rb_hash_aset(env, common_keys[K_SERVER_PORT],
                         hp_len > 0 ? bin(hp, hp_len)
                                    : (https ? bin("443", 3) : bin("80", 2)));
    }
    rb_hash_aset(env, key_version, rack_version);
    rb_hash_aset(env, key_input, input);
    rb_hash_aset(env, key_errors, rb_gv_get("$stderr"));
    rb_hash_aset(env, key_url_scheme, https ? value_https : value_http);
    rb_hash_aset(env, key_multithread, Qfalse);
    rb_hash_aset(env, key_multiprocess, Qtrue);
    rb_hash_aset(env, key_run_once, Qfalse);
    rb_hash_aset(env, key_hijack, Qfalse);
    return env;
}

/* ---- one request's state -------------------------------------------------------------------- */

typedef struct rq {
    fy_rbext_app_t *app;
    ferry_request_t *req;
    /* On this C stack frame's struct, so the GC sees them (it scans the machine stack). */
    VALUE env, input, result, body;
    int code;
    bool head_only; /* a HEAD request */
    bool started;   /* status and headers handed to the runtime */
    bool gone;      /* the core no longer reads this response */
    char fields[1200]; /* log fields: request="..." */
} rq_t;

/* The app's headers, "name\0value\0" each (reused from request to request). */
static char *hbuf;
static size_t hbuf_len, hbuf_cap, hcount, head_size;
static ferry_field_t *hfields;
static size_t hfields_cap;

static void raise_invalid(VALUE message)
{
    rb_exc_raise(rb_exc_new_str(fy_rbext_invalid_response, message));
}

static void hbuf_put(const char *s, size_t n)
{
    if (hbuf_len + n + 1 > hbuf_cap) {
        size_t cap = hbuf_cap ? hbuf_cap : 1024;
        while (cap < hbuf_len + n + 1)
            cap *= 2;
        hbuf = fy_xrealloc(hbuf, cap);
        hbuf_cap = cap;
    }
    memcpy(hbuf + hbuf_len, s, n);
    hbuf[hbuf_len + n] = '\0';
    hbuf_len += n + 1;
}

static void add_header(VALUE name, const char *value, size_t vlen)
{
    for (size_t i = 0; i < vlen; i++) {
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            raise_invalid(rb_sprintf("invalid value for header %" PRIsVALUE ": %" PRIsVALUE,
                                     name, rb_inspect(bin(value, vlen))));
    }
    size_t nlen = (size_t)RSTRING_LEN(name);
    head_size += nlen + 2 + vlen + 2;
    if (head_size > FY_RESPHEAD_MAX)
        return; /* raised once all are counted */
    hbuf_put(RSTRING_PTR(name), nlen);
    hbuf_put(value, vlen);
    hcount++;
}

/* "a\nb" is two headers (Rack 2), "" one empty one. */
static void add_lines(VALUE name, VALUE s)
{
    const char *p = RSTRING_PTR(s);
    size_t n = (size_t)RSTRING_LEN(s);
    for (;;) {
        const char *nl = memchr(p, '\n', n);
        if (nl == NULL) {
            add_header(name, p, n);
            return;
        }
        add_header(name, p, (size_t)(nl - p));
        n -= (size_t)(nl - p) + 1;
        p = nl + 1;
        RB_GC_GUARD(s);
    }
}

/* One header of the app's: headers named rack.* and Status are not sent; a value with "\n"
 * is several headers (Rack 2), an Array value too (Rack 3). */
static void take_header(VALUE name, VALUE value)
{
    name = rb_obj_as_string(name);
    const char *np = RSTRING_PTR(name);
    long nlen = RSTRING_LEN(name);
    if ((nlen >= 5 && memcmp(np, "rack.", 5) == 0) || (nlen == 6 && strncasecmp(np, "status", 6) == 0))
        return;
    bool ok = nlen > 0;
    for (long i = 0; ok && i < nlen; i++)
        ok = fy_httpdef_is_tchar((unsigned char)np[i]);
    if (!ok)
        raise_invalid(rb_sprintf("invalid header name %" PRIsVALUE, rb_inspect(name)));
    if (RB_TYPE_P(value, T_STRING)) {
        add_lines(name, value);
    } else if (RB_TYPE_P(value, T_ARRAY)) {
        if (RARRAY_LEN(value) == 0)
            add_header(name, "", 0);
        for (long i = 0; i < RARRAY_LEN(value); i++) {
            VALUE v = rb_obj_as_string(rb_ary_entry(value, i));
            add_header(name, RSTRING_PTR(v), (size_t)RSTRING_LEN(v));
            RB_GC_GUARD(v);
        }
    } else {
        add_lines(name, rb_obj_as_string(value));
    }
}

static int header_hash_i(VALUE name, VALUE value, VALUE arg)
{
    take_header(name, value);
    return ST_CONTINUE;
}

static VALUE header_each_i(RB_BLOCK_CALL_FUNC_ARGLIST(yielded, arg))
{
    if (argc == 1 && RB_TYPE_P(argv[0], T_ARRAY))
        take_header(rb_ary_entry(argv[0], 0), rb_ary_entry(argv[0], 1));
    else
        take_header(argc > 0 ? argv[0] : Qnil, argc > 1 ? argv[1] : Qnil);
    return Qnil;
}

static const char *reason_of(int code)
{
    if (reasons[code] == NULL && reasons_read)
        return "Unknown";
    return reasons[code];
}

/* The status line's size, for the head limit. */
static size_t status_line_size(int code)
{
    const char *r = reason_of(code);
    if (r == NULL)
        r = fy_httpdef_status_reason(code);
    return strlen("Status: 000 \r\n") + strlen(r);
}

/* Checks the app's [status, headers, body] triple and collects the headers. */
static void check_triple(rq_t *rq)
{
    VALUE result = rq->result;
    if (!RB_TYPE_P(result, T_ARRAY) || RARRAY_LEN(result) != 3)
        raise_invalid(rb_sprintf("the app returned %" PRIsVALUE
                                 " instead of [status, headers, body]",
                                 rb_class_name(rb_obj_class(result))));
    VALUE status = rb_ary_entry(result, 0);
    VALUE headers = rb_ary_entry(result, 1);
    VALUE code = status;
    if (!RB_INTEGER_TYPE_P(status)) {
        VALUE opts = rb_hash_new();
        rb_hash_aset(opts, sym_exception, Qfalse);
        VALUE args[3] = {rb_obj_as_string(status), INT2FIX(10), opts};
        code = rb_funcallv_kw(rb_mKernel, id_integer, 3, args, RB_PASS_KEYWORDS);
    }
    if (!FIXNUM_P(code) || FIX2LONG(code) < 100 || FIX2LONG(code) > 999)
        raise_invalid(rb_sprintf("invalid status %" PRIsVALUE, rb_inspect(status)));
    rq->code = (int)FIX2LONG(code);
    if (!rb_respond_to(headers, id_each))
        raise_invalid(rb_str_new_cstr("headers do not respond to #each"));
    if (!rb_respond_to(rq->body, id_each))
        raise_invalid(rb_str_new_cstr("body does not respond to #each"));
    hbuf_len = hcount = 0;
    head_size = status_line_size(rq->code) + 2;
    if (RB_TYPE_P(headers, T_HASH) && rb_obj_class(headers) == rb_cHash)
        rb_hash_foreach(headers, header_hash_i, Qnil);
    else
        rb_block_call(headers, id_each, 0, NULL, header_each_i, Qnil);
    if (head_size > FY_RESPHEAD_MAX)
        raise_invalid(rb_sprintf("response head of %zu bytes is over %u", head_size,
                                 FY_RESPHEAD_MAX));
}

static VALUE call_app(VALUE arg)
{
    rq_t *rq = (rq_t *)arg;
    rq->input = fy_rbext_input_new(rq->req);
    rq->env = build_env(rq->req, rq->input);
    rq->result = rb_funcall(rq->app->app, id_call, 1, rq->env);
    if (RB_TYPE_P(rq->result, T_ARRAY) && RARRAY_LEN(rq->result) == 3)
        rq->body = rb_ary_entry(rq->result, 2);
    check_triple(rq);
    return Qnil;
}

/* ---- the response --------------------------------------------------------------------------- */

static void raise_gone(rq_t *rq)
{
    rq->gone = true;
    rb_raise(fy_rbext_client_gone, "the core closed the connection");
}

/* Hands status and headers to the runtime (nothing is written yet). */
static void start(rq_t *rq)
{
    if (hcount > hfields_cap) {
        hfields_cap = hcount * 2;
        hfields = fy_xrealloc(hfields, hfields_cap * sizeof *hfields);
    }
    const char *p = hbuf;
    for (size_t i = 0; i < hcount; i++) {
        hfields[i].name = p;
        p += strlen(p) + 1;
        hfields[i].value = p;
        p += strlen(p) + 1;
    }
    int rc = fy_worker_response_start_reason(rq->req, rq->code, reason_of(rq->code), hfields,
                                             hcount);
    if (rc == FERRY_ETOOBIG)
        raise_invalid(rb_sprintf("response head is over %u bytes", FY_RESPHEAD_MAX));
    if (rc != FERRY_OK)
        raise_invalid(rb_sprintf("the runtime refused the response head: %s",
                                 ferry_strerror(rc)));
    rq->started = true;
}

static VALUE start_v(VALUE arg)
{
    start((rq_t *)arg);
    return Qnil;
}

static void finish(rq_t *rq)
{
    if (!rq->started)
        start(rq);
    if (fy_rbext_end(rq->req) != FERRY_OK || fy_worker_request_aborted(rq->req))
        rq->gone = true;
}

static char *wbuf;

static void send_piece(rq_t *rq, VALUE piece)
{
    if (!RB_TYPE_P(piece, T_STRING))
        raise_invalid(rb_sprintf("the body yielded %" PRIsVALUE ", not a String",
                                 rb_class_name(rb_obj_class(piece))));
    long len = RSTRING_LEN(piece);
    if (len == 0)
        return;
    if (rq->gone)
        raise_gone(rq);
    if (!rq->started)
        start(rq);
    int rc;
    if (OBJ_FROZEN(piece) && FL_TEST_RAW(piece, RSTRING_NOEMBED)) {
        rc = fy_rbext_write(rq->req, RSTRING_PTR(piece), (size_t)len);
    } else if (len <= COPY_MAX) {
        if (wbuf == NULL)
            wbuf = fy_xmalloc(COPY_MAX);
        memcpy(wbuf, RSTRING_PTR(piece), (size_t)len);
        rc = fy_rbext_write(rq->req, wbuf, (size_t)len);
    } else {
        /* A frozen string sharing the buffer: a change to <piece> by another thread while the
         * GVL is away copies <piece>, not this buffer. */
        VALUE shared = rb_str_new_frozen(piece);
        if (FL_TEST_RAW(shared, RSTRING_NOEMBED)) {
            rc = fy_rbext_write(rq->req, RSTRING_PTR(shared), (size_t)len);
        } else {
            char *copy = fy_xmalloc((size_t)len);
            memcpy(copy, RSTRING_PTR(shared), (size_t)len);
            rc = fy_rbext_write(rq->req, copy, (size_t)len);
            free(copy);
        }
        RB_GC_GUARD(shared);
    }
    RB_GC_GUARD(piece);
    if (rc != FERRY_OK || fy_worker_request_aborted(rq->req))
        raise_gone(rq);
}

static VALUE body_each_i(RB_BLOCK_CALL_FUNC_ARGLIST(yielded, arg))
{
    send_piece((rq_t *)arg, argc > 0 ? argv[0] : Qnil);
    return Qnil;
}

/* The body by to_path (a file, sent without the GVL). False when the file cannot be opened:
 * then each is used. */
static bool send_file(rq_t *rq)
{
    VALUE path = rb_funcall(rq->body, id_to_path, 0);
    if (!RB_TYPE_P(path, T_STRING))
        return false;
    int fd = open(StringValueCStr(path), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return false;
    }
    int read_errno = 0;
    int rc = FERRY_OK;
    if (!rq->started) {
        int state = 0;
        rb_protect(start_v, (VALUE)rq, &state);
        if (state != 0) {
            close(fd);
            rb_jump_tag(state);
        }
    }
    rc = fy_rbext_send_fd(rq->req, fd, &read_errno);
    close(fd);
    if (rc == FERRY_EIO)
        raise_gone(rq);
    if (rc != FERRY_OK) {
        errno = read_errno;
        rb_sys_fail_str(rb_sprintf("reading the body's file %" PRIsVALUE, path));
    }
    return true;
}

/* No body for HEAD, 1xx, 204 and 304: the body is not iterated. */
static VALUE send_body(VALUE arg)
{
    rq_t *rq = (rq_t *)arg;
    int code = rq->code;
    if (rq->head_only || code < 200 || code == 204 || code == 304) {
        finish(rq);
        return Qnil;
    }
    VALUE body = rq->body;
    if (rb_respond_to(body, id_to_path) && send_file(rq)) {
        finish(rq);
        return Qnil;
    }
    if (RB_TYPE_P(body, T_ARRAY) && rb_obj_class(body) == rb_cArray) {
        /* A plain Array has no close: nothing of the app's runs after its last piece. */
        fy_worker_request_final_write_with_end(rq->req);
        for (long i = 0; i < RARRAY_LEN(body); i++)
            send_piece(rq, rb_ary_entry(body, i));
    } else {
        rb_block_call(body, id_each, 0, NULL, body_each_i, (VALUE)rq);
    }
    if (rq->gone)
        raise_gone(rq); /* the app caught ClientGone and went on */
    finish(rq);
    return Qnil;
}

static VALUE close_body_body(VALUE body)
{
    if (rb_respond_to(body, id_close))
        rb_funcall(body, id_close, 0);
    return Qnil;
}

/* ---- failures ------------------------------------------------------------------------------- */

/* Takes the pending exception of a failed rb_protect. SystemExit and SignalException end the
 * worker: kept for FerryExt.serve to raise again once the runtime has stopped (a soft stop is
 * asked for, so the current request is the last). Returns the exception, with *fatal set. */
static VALUE take_error(rq_t *rq, bool *fatal)
{
    VALUE err = rb_errinfo();
    rb_set_errinfo(Qnil);
    *fatal = rb_obj_is_kind_of(err, rb_eSystemExit) || rb_obj_is_kind_of(err, rb_eSignal);
    if (*fatal && NIL_P(rq->app->pending_exit)) {
        rq->app->pending_exit = err;
        kill(getpid(), SIGUSR1);
    }
    return err;
}

static void error_id(char out[13])
{
    unsigned char raw[6];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)(rand() & 0xff);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + i * 2, 3, "%02x", raw[i]);
}

/* The 500 sent when the app failed before its head went out: in development the error and its
 * backtrace, otherwise a generic page with an error id that the log line also carries. */
static void answer_500(rq_t *rq, VALUE err)
{
    char id[13];
    error_id(id);
    char *first, *trace;
    fy_rbext_describe(err, &first, &trace);
    char fields[1300];
    snprintf(fields, sizeof fields, "%s", rq->fields);
    fy_rbext_log_field(fields, sizeof fields, "error_id", id);
    char *message = fy_xasprintf("the app raised %s", first);
    fy_rbext_log(FY_LOG_ERROR, fields, message, trace);
    free(message);
    char *body;
    if (rq->app->development) {
        size_t tlen = strlen(trace);
        char *ind = fy_xmalloc(tlen * 2 + 8);
        size_t n = 0;
        for (const char *p = trace; *p;) {
            const char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            memcpy(ind + n, "\n    ", 5);
            n += 5;
            memcpy(ind + n, p, l);
            n += l;
            p += l + (nl ? 1 : 0);
        }
        ind[n] = '\0';
        body = fy_xasprintf("500 Internal Server Error (error id %s)\n\n%s%s\n", id, first, ind);
        free(ind);
    } else {
        body = fy_xasprintf("500 Internal Server Error\n\nThe application failed to handle this "
                            "request. Error id: %s\n", id);
    }
    free(first);
    free(trace);
    char length[24];
    snprintf(length, sizeof length, "%zu", strlen(body));
    ferry_field_t f[] = {{"Content-Type", "text/plain; charset=utf-8"},
                         {"Content-Length", length},
                         {"Cache-Control", "no-store"}};
    if (fy_worker_response_start_reason(rq->req, 500, NULL, f, 3) == FERRY_OK) {
        rq->started = true;
        if (fy_rbext_write(rq->req, body, strlen(body)) == FERRY_OK)
            fy_rbext_end(rq->req);
    }
    free(body);
}

static void log_error(rq_t *rq, const char *prefix, VALUE err, const char *suffix)
{
    char *first, *trace;
    fy_rbext_describe(err, &first, &trace);
    char *message = fy_xasprintf("%s%s%s", prefix, first, suffix);
    fy_rbext_log(FY_LOG_ERROR, rq->fields, message, trace);
    free(message);
    free(first);
    free(trace);
}

static void close_body(rq_t *rq)
{
    if (NIL_P(rq->body))
        return;
    int state = 0;
    rb_protect(close_body_body, rq->body, &state);
    if (state != 0) {
        bool fatal;
        VALUE err = take_error(rq, &fatal);
        if (!fatal)
            log_error(rq, "body.close raised ", err, "");
    }
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!fy_httpdef_is_tchar((unsigned char)*s))
            return false;
    }
    return true;
}

/* A request the old loader refused (never sent by the core): 400, logged. */
static int refuse(ferry_request_t *req, const char *why)
{
    char *message = fy_xasprintf("request refused: %s; answering 400", why);
    fy_rbext_log(FY_LOG_WARN, "", message, NULL);
    free(message);
    static const char body[] = "bad request\n";
    ferry_field_t f[] = {{"Content-Type", "text/plain"}, {"Content-Length", "12"}};
    if (fy_worker_response_start_reason(req, 400, NULL, f, 2) == FERRY_OK &&
        fy_rbext_write(req, body, sizeof body - 1) == FERRY_OK)
        fy_rbext_end(req);
    return FERRY_OK;
}

int fy_rbext_handle_request(fy_rbext_app_t *app, ferry_request_t *req)
{
    const char *method = ferry_request_var(req, "REQUEST_METHOD");
    if (method == NULL)
        return refuse(req, "REQUEST_METHOD is missing");
    if (!is_token(method))
        return refuse(req, "REQUEST_METHOD is not a token");
    const char *uri = ferry_request_var(req, "REQUEST_URI");
    if (uri == NULL)
        uri = ferry_request_path(req);
    snprintf(fy_rbext_current, sizeof fy_rbext_current, "%s %s", method, uri);

    rq_t rq = {.app = app, .req = req, .env = Qnil, .input = Qnil, .result = Qnil,
               .body = Qnil, .head_only = strcmp(method, "HEAD") == 0};
    rq.fields[0] = '\0';
    fy_rbext_log_field(rq.fields, sizeof rq.fields, "request", fy_rbext_current);

    int rc = FERRY_OK;
    int state = 0;
    bool fatal = false;
    rb_protect(call_app, (VALUE)&rq, &state);
    if (state != 0) {
        VALUE err = take_error(&rq, &fatal);
        close_body(&rq);
        if (fatal)
            rc = FERRY_ERROR; /* the runtime answers 500; the worker then exits */
        else
            answer_500(&rq, err);
    } else {
        rb_protect(send_body, (VALUE)&rq, &state);
        VALUE err = state != 0 ? take_error(&rq, &fatal) : Qnil;
        close_body(&rq);
        if (state == 0) {
            /* complete */
        } else if (rq.gone && rb_obj_is_kind_of(err, fy_rbext_client_gone)) {
            fy_rbext_log(FY_LOG_INFO, rq.fields,
                         "the core closed the connection during the response", NULL);
        } else if (fatal || rq.started) {
            if (!fatal)
                log_error(&rq, "the app failed after the response head was sent: ", err,
                          "; connection closed");
            rc = FERRY_ERROR; /* v2: END with APP_FAILED; v1: the connection is cut */
        } else {
            answer_500(&rq, err);
        }
    }
    if (!NIL_P(rq.input))
        fy_rbext_input_detach(rq.input);
    fy_rbext_current[0] = '\0';
    app->requests_served++;
    RB_GC_GUARD(rq.env);
    RB_GC_GUARD(rq.result);
    RB_GC_GUARD(rq.body);
    RB_GC_GUARD(rq.input);
    return rc;
}
