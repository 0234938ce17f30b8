/* rack.input (the Rack 2 SPEC, "The Input Stream"): FerryExt::Input, a rewindable binary stream
 * over the request body. The body is read from the runtime only as the app asks for it (never
 * past CONTENT_LENGTH), with the GVL released, and kept so that rewind works: in memory up to
 * BODY_MEMORY_MAX bytes, past that in an unlinked temp file in $TMPDIR (the old loader's bound:
 * a big upload never sits in the worker's heap). Everything is freed when the request ends. */
#include "ext.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ruby/encoding.h>
#include <ruby/thread.h>

#include "core/alloc.h"

#define BODY_MEMORY_MAX (1024 * 1024)
/* The least the runtime is asked for at once (a read of a few bytes gets a window). */
#define PULL_CHUNK 65536

static VALUE input_class;

typedef struct input {
    ferry_request_t *req; /* NULL once the request is over */
    uint64_t length;      /* CONTENT_LENGTH */
    uint64_t filled;      /* bytes taken from the runtime */
    uint64_t pos;         /* the read position */
    char *mem;            /* bytes [0, filled) while not spilled */
    size_t cap;
    int fd;               /* the spill file, -1 */
    char *scratch;        /* PULL_CHUNK bytes for the spill file */
    int error;            /* a failed read's FERRY_E*, 0 */
    bool busy;            /* a thread is filling, with the GVL released */
} input_t;

static void input_release(input_t *in)
{
    free(in->mem);
    free(in->scratch);
    in->mem = in->scratch = NULL;
    in->cap = 0;
    if (in->fd >= 0)
        close(in->fd);
    in->fd = -1;
}

static void input_free(void *p)
{
    input_t *in = p;
    input_release(in);
    xfree(in);
}

static size_t input_size(const void *p)
{
    const input_t *in = p;
    return sizeof *in + in->cap + (in->scratch ? PULL_CHUNK : 0);
}

static const rb_data_type_t input_type = {
    .wrap_struct_name = "FerryExt::Input",
    .function = {.dmark = NULL, .dfree = input_free, .dsize = input_size},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE input_alloc(VALUE klass)
{
    input_t *in;
    VALUE obj = TypedData_Make_Struct(klass, input_t, &input_type, in);
    in->fd = -1;
    return obj;
}

VALUE fy_rbext_input_new(ferry_request_t *req)
{
    VALUE obj = input_alloc(input_class);
    input_t *in = RTYPEDDATA_DATA(obj);
    in->req = req;
    in->length = ferry_request_content_length(req);
    return obj;
}

void fy_rbext_input_detach(VALUE obj)
{
    input_t *in = RTYPEDDATA_DATA(obj);
    if (in->busy)
        fy_rbext_sdk_quiesce(); /* an app thread is still reading: let it finish first */
    in->req = NULL;
    input_release(in);
}

static input_t *live(VALUE self)
{
    input_t *in = rb_check_typeddata(self, &input_type);
    if (in->req == NULL)
        rb_raise(rb_eIOError, "closed stream (rack.input of a request that is over)");
    return in;
}

/* The error of a failed body read, raised. */
static void raise_read_error(int rc)
{
    if (rc == FERRY_ETIMEDOUT)
        rb_raise(rb_eIOError, "reading the request body timed out (no byte for 60 s)");
    rb_raise(rb_eIOError, "the request body ended before CONTENT_LENGTH bytes: %s",
             ferry_strerror(rc));
}

static void spill(input_t *in)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/ferry-rack-body-XXXXXX", dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        rb_sys_fail("rack.input: cannot create a temp file for the request body");
    unlink(path);
    for (uint64_t off = 0; off < in->filled;) {
        ssize_t n = pwrite(fd, in->mem + off, (size_t)(in->filled - off), (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            errno = e ? e : EIO;
            rb_sys_fail("rack.input: writing the request body to a temp file");
        }
        off += (uint64_t)n;
    }
    free(in->mem);
    in->mem = NULL;
    in->cap = 0;
    in->fd = fd;
    in->scratch = fy_xmalloc(PULL_CHUNK);
}

/* Takes bytes from the runtime until <target> (at most CONTENT_LENGTH) are held. */
static void fill_to(input_t *in, uint64_t target)
{
    if (target > in->length)
        target = in->length;
    while (in->filled < target) {
        while (in->busy)
            rb_thread_schedule(); /* another app thread is reading: it fills for us too */
        if (in->req == NULL)
            rb_raise(rb_eIOError, "closed stream (rack.input of a request that is over)");
        if (in->filled >= target)
            break;
        if (in->error != 0)
            raise_read_error(in->error);
        uint64_t want = target - in->filled;
        if (want < PULL_CHUNK)
            want = PULL_CHUNK;
        if (want > in->length - in->filled)
            want = in->length - in->filled;
        if (in->fd < 0 && in->filled + want > BODY_MEMORY_MAX)
            spill(in);
        char *dst;
        if (in->fd < 0) {
            if (in->filled + want > in->cap) {
                size_t cap = in->cap ? in->cap : PULL_CHUNK;
                while (cap < in->filled + want)
                    cap *= 2;
                if (cap > in->length)
                    cap = (size_t)in->length;
                in->mem = fy_xrealloc(in->mem, cap);
                in->cap = cap;
            }
            dst = in->mem + in->filled;
        } else {
            if (want > PULL_CHUNK)
                want = PULL_CHUNK;
            dst = in->scratch;
        }
        ferry_request_t *req = in->req;
        in->busy = true;
        ssize_t n = fy_rbext_read(req, dst, (size_t)want);
        in->busy = false;
        if (in->req == NULL)
            rb_raise(rb_eIOError, "closed stream (rack.input of a request that is over)");
        if (n < 0) {
            in->error = (int)n;
            raise_read_error(in->error);
        }
        if (n == 0) {
            in->error = FERRY_EIO; /* the body ended early */
            raise_read_error(in->error);
        }
        if (in->fd >= 0) {
            for (ssize_t off = 0; off < n;) {
                ssize_t w = pwrite(in->fd, dst + off, (size_t)(n - off),
                                   (off_t)(in->filled + (uint64_t)off));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    rb_sys_fail("rack.input: writing the request body to a temp file");
                off += w;
            }
        }
        in->filled += (uint64_t)n;
    }
}

/* Copies the held bytes [off, off + n) to <dst>. */
static void copy_out(input_t *in, uint64_t off, char *dst, size_t n)
{
    if (in->fd < 0) {
        memcpy(dst, in->mem + off, n);
        return;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(in->fd, dst + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rb_sys_fail("rack.input: reading the request body's temp file");
        got += (size_t)r;
    }
}

static VALUE binary(VALUE s)
{
    rb_enc_associate(s, rb_ascii8bit_encoding());
    return s;
}

/* read(length = nil, buffer = nil): length nil reads to the end ("" at the end); a positive
 * length reads at most that many bytes (nil at the end); buffer receives the bytes. */
static VALUE input_read(int argc, VALUE *argv, VALUE self)
{
    VALUE vlen, buf;
    rb_scan_args(argc, argv, "02", &vlen, &buf);
    input_t *in = live(self);
    uint64_t n;
    if (NIL_P(vlen)) {
        fill_to(in, in->length);
        n = in->filled - in->pos;
    } else {
        long len = NUM2LONG(vlen);
        if (len < 0)
            rb_raise(rb_eArgError, "negative length %ld given", len);
        if (len == 0) {
            if (!NIL_P(buf)) {
                StringValue(buf);
                rb_str_resize(buf, 0);
                return binary(buf);
            }
            return binary(rb_str_new(NULL, 0));
        }
        fill_to(in, in->pos + (uint64_t)len);
        n = in->filled - in->pos;
        if (n > (uint64_t)len)
            n = (uint64_t)len;
        if (n == 0) {
            if (!NIL_P(buf)) {
                StringValue(buf);
                rb_str_resize(buf, 0);
            }
            return Qnil;
        }
    }
    VALUE out;
    if (!NIL_P(buf)) {
        StringValue(buf);
        rb_str_modify(buf);
        rb_str_resize(buf, (long)n);
        out = buf;
    } else {
        out = rb_str_new(NULL, (long)n);
    }
    copy_out(in, in->pos, RSTRING_PTR(out), (size_t)n);
    in->pos += n;
    return binary(out);
}

/* readpartial(length, buffer = nil): like read(length), but EOFError at the end. */
static VALUE input_readpartial(int argc, VALUE *argv, VALUE self)
{
    rb_check_arity(argc, 1, 2);
    VALUE r = input_read(argc, argv, self);
    if (NIL_P(r))
        rb_raise(rb_eEOFError, "end of file reached");
    return r;
}

/* gets(sep = "\n"): the next line with its "\n" (the rest at the end), nil at the end; a nil
 * separator reads the rest. */
static VALUE input_gets(int argc, VALUE *argv, VALUE self)
{
    rb_check_arity(argc, 0, 1);
    input_t *in = live(self);
    if (argc == 1) {
        VALUE sep = argv[0];
        if (NIL_P(sep)) {
            VALUE rest = input_read(0, NULL, self);
            return RSTRING_LEN(rest) == 0 ? Qnil : rest;
        }
        StringValue(sep);
        if (RSTRING_LEN(sep) != 1 || RSTRING_PTR(sep)[0] != '\n')
            rb_raise(rb_eNotImpError, "rack.input#gets takes no separator but \"\\n\" or nil");
    }
    if (in->pos >= in->length)
        return Qnil;
    VALUE out = rb_str_new(NULL, 0);
    char chunk[4096];
    for (;;) {
        if (in->pos == in->filled) {
            if (in->filled >= in->length)
                break;
            fill_to(in, in->filled + 1);
        }
        uint64_t avail = in->filled - in->pos;
        size_t n = avail < sizeof chunk ? (size_t)avail : sizeof chunk;
        const char *p;
        if (in->fd < 0) {
            p = in->mem + in->pos;
        } else {
            copy_out(in, in->pos, chunk, n);
            p = chunk;
        }
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) + 1 : n;
        rb_str_cat(out, p, (long)take);
        in->pos += take;
        if (nl)
            break;
    }
    return binary(out);
}

static VALUE input_each(VALUE self)
{
    RETURN_ENUMERATOR(self, 0, NULL);
    VALUE line;
    while (!NIL_P(line = input_gets(0, NULL, self)))
        rb_yield(line);
    return self;
}

static VALUE input_rewind(VALUE self)
{
    live(self)->pos = 0;
    return INT2FIX(0);
}

static VALUE input_size_m(VALUE self)
{
    input_t *in = rb_check_typeddata(self, &input_type);
    return ULL2NUM(in->length);
}

static VALUE input_pos(VALUE self)
{
    return ULL2NUM(live(self)->pos);
}

static VALUE input_eof(VALUE self)
{
    input_t *in = live(self);
    return in->pos >= in->length ? Qtrue : Qfalse;
}

static VALUE input_self(int argc, VALUE *argv, VALUE self)
{
    return self;
}

static VALUE input_true(VALUE self)
{
    return Qtrue;
}

static VALUE input_close(VALUE self)
{
    return Qnil; /* the server closes it when the request ends (Rack SPEC) */
}

static VALUE input_external_encoding(VALUE self)
{
    return rb_enc_from_encoding(rb_ascii8bit_encoding());
}

void fy_rbext_input_init(VALUE module)
{
    input_class = rb_define_class_under(module, "Input", rb_cObject);
    rb_undef_alloc_func(input_class);
    rb_define_const(input_class, "BODY_MEMORY_MAX", INT2FIX(BODY_MEMORY_MAX));
    rb_define_method(input_class, "read", input_read, -1);
    rb_define_method(input_class, "readpartial", input_readpartial, -1);
    rb_define_method(input_class, "gets", input_gets, -1);
    rb_define_method(input_class, "each", input_each, 0);
    rb_define_method(input_class, "rewind", input_rewind, 0);
    rb_define_method(input_class, "size", input_size_m, 0);
    rb_define_method(input_class, "length", input_size_m, 0);
    rb_define_method(input_class, "pos", input_pos, 0);
    rb_define_method(input_class, "tell", input_pos, 0);
    rb_define_method(input_class, "eof?", input_eof, 0);
    rb_define_method(input_class, "eof", input_eof, 0);
    rb_define_method(input_class, "binmode", input_self, -1);
    rb_define_method(input_class, "set_encoding", input_self, -1);
    rb_define_method(input_class, "binmode?", input_true, 0);
    rb_define_method(input_class, "close", input_close, 0);
    rb_define_method(input_class, "external_encoding", input_external_encoding, 0);
}
