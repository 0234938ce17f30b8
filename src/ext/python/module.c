/* The CPython extension module `_ferry`: the WSGI loader's way into the C worker runtime
 * (src/worker/host.h, docs/architecture.md "One worker runtime"). loaders/python/wsgi_loader.py
 * calls boot() first, loads the app, then fail() or serve(); everything from the socket to the
 * last byte of each response happens in C. See src/ext/python/README.md.
 *
 * Also the test-facing codec of session protocol v2 frames (encode_frame, decode_frame: thin
 * wrappers of src/proto/frame.h) and the runtime's log (log). */
#include "ext.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "proto/frame.h"
#include "worker/host.h"

PyObject *fy_pyext_client_gone;

/* What the boot error message may carry (the array message holds 65535 bytes, docs/protocol.md
 * §5): the summary is one line for an error page, the details a traceback. */
#define SUMMARY_MAX 4096
#define DETAILS_MAX 60000

/* ---- logging -------------------------------------------------------------------------------- */

/* <obj> as UTF-8 (str(obj), lone surrogates backslash-escaped), a new bytes object. */
static PyObject *utf8_of(PyObject *obj)
{
    PyObject *s = PyUnicode_Check(obj) ? (Py_INCREF(obj), obj) : PyObject_Str(obj);
    if (s == NULL)
        return NULL;
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
    Py_DECREF(s);
    return b;
}

static PyObject *format_exception_fn; /* traceback.format_exception */

char *fy_pyext_format_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return fy_xstrdup("(no exception was set)\n");
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    char *text = NULL;
    if (format_exception_fn == NULL) {
        PyObject *mod = PyImport_ImportModule("traceback");
        if (mod != NULL) {
            format_exception_fn = PyObject_GetAttrString(mod, "format_exception");
            Py_DECREF(mod);
        }
    }
    PyObject *lines = format_exception_fn == NULL ? NULL
                      : PyObject_CallFunctionObjArgs(format_exception_fn, type,
                                                     value ? value : Py_None,
                                                     tb ? tb : Py_None, NULL);
    PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
    PyObject *joined = empty ? PyUnicode_Join(empty, lines) : NULL;
    PyObject *bytes = joined ? utf8_of(joined) : NULL;
    if (bytes != NULL)
        text = fy_xstrdup(PyBytes_AsString(bytes));
    Py_XDECREF(bytes);
    Py_XDECREF(joined);
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    if (text == NULL) {
        PyErr_Clear();
        PyObject *b = value ? utf8_of(value) : NULL;
        text = fy_xasprintf("(the traceback could not be formatted) %s\n",
                            b ? PyBytes_AsString(b) : "?");
        Py_XDECREF(b);
        PyErr_Clear();
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return text;
}

/* log(level, message, *fields, detail=None): level "alert" .. "debug"; fields (key, value)
 * pairs shown as key=value after pid=; detail a traceback indented under the line. */
static PyObject *py_log(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t n = PyTuple_Size(args);
    if (n < 2) {
        PyErr_SetString(PyExc_TypeError, "log(level, message, *fields, detail=None)");
        return NULL;
    }
    PyObject *detail = kwargs ? PyDict_GetItemString(kwargs, "detail") : NULL; /* borrowed */
    if (kwargs != NULL && PyDict_Size(kwargs) > (detail ? 1 : 0)) {
        PyErr_SetString(PyExc_TypeError, "log() takes only the keyword argument detail");
        return NULL;
    }
    PyObject *level_b = utf8_of(PyTuple_GetItem(args, 0));
    PyObject *message_b = level_b ? utf8_of(PyTuple_GetItem(args, 1)) : NULL;
    PyObject *detail_b = message_b && detail && detail != Py_None ? utf8_of(detail) : NULL;
    PyObject *result = NULL;
    char fields[8192] = "";
    if (message_b == NULL || (detail && detail != Py_None && detail_b == NULL))
        goto out;
    fy_log_level_t level;
    if (fy_log_parse_level(PyBytes_AsString(level_b), &level) != 0) {
        PyErr_Format(PyExc_ValueError, "unknown log level %R (alert, error, warn, notice, info, "
                     "debug)", PyTuple_GetItem(args, 0));
        goto out;
    }
    for (Py_ssize_t i = 2; i < n; i++) {
        PyObject *pair = PyTuple_GetItem(args, i);
        PyObject *k = PySequence_GetItem(pair, 0);
        PyObject *v = k ? PySequence_GetItem(pair, 1) : NULL;
        PyObject *kb = v ? utf8_of(k) : NULL;
        PyObject *vb = kb ? utf8_of(v) : NULL;
        if (vb != NULL)
            fy_pyext_log_field(fields, sizeof fields, PyBytes_AsString(kb), PyBytes_AsString(vb));
        Py_XDECREF(k);
        Py_XDECREF(v);
        Py_XDECREF(kb);
        Py_XDECREF(vb);
        if (PyErr_Occurred())
            goto out;
    }
    fy_pyext_log(level, fields, PyBytes_AsString(message_b),
                 detail_b ? PyBytes_AsString(detail_b) : NULL);
    Py_INCREF(Py_None);
    result = Py_None;
out:
    Py_XDECREF(level_b);
    Py_XDECREF(message_b);
    Py_XDECREF(detail_b);
    return result;
}

/* ---- boot, fail, serve ---------------------------------------------------------------------- */

static PyObject *py_boot(PyObject *self, PyObject *unused)
{
    int rc = fy_worker_host_boot();
    if (rc != 0) {
        errno = -rc;
        PyErr_Format(PyExc_OSError, "the worker runtime did not boot: %s (reported on the "
                     "control channel)", strerror(-rc));
        return NULL;
    }
    /* SIGINT is ignored like SIGHUP: the core decides when workers stop, and a Ctrl-C in the
     * terminal that runs `ferry start` reaches the core (docs/operations.md). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    Py_RETURN_NONE;
}

/* <s> (str) as UTF-8 fit for an array message item: NULs escaped as "\0", at most <budget>
 * bytes, cut at a character boundary and marked. A heap string, or NULL with an exception. */
static char *message_text(PyObject *s, size_t budget)
{
    PyObject *b = utf8_of(s);
    if (b == NULL)
        return NULL;
    char *data;
    Py_ssize_t n;
    PyBytes_AsStringAndSize(b, &data, &n);
    char *out = fy_xmalloc((size_t)n * 2 + 1);
    size_t len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (data[i] == '\0') {
            out[len++] = '\\';
            out[len++] = '0';
        } else {
            out[len++] = data[i];
        }
    }
    out[len] = '\0';
    Py_DECREF(b);
    static const char note[] = "\n[... truncated]";
    if (len > budget) {
        size_t cut = budget > sizeof note - 1 ? budget - (sizeof note - 1) : 0;
        while (cut > 0 && ((unsigned char)out[cut] & 0xc0) == 0x80)
            cut--; /* not inside a UTF-8 sequence */
        memcpy(out + cut, note, sizeof note);
    }
    return out;
}

static PyObject *py_fail(PyObject *self, PyObject *args)
{
    PyObject *summary, *details = NULL;
    if (!PyArg_ParseTuple(args, "U|U:fail", &summary, &details))
        return NULL;
    char *s = message_text(summary, SUMMARY_MAX);
    char *d = s && details ? message_text(details, DETAILS_MAX) : NULL;
    if (s == NULL || (details != NULL && d == NULL)) {
        free(s);
        return NULL;
    }
    int rc = fy_worker_host_fail(s, d ? d : "");
    free(s);
    free(d);
    return PyLong_FromLong(rc);
}

static fy_pyext_app_t serving;
static PyThreadState *serve_tstate; /* the main thread's, while the runtime waits */

/* The runtime's callback: takes the GIL back for the request, releases it after. */
static int on_request(ferry_request_t *req)
{
    PyEval_RestoreThread(serve_tstate);
    int rc = fy_pyext_handle_request(&serving, req);
    serve_tstate = PyEval_SaveThread();
    return rc;
}

/* The runtime's fork for a re-fork (host.h): Python's own, as os.fork() does it, so that
 * os.register_at_fork hooks run in the parent and in the child. */
static int host_fork(void *data)
{
    (void)data;
    PyEval_RestoreThread(serve_tstate);
    PyOS_BeforeFork();
    pid_t pid = fork();
    int err = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    serve_tstate = PyEval_SaveThread();
    return pid < 0 ? -err : (int)pid;
}

/* serve(application, label=None) -> exit status: listens, sends ready (offering session
 * protocol v2) and serves requests on this thread until a soft stop. In the child of a re-fork
 * it returns 0 early, with preloading() true (docs/architecture.md, "Re-forking"). */
static PyObject *py_serve(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"application", "label", NULL};
    PyObject *application;
    const char *label = "wsgi";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s:serve", kwlist, &application, &label))
        return NULL;
    if (!PyCallable_Check(application)) {
        PyErr_SetString(PyExc_TypeError, "serve() needs a callable WSGI application");
        return NULL;
    }
    if (serving.application != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "serve() runs once per process");
        return NULL;
    }
    /* Imported now, not at the first failure: an import in the middle of a request may find
     * the app's sys.path or a broken traceback module. */
    if (format_exception_fn == NULL) {
        PyObject *mod = PyImport_ImportModule("traceback");
        if (mod == NULL)
            return NULL;
        format_exception_fn = PyObject_GetAttrString(mod, "format_exception");
        Py_DECREF(mod);
        if (format_exception_fn == NULL)
            return NULL;
    }
    const char *env = getenv("FERRY_ENV");
    Py_INCREF(application);
    serving.application = application;
    serving.development = env != NULL && strcmp(env, "development") == 0;
    char *label_copy = fy_xstrdup(label);
    fy_worker_host_t host = {
        .label = label_copy,
        .callbacks = {.on_request = on_request},
        .data = NULL,
        .fork = host_fork,
    };
    serve_tstate = PyEval_SaveThread();
    int status = fy_worker_host_serve(&host);
    PyEval_RestoreThread(serve_tstate);
    serve_tstate = NULL;
    free(label_copy);
    Py_CLEAR(serving.application);
    if (fy_worker_host_preloading()) {
        serving.requests_served = 0; /* the new preloader's workers count their own */
        return PyLong_FromLong(status);
    }
    if (status == 0) {
        char fields[1024] = "";
        const char *root = getenv("FERRY_APP_ROOT");
        fy_pyext_log_field(fields, sizeof fields, "app", root ? root : "");
        char *message = fy_xasprintf("stopped after %lu requests", serving.requests_served);
        fy_pyext_log(FY_LOG_NOTICE, fields, message, NULL);
        free(message);
    }
    return PyLong_FromLong(status);
}

/* ---- the preloader (host.h, "the preloader") ------------------------------------------------ */

static PyObject *py_preloading(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(fy_worker_host_preloading());
}

static PyObject *raise_errno(int rc, const char *what)
{
    errno = -rc;
    PyErr_Format(PyExc_OSError, "%s: %s (reported on the control channel)", what, strerror(-rc));
    return NULL;
}

static PyObject *py_preload_start(PyObject *self, PyObject *unused)
{
    int rc = fy_worker_host_preload_start();
    if (rc != 0)
        return raise_errno(rc, "the preloader did not start");
    Py_RETURN_NONE;
}

static PyObject *py_preload_wait(PyObject *self, PyObject *unused)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fy_worker_host_preload_wait();
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(rc == 1);
}

static PyObject *py_preload_forked(PyObject *self, PyObject *args)
{
    int pid;
    if (!PyArg_ParseTuple(args, "i:preload_forked", &pid))
        return NULL;
    int rc = fy_worker_host_preload_forked(pid);
    if (rc < 0)
        return raise_errno(rc, "the forked worker could not be set up");
    Py_RETURN_NONE;
}

/* ---- the frame codec, for tests ------------------------------------------------------------- */

static PyObject *py_encode_frame(PyObject *self, PyObject *args)
{
    unsigned int type, flags;
    unsigned long id;
    const char *payload = "";
    Py_ssize_t len = 0;
    if (!PyArg_ParseTuple(args, "IIk|y#:encode_frame", &type, &flags, &id, &payload, &len))
        return NULL;
    if (type > 0xff || (!fy_frame_type_valid((uint8_t)type, FY_FRAME_TO_WORKER) &&
                        !fy_frame_type_valid((uint8_t)type, FY_FRAME_TO_CORE))) {
        PyErr_Format(PyExc_ValueError, "EPROTO: unknown frame type 0x%x", type);
        return NULL;
    }
    unsigned allowed = type == FY_FRAME_END ? FY_FRAME_END_FLAGS : 0;
    if ((flags & ~allowed) != 0) {
        PyErr_Format(PyExc_ValueError, "EPROTO: flags 0x%x not allowed on %s", flags,
                     fy_frame_type_name((uint8_t)type));
        return NULL;
    }
    if (id > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "EPROTO: the id passes 32 bits");
        return NULL;
    }
    if ((size_t)len > fy_frame_max_payload((uint8_t)type)) {
        PyErr_Format(PyExc_ValueError, "EMSGSIZE: %zd payload bytes pass %u for %s", len,
                     fy_frame_max_payload((uint8_t)type), fy_frame_type_name((uint8_t)type));
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, FY_FRAME_HEADER_LEN + len);
    if (out == NULL)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AsString(out);
    fy_frame_encode_header(p, (uint8_t)type, (uint8_t)flags, (uint32_t)id, (uint32_t)len);
    if (len > 0)
        memcpy(p + FY_FRAME_HEADER_LEN, payload, (size_t)len);
    return out;
}

static PyObject *py_decode_frame(PyObject *self, PyObject *args)
{
    const char *buf;
    Py_ssize_t len;
    int dir;
    if (!PyArg_ParseTuple(args, "y#i:decode_frame", &buf, &len, &dir))
        return NULL;
    if (dir != FY_FRAME_TO_WORKER && dir != FY_FRAME_TO_CORE) {
        PyErr_SetString(PyExc_ValueError, "direction must be TO_WORKER or TO_CORE");
        return NULL;
    }
    fy_frame_t f;
    size_t consumed;
    int rc = fy_frame_decode((const uint8_t *)buf, (size_t)len, (fy_frame_dir_t)dir, &f,
                             &consumed);
    if (rc == -EAGAIN)
        Py_RETURN_NONE;
    if (rc == -EPROTO || rc == -EMSGSIZE) {
        PyErr_SetString(PyExc_ValueError, rc == -EPROTO ? "EPROTO" : "EMSGSIZE");
        return NULL;
    }
    if (rc != 1) {
        PyErr_Format(PyExc_ValueError, "unexpected decoder result %d", rc);
        return NULL;
    }
    return Py_BuildValue("(IIky#n)", (unsigned)f.type, (unsigned)f.flags, (unsigned long)f.id,
                         (const char *)f.payload, (Py_ssize_t)f.len, (Py_ssize_t)consumed);
}

/* ---- the module ----------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"boot", py_boot, METH_NOARGS,
     "boot(): the spawn handshake's fds, signals, the owner-pipe watcher; call it first"},
    {"fail", py_fail, METH_VARARGS,
     "fail(summary, details=''): reports a boot error on the control channel; then exit 1"},
    {"serve", (PyCFunction)(void (*)(void))py_serve, METH_VARARGS | METH_KEYWORDS,
     "serve(application, label='wsgi') -> exit status: serves until a soft stop"},
    {"preloading", py_preloading, METH_NOARGS,
     "preloading() -> bool: this process was started as a preloader (FERRY_PRELOAD)"},
    {"preload_start", py_preload_start, METH_NOARGS,
     "preload_start(): starts the spawn server and sends ready (after the app loaded)"},
    {"preload_wait", py_preload_wait, METH_NOARGS,
     "preload_wait() -> bool: True when the core asks for a worker (fork now), False after "
     "the preloader's idle time (exit 0)"},
    {"preload_forked", py_preload_forked, METH_VARARGS,
     "preload_forked(pid): after os.fork() for the request (pid, 0 in the child, or -errno); "
     "in the child it becomes that request's worker"},
    {"log", (PyCFunction)(void (*)(void))py_log, METH_VARARGS | METH_KEYWORDS,
     "log(level, message, *fields, detail=None): one line in the worker's log"},
    {"encode_frame", py_encode_frame, METH_VARARGS,
     "encode_frame(type, flags, id, payload=b'') -> bytes: one v2 frame (for tests)"},
    {"decode_frame", py_decode_frame, METH_VARARGS,
     "decode_frame(buf, direction) -> (type, flags, id, payload, consumed), None when more "
     "bytes are needed; ValueError('EPROTO' or 'EMSGSIZE') (for tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ferry",
    .m_doc = "ferry's C worker runtime for WSGI applications (src/ext/python/README.md)",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__ferry(void);

PyMODINIT_FUNC PyInit__ferry(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    fy_pyext_client_gone = PyErr_NewException("_ferry.ClientGone", PyExc_Exception, NULL);
    if (fy_pyext_client_gone == NULL || fy_pyext_input_types_init(m) < 0 ||
        fy_pyext_request_types_init(m) < 0 || fy_pyext_request_init() < 0)
        goto fail;
    Py_INCREF(fy_pyext_client_gone);
    if (PyModule_AddObject(m, "ClientGone", fy_pyext_client_gone) < 0) {
        Py_DECREF(fy_pyext_client_gone);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "TO_WORKER", FY_FRAME_TO_WORKER) < 0 ||
        PyModule_AddIntConstant(m, "TO_CORE", FY_FRAME_TO_CORE) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_HELLO", FY_FRAME_HELLO) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_REQ", FY_FRAME_REQ) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_BODY", FY_FRAME_BODY) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_EOB", FY_FRAME_EOB) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_ABORT", FY_FRAME_ABORT) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_HEAD", FY_FRAME_HEAD) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_DATA", FY_FRAME_DATA) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_END", FY_FRAME_END) < 0 ||
        PyModule_AddIntConstant(m, "END_APP_FAILED", FY_FRAME_END_APP_FAILED) < 0 ||
        PyModule_AddIntConstant(m, "END_CLOSING", FY_FRAME_END_CLOSING) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_HEADER_LEN", FY_FRAME_HEADER_LEN) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
