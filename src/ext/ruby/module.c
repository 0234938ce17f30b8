/* The Ruby extension `ferry_ext`: the Rack loader's way into the C worker runtime
 * (src/worker/host.h, docs/architecture.md "One worker runtime"). loaders/ruby/rack_loader.rb
 * calls FerryExt.boot first, loads config.ru, then FerryExt.fail or FerryExt.serve; everything
 * from the socket to the last byte of each response happens in C. See README.md next to this
 * file.
 *
 * The GVL: FerryExt.serve runs fy_worker_host_serve without it (the app's other threads run
 * while the worker waits for a request) and on_request takes it back for the request; the
 * blocking SDK calls release it again. Every Ruby call made from inside the runtime's frames is
 * under rb_protect, so no Ruby exception ever unwinds through C runtime code. */
#include "ext.h"

#include <ruby/thread.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "worker/host.h"

VALUE fy_rbext_module;
VALUE fy_rbext_invalid_response;
VALUE fy_rbext_client_gone;
char fy_rbext_current[1024];

/* What the boot error message may carry (the array message holds 65535 bytes, docs/protocol.md
 * §5): the summary is one line for an error page, the details a backtrace. */
#define SUMMARY_MAX 4096
#define DETAILS_MAX 60000

/* ---- describing exceptions ------------------------------------------------------------------ */

typedef struct describe_args {
    VALUE exc;
    VALUE first, trace; /* Strings */
} describe_args_t;

static VALUE describe_body(VALUE arg)
{
    describe_args_t *d = (describe_args_t *)arg;
    VALUE cls = rb_class_name(rb_obj_class(d->exc));
    VALUE msg = rb_funcall(d->exc, rb_intern("message"), 0);
    d->first = rb_str_dup(rb_obj_as_string(cls));
    rb_str_cat_cstr(d->first, ": ");
    rb_str_append(d->first, rb_obj_as_string(msg));
    VALUE bt = rb_funcall(d->exc, rb_intern("backtrace"), 0);
    d->trace = rb_str_new(NULL, 0);
    if (RB_TYPE_P(bt, T_ARRAY)) {
        for (long i = 0; i < RARRAY_LEN(bt); i++) {
            rb_str_append(d->trace, rb_obj_as_string(rb_ary_entry(bt, i)));
            rb_str_cat_cstr(d->trace, "\n");
        }
    }
    return Qnil;
}

/* A C copy of <s> with NUL bytes as "\0" (log lines and pages are text). */
static char *text_of(VALUE s)
{
    const char *p = RSTRING_PTR(s);
    long n = RSTRING_LEN(s);
    char *out = fy_xmalloc((size_t)n * 2 + 1);
    size_t len = 0;
    for (long i = 0; i < n; i++) {
        if (p[i] == '\0') {
            out[len++] = '\\';
            out[len++] = '0';
        } else {
            out[len++] = p[i];
        }
    }
    out[len] = '\0';
    return out;
}

void fy_rbext_describe(VALUE exc, char **first, char **trace)
{
    describe_args_t d = {exc, Qnil, Qnil};
    int state = 0;
    if (rb_obj_is_kind_of(exc, rb_eException))
        rb_protect(describe_body, (VALUE)&d, &state);
    else
        state = 1;
    if (state != 0) {
        rb_set_errinfo(Qnil);
        *first = fy_xstrdup("(an error that could not be described)");
        *trace = fy_xstrdup("");
        return;
    }
    *first = text_of(d.first);
    *trace = text_of(d.trace);
    RB_GC_GUARD(d.first);
    RB_GC_GUARD(d.trace);
}

/* FerryExt.log(level, message, fields = nil, detail = nil): level "alert".."debug" (String or
 * Symbol); fields a Hash shown as key=value after pid=; detail a String or an Array of lines
 * indented under the line. */
static VALUE rb_ferry_log(int argc, VALUE *argv, VALUE self)
{
    VALUE level, message, fields, detail;
    rb_scan_args(argc, argv, "22", &level, &message, &fields, &detail);
    VALUE level_s = rb_obj_as_string(level);
    fy_log_level_t lvl;
    if (fy_log_parse_level(StringValueCStr(level_s), &lvl) != 0)
        rb_raise(rb_eArgError, "unknown log level %" PRIsVALUE
                 " (alert, error, warn, notice, info, debug)", level_s);
    char kv[8192] = "";
    if (!NIL_P(fields)) {
        VALUE pairs = rb_funcall(fields, rb_intern("to_a"), 0);
        Check_Type(pairs, T_ARRAY);
        for (long i = 0; i < RARRAY_LEN(pairs); i++) {
            VALUE pair = rb_ary_entry(pairs, i);
            Check_Type(pair, T_ARRAY);
            VALUE k = rb_obj_as_string(rb_ary_entry(pair, 0));
            VALUE v = rb_obj_as_string(rb_ary_entry(pair, 1));
            char *ks = text_of(k), *vs = text_of(v);
            fy_rbext_log_field(kv, sizeof kv, ks, vs);
            free(ks);
            free(vs);
        }
    }
    VALUE detail_s = Qnil;
    if (RB_TYPE_P(detail, T_ARRAY))
        detail_s = rb_ary_join(detail, rb_str_new_cstr("\n"));
    else if (!NIL_P(detail))
        detail_s = rb_obj_as_string(detail);
    char *msg = text_of(rb_obj_as_string(message));
    char *det = NIL_P(detail_s) ? NULL : text_of(detail_s);
    fy_rbext_log((int)lvl, kv, msg, det);
    free(msg);
    free(det);
    return Qnil;
}

/* ---- the SDK without the GVL ---------------------------------------------------------------- */

static pthread_mutex_t sdk_mutex = PTHREAD_MUTEX_INITIALIZER;

enum sdk_op { SDK_WRITE, SDK_END, SDK_READ, SDK_SEND_FD, SDK_NONE };

#define SEND_FD_CHUNK (256 * 1024)

typedef struct sdk_call {
    enum sdk_op op;
    ferry_request_t *req;
    char *buf;
    const char *data;
    size_t len;
    int fd;
    int read_errno;
    ssize_t rc;
} sdk_call_t;

/* Sends the file <c->fd> from its current offset to its end. */
static void send_fd(sdk_call_t *c)
{
    char *buf = malloc(SEND_FD_CHUNK);
    if (buf == NULL) {
        c->read_errno = ENOMEM;
        c->rc = FERRY_ERROR;
        return;
    }
    c->rc = FERRY_OK;
    for (;;) {
        ssize_t n = read(c->fd, buf, SEND_FD_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            c->read_errno = errno;
            c->rc = FERRY_ERROR;
            break;
        }
        if (n == 0)
            break;
        int rc = ferry_response_write(c->req, buf, (size_t)n);
        if (rc != FERRY_OK || fy_worker_request_aborted(c->req)) {
            c->rc = FERRY_EIO;
            break;
        }
    }
    free(buf);
}

static void *sdk_nogvl(void *arg)
{
    sdk_call_t *c = arg;
    pthread_mutex_lock(&sdk_mutex);
    switch (c->op) {
    case SDK_WRITE:
        c->rc = ferry_response_write(c->req, c->data, c->len);
        break;
    case SDK_END:
        c->rc = ferry_response_end(c->req);
        break;
    case SDK_READ: {
        size_t got = 0;
        c->rc = 0;
        while (got < c->len) {
            ssize_t n = ferry_request_read(c->req, c->buf + got, c->len - got);
            if (n < 0) {
                c->rc = n;
                break;
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        if (c->rc == 0)
            c->rc = (ssize_t)got;
        break;
    }
    case SDK_SEND_FD:
        send_fd(c);
        break;
    case SDK_NONE:
        c->rc = 0;
        break;
    }
    pthread_mutex_unlock(&sdk_mutex);
    return NULL;
}

static ssize_t sdk_call(sdk_call_t *c)
{
    rb_thread_call_without_gvl(sdk_nogvl, c, NULL, NULL);
    return c->rc;
}

int fy_rbext_write(ferry_request_t *req, const char *data, size_t len)
{
    sdk_call_t c = {.op = SDK_WRITE, .req = req, .data = data, .len = len};
    return (int)sdk_call(&c);
}

int fy_rbext_end(ferry_request_t *req)
{
    sdk_call_t c = {.op = SDK_END, .req = req};
    return (int)sdk_call(&c);
}

ssize_t fy_rbext_read(ferry_request_t *req, char *buf, size_t len)
{
    sdk_call_t c = {.op = SDK_READ, .req = req, .buf = buf, .len = len};
    return sdk_call(&c);
}

int fy_rbext_send_fd(ferry_request_t *req, int fd, int *read_errno)
{
    sdk_call_t c = {.op = SDK_SEND_FD, .req = req, .fd = fd};
    sdk_call(&c);
    *read_errno = c.read_errno;
    return (int)c.rc;
}

void fy_rbext_sdk_quiesce(void)
{
    sdk_call_t c = {.op = SDK_NONE};
    sdk_call(&c);
}

/* ---- SIGQUIT: every Ruby thread's backtrace ------------------------------------------------- */

/* The runtime's SIGQUIT handler writes its line and the C stacks, then calls sigquit_hook (in
 * the signal handler: write(2) only), which wakes a Ruby thread of ours blocked on this pipe;
 * that thread takes the GVL and logs Thread.list's backtraces. It gets the GVL whatever the
 * main thread does: waiting for a request (GVL released), sleeping or blocked in the app (GVL
 * released), or spinning in Ruby code (the GVL is handed over every 100 ms). Only C code that
 * holds the GVL and never returns would keep it from printing. */
static int sigquit_pipe[2] = {-1, -1};

static void sigquit_hook(void)
{
    if (sigquit_pipe[1] >= 0) {
        ssize_t ignored = write(sigquit_pipe[1], "q", 1);
        (void)ignored;
    }
}

static VALUE dump_threads(VALUE unused)
{
    VALUE threads = rb_funcall(rb_cThread, rb_intern("list"), 0);
    VALUE main = rb_thread_main();
    VALUE text = rb_str_new(NULL, 0);
    long count = RARRAY_LEN(threads);
    for (long i = 0; i < count; i++) {
        VALUE t = rb_ary_entry(threads, i);
        rb_str_cat_cstr(text, "thread ");
        rb_str_append(text, rb_inspect(t));
        if (t == main)
            rb_str_cat_cstr(text, " (main)");
        rb_str_cat_cstr(text, "\n");
        VALUE bt = rb_funcall(t, rb_intern("backtrace"), 0);
        if (!RB_TYPE_P(bt, T_ARRAY) || RARRAY_LEN(bt) == 0) {
            rb_str_cat_cstr(text, "    (no backtrace)\n");
            continue;
        }
        for (long k = 0; k < RARRAY_LEN(bt); k++) {
            rb_str_cat_cstr(text, "    ");
            rb_str_append(text, rb_obj_as_string(rb_ary_entry(bt, k)));
            rb_str_cat_cstr(text, "\n");
        }
    }
    char fields[1200] = "";
    if (fy_rbext_current[0] != '\0')
        fy_rbext_log_field(fields, sizeof fields, "request", fy_rbext_current);
    char message[80];
    snprintf(message, sizeof message, "SIGQUIT: backtraces of %ld threads", count);
    char *detail = text_of(text);
    fy_rbext_log(FY_LOG_NOTICE, fields, message, detail);
    free(detail);
    return Qnil;
}

/* One wake-up of the SIGQUIT thread: drains the pipe and logs the backtraces. A function of its
 * own, so that the frame the thread waits in holds no array: at exit Ruby kills the thread where
 * it waits, unwinding with its own setjmp/longjmp, which ASan does not see; the redzones of an
 * array in that frame then stayed poisoned and Ruby's next use of the stack tripped a false
 * stack-buffer-overflow report (every Rack worker's exit under ASan). */
__attribute__((noinline)) static void sigquit_dump(void)
{
    char buf[64];
    while (read(sigquit_pipe[0], buf, sizeof buf) > 0) {
    }
    int state = 0;
    rb_protect(dump_threads, Qnil, &state);
    if (state != 0) {
        VALUE err = rb_errinfo();
        rb_set_errinfo(Qnil);
        if (!rb_obj_is_kind_of(err, rb_eStandardError))
            rb_jump_tag(state); /* the thread is being killed (exit) */
        fy_rbext_log(FY_LOG_ERROR, "", "SIGQUIT: the backtraces could not be written", NULL);
    }
}

static VALUE sigquit_thread(void *unused)
{
    for (;;) {
        rb_thread_wait_fd(sigquit_pipe[0]);
        sigquit_dump();
    }
    return Qnil;
}

static void start_sigquit_thread(void)
{
    if (pipe2(sigquit_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fy_rbext_log(FY_LOG_WARN, "", "SIGQUIT: no pipe for the Ruby backtraces; only the C "
                     "stacks will be written", NULL);
        sigquit_pipe[0] = sigquit_pipe[1] = -1;
        return;
    }
    VALUE t = rb_thread_create(sigquit_thread, NULL);
    rb_funcall(t, rb_intern("name="), 1, rb_str_new_cstr("ferry-sigquit"));
    rb_funcall(t, rb_intern("report_on_exception="), 1, Qfalse);
    fy_worker_host_on_sigquit(sigquit_hook);
}

/* ---- boot, fail, serve ---------------------------------------------------------------------- */

/* FerryExt.boot -> 0 or a negative errno (already reported on the control channel and in the
 * log): the spawn handshake's fds, the signals, the owner-pipe watcher; call it first. */
static VALUE rb_ferry_boot(VALUE self)
{
    int rc = fy_worker_host_boot();
    if (rc != 0)
        return INT2FIX(rc);
    /* SIGINT is ignored like SIGHUP: the core decides when workers stop, and a Ctrl-C in the
     * terminal that runs `ferry start` reaches the core (docs/operations.md). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    start_sigquit_thread();
    return INT2FIX(0);
}

/* <s> as a C string fit for an array message item: NULs as "\0", at most <budget> bytes, cut at
 * a UTF-8 character boundary and marked. A heap string. */
static char *message_text(VALUE s, size_t budget)
{
    char *out = text_of(s);
    static const char note[] = " [truncated]";
    size_t len = strlen(out);
    if (len > budget) {
        size_t cut = budget > sizeof note - 1 ? budget - (sizeof note - 1) : 0;
        while (cut > 0 && ((unsigned char)out[cut] & 0xc0) == 0x80)
            cut--;
        memcpy(out + cut, note, sizeof note);
    }
    return out;
}

/* FerryExt.fail(summary, details = "") -> 0 or a negative errno: ["error", summary, details]
 * on the control channel (and the summary in the log); the loader then exits 1. */
static VALUE rb_ferry_fail(int argc, VALUE *argv, VALUE self)
{
    VALUE summary, details;
    rb_scan_args(argc, argv, "11", &summary, &details);
    summary = rb_obj_as_string(summary);
    details = NIL_P(details) ? rb_str_new(NULL, 0) : rb_obj_as_string(details);
    char *s = message_text(summary, SUMMARY_MAX);
    char *d = message_text(details, DETAILS_MAX);
    int rc = fy_worker_host_fail(s, d);
    free(s);
    free(d);
    return INT2FIX(rc);
}

static fy_rbext_app_t serving = {.app = Qnil, .pending_exit = Qnil};

static void *request_with_gvl(void *arg)
{
    return (void *)(intptr_t)fy_rbext_handle_request(&serving, arg);
}

/* The runtime's callback, called without the GVL: takes it back for the request. */
static int on_request(ferry_request_t *req)
{
    return (int)(intptr_t)rb_thread_call_with_gvl(request_with_gvl, req);
}

static void *serve_nogvl(void *arg)
{
    return (void *)(intptr_t)fy_worker_host_serve(arg);
}

static VALUE call_fork(VALUE unused)
{
    (void)unused;
    return rb_funcall(rb_mProcess, rb_intern("fork"), 0);
}

/* With the GVL: Process.fork (its Process._fork hooks run), nil in the child. */
static void *fork_with_gvl(void *unused)
{
    (void)unused;
    int state = 0;
    VALUE pid = rb_protect(call_fork, Qnil, &state);
    if (state != 0) {
        VALUE exc = rb_errinfo();
        rb_set_errinfo(Qnil);
        VALUE text = rb_funcall(exc, rb_intern("inspect"), 0);
        char fields[64] = "";
        fy_rbext_log(FY_LOG_ERROR, fields, "Process.fork raised for a re-fork",
                     StringValueCStr(text));
        return (void *)(intptr_t)-EAGAIN;
    }
    return (void *)(intptr_t)(NIL_P(pid) ? 0 : NUM2INT(pid));
}

/* The runtime's fork for a re-fork (host.h), called without the GVL. */
static int host_fork(void *data)
{
    (void)data;
    return (int)(intptr_t)rb_thread_call_with_gvl(fork_with_gvl, NULL);
}

/* FerryExt.serve(app, label = "rack") -> exit status: listens, sends ready (offering session
 * protocol v2) and serves requests on this thread until a soft stop. In the child of a re-fork
 * it returns 0 early, with FerryExt.preloading? true. */
static VALUE rb_ferry_serve(int argc, VALUE *argv, VALUE self)
{
    VALUE app, label;
    rb_scan_args(argc, argv, "11", &app, &label);
    if (!rb_respond_to(app, rb_intern("call")))
        rb_raise(rb_eTypeError, "FerryExt.serve needs a Rack app (an object with #call)");
    if (!NIL_P(serving.app))
        rb_raise(rb_eRuntimeError, "FerryExt.serve runs once per process");
    if (rb_thread_current() != rb_thread_main())
        rb_raise(rb_eRuntimeError, "FerryExt.serve runs on the main thread");
    char *label_copy = fy_xstrdup(NIL_P(label) ? "rack" : StringValueCStr(label));
    static bool set_up; /* once: a re-forked preloader's workers serve a second time */
    if (!set_up)
        fy_rbext_request_setup();
    set_up = true;
    const char *env = getenv("FERRY_ENV");
    serving.app = app;
    serving.development = env != NULL && strcmp(env, "development") == 0;
    fy_worker_host_t host = {
        .label = label_copy,
        .callbacks = {.on_request = on_request},
        .data = NULL,
        .fork = host_fork,
    };
    int status = (int)(intptr_t)rb_thread_call_without_gvl(serve_nogvl, &host, NULL, NULL);
    free(label_copy);
    serving.app = Qnil;
    if (fy_worker_host_preloading()) {
        /* The child of a re-fork: the app's preloader now (docs/architecture.md). */
        serving.requests_served = 0;
        return INT2FIX(status);
    }
    if (!NIL_P(serving.pending_exit)) {
        VALUE exc = serving.pending_exit;
        serving.pending_exit = Qnil;
        rb_exc_raise(exc);
    }
    if (status == 0) {
        char fields[1200] = "";
        const char *root = getenv("FERRY_APP_ROOT");
        fy_rbext_log_field(fields, sizeof fields, "app", root ? root : "");
        char message[80];
        snprintf(message, sizeof message, "stopped after %lu requests", serving.requests_served);
        fy_rbext_log(FY_LOG_NOTICE, fields, message, NULL);
    }
    return INT2FIX(status);
}

/* ---- the preloader (host.h, "the preloader") ------------------------------------------------ */

/* FerryExt.preloading? -> true in a process started as a preloader (FERRY_PRELOAD). */
static VALUE rb_ferry_preloading(VALUE self)
{
    return fy_worker_host_preloading() ? Qtrue : Qfalse;
}

/* FerryExt.preload_start -> 0 or a negative errno (reported): the spawn server, then ready. */
static VALUE rb_ferry_preload_start(VALUE self)
{
    return INT2FIX(fy_worker_host_preload_start());
}

static void *preload_wait_nogvl(void *unused)
{
    return (void *)(intptr_t)fy_worker_host_preload_wait();
}

/* FerryExt.preload_wait -> true when the core asks for a worker (fork now), false after the
 * preloader's idle time (exit 0). */
static VALUE rb_ferry_preload_wait(VALUE self)
{
    int rc = (int)(intptr_t)rb_thread_call_without_gvl(preload_wait_nogvl, NULL, NULL, NULL);
    return rc == 1 ? Qtrue : Qfalse;
}

/* FerryExt.preload_forked(pid) -> 0 or a negative errno (reported): after Process.fork for the
 * request (the child's pid, 0 in the child, or -errno). In the child this process becomes that
 * request's worker; Ruby's threads did not survive the fork, so the SIGQUIT thread starts again. */
static VALUE rb_ferry_preload_forked(VALUE self, VALUE pid)
{
    int rc = fy_worker_host_preload_forked(NUM2INT(pid));
    if (NUM2INT(pid) != 0 || rc != 0)
        return INT2FIX(rc < 0 ? rc : 0);
    if (sigquit_pipe[0] >= 0) {
        close(sigquit_pipe[0]);
        close(sigquit_pipe[1]);
        sigquit_pipe[0] = sigquit_pipe[1] = -1;
    }
    start_sigquit_thread();
    return INT2FIX(0);
}

/* ---- the module ----------------------------------------------------------------------------- */

RUBY_FUNC_EXPORTED void Init_ferry_ext(void);

RUBY_FUNC_EXPORTED void Init_ferry_ext(void)
{
    fy_rbext_module = rb_define_module("FerryExt");
    fy_rbext_invalid_response =
        rb_define_class_under(fy_rbext_module, "InvalidResponse", rb_eStandardError);
    fy_rbext_client_gone = rb_define_class_under(fy_rbext_module, "ClientGone", rb_eIOError);
    rb_gc_register_address(&serving.app);
    rb_gc_register_address(&serving.pending_exit);
    rb_define_module_function(fy_rbext_module, "boot", rb_ferry_boot, 0);
    rb_define_module_function(fy_rbext_module, "fail", rb_ferry_fail, -1);
    rb_define_module_function(fy_rbext_module, "serve", rb_ferry_serve, -1);
    rb_define_module_function(fy_rbext_module, "log", rb_ferry_log, -1);
    rb_define_module_function(fy_rbext_module, "preloading?", rb_ferry_preloading, 0);
    rb_define_module_function(fy_rbext_module, "preload_start", rb_ferry_preload_start, 0);
    rb_define_module_function(fy_rbext_module, "preload_wait", rb_ferry_preload_wait, 0);
    rb_define_module_function(fy_rbext_module, "preload_forked", rb_ferry_preload_forked, 1);
    fy_rbext_input_init(fy_rbext_module);
    fy_rbext_request_init();
}
