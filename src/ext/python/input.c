/* wsgi.input (PEP 3333 "Input and Error Streams") over ferry_request_read, and
 * wsgi.file_wrapper. The body is read lazily, when the app asks, and never past CONTENT_LENGTH;
 * what readline() reads beyond a line stays in a small buffer for the next call. A body that the
 * core cut short ends early (the runtime logs it, docs/protocol.md §4.3); a read that waits
 * longer than the body read timeout raises TimeoutError in the app. */
#include "ext.h"

#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

PyObject *fy_pyext_input_type;
PyObject *fy_pyext_file_wrapper_type;

/* One read from the runtime asks for at most this much (the old loader's recv size). */
#define IO_CHUNK 65536
/* read() without a size grows its buffer from this, not from CONTENT_LENGTH: a client's claimed
 * length is no reason to allocate before the bytes are there. */
#define READ_ALL_START (1u << 20)

bool fy_pyext_sdk_busy;

int fy_pyext_sdk_enter(void)
{
    if (fy_pyext_sdk_busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another thread is reading the request body or writing the response");
        return -1;
    }
    fy_pyext_sdk_busy = true;
    return 0;
}

void fy_pyext_sdk_leave(void)
{
    fy_pyext_sdk_busy = false;
}

typedef struct input {
    PyObject_HEAD
    ferry_request_t *req; /* NULL once the request is over */
    uint64_t left;        /* body bytes the runtime still holds for us */
    char *buf;            /* read from the runtime, not yet handed to the app: buf[start, end) */
    size_t start, end, cap;
} input_t;

PyObject *fy_pyext_input_new(ferry_request_t *req)
{
    PyTypeObject *tp = (PyTypeObject *)fy_pyext_input_type;
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    input_t *in = (input_t *)alloc(tp, 0);
    if (in == NULL)
        return NULL;
    in->req = req;
    in->left = ferry_request_content_length(req);
    return (PyObject *)in;
}

void fy_pyext_input_detach(PyObject *obj)
{
    input_t *in = (input_t *)obj;
    in->req = NULL;
    in->left = 0;
    free(in->buf);
    in->buf = NULL;
    in->start = in->end = in->cap = 0;
}

static void input_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    free(((input_t *)self)->buf);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static int check_open(input_t *in)
{
    if (in->req == NULL) {
        PyErr_SetString(PyExc_ValueError, "wsgi.input of a request that is over");
        return -1;
    }
    return 0;
}

/* Reads up to <want> body bytes into <dst>, with the GIL released. Returns the count, 0 at the
 * end of the body (also when the core cut it short: the runtime logged that), or -1 with an
 * exception set (TimeoutError when no byte came within the body read timeout). */
static Py_ssize_t body_read(input_t *in, char *dst, size_t want)
{
    if (want > in->left)
        want = (size_t)in->left;
    if (want == 0)
        return 0;
    if (fy_pyext_sdk_enter() < 0)
        return -1;
    ssize_t n;
    ferry_request_t *req = in->req;
    Py_BEGIN_ALLOW_THREADS
    n = ferry_request_read(req, dst, want);
    Py_END_ALLOW_THREADS
    fy_pyext_sdk_leave();
    if (n > 0) {
        in->left -= (uint64_t)n;
        return n;
    }
    if (n == FERRY_ETIMEDOUT) {
        PyObject *exc = PyObject_CallFunction(PyExc_TimeoutError, "is", ETIMEDOUT,
                                              "request body read timed out");
        if (exc != NULL) {
            PyErr_SetObject(PyExc_TimeoutError, exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    /* 0 before CONTENT_LENGTH, or FERRY_EIO: the body was cut short; what came is all. */
    in->left = 0;
    return 0;
}

/* Makes room for <more> bytes after buf[end). */
static void buf_reserve(input_t *in, size_t more)
{
    if (in->start > 0 && in->start == in->end)
        in->start = in->end = 0;
    if (in->cap - in->end >= more)
        return;
    if (in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->start = 0;
        if (in->cap - in->end >= more)
            return;
    }
    size_t cap = in->cap ? in->cap : IO_CHUNK;
    while (cap - in->end < more)
        cap *= 2;
    in->buf = fy_xrealloc(in->buf, cap);
    in->cap = cap;
}

/* Reads one more piece (at most IO_CHUNK) into the buffer. Returns its size, 0 at the end, -1
 * with an exception. */
static Py_ssize_t fill(input_t *in)
{
    size_t want = in->left < IO_CHUNK ? (size_t)in->left : IO_CHUNK;
    if (want == 0)
        return 0;
    buf_reserve(in, want);
    Py_ssize_t n = body_read(in, in->buf + in->end, want);
    if (n > 0)
        in->end += (size_t)n;
    return n;
}

/* Hands out buf[start, start + n) as bytes. */
static PyObject *take(input_t *in, size_t n)
{
    PyObject *out = PyBytes_FromStringAndSize(in->buf ? in->buf + in->start : "", (Py_ssize_t)n);
    if (out != NULL)
        in->start += n;
    return out;
}

/* size=None or a negative size means "all"; anything else must be an int. */
static int size_arg(PyObject *arg, Py_ssize_t *size)
{
    *size = -1;
    if (arg == NULL || arg == Py_None)
        return 0;
    Py_ssize_t v = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *size = v;
    return 0;
}

static PyObject *read_all(input_t *in)
{
    size_t have = in->end - in->start;
    size_t cap = have + (in->left < READ_ALL_START ? (size_t)in->left : READ_ALL_START);
    char *data = fy_xmalloc(cap ? cap : 1);
    if (have > 0)
        memcpy(data, in->buf + in->start, have);
    in->start = in->end = 0;
    size_t len = have;
    while (in->left > 0) {
        if (len == cap) {
            size_t grow = in->left < cap ? (size_t)in->left : cap;
            cap += grow;
            data = fy_xrealloc(data, cap);
        }
        Py_ssize_t n = body_read(in, data + len, cap - len);
        if (n < 0) {
            free(data);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    PyObject *out = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    free(data);
    return out;
}

static PyObject *input_read(PyObject *self, PyObject *args)
{
    input_t *in = (input_t *)self;
    PyObject *arg = NULL;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "|O:read", &arg) || size_arg(arg, &size) < 0 ||
        check_open(in) < 0)
        return NULL;
    if (size < 0)
        return read_all(in);
    size_t have = in->end - in->start;
    if (have >= (size_t)size)
        return take(in, (size_t)size);
    /* Straight into the result: what is buffered, then reads until <size> or the end. */
    uint64_t most = have + in->left;
    size_t want = most < (uint64_t)size ? (size_t)most : (size_t)size;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want);
    if (out == NULL)
        return NULL;
    char *dst = PyBytes_AsString(out);
    if (have > 0)
        memcpy(dst, in->buf + in->start, have);
    in->start = in->end = 0;
    size_t len = have;
    while (len < want) {
        Py_ssize_t n = body_read(in, dst + len, want - len);
        if (n < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len < want) { /* cut short: a shorter copy */
        PyObject *shorter = PyBytes_FromStringAndSize(dst, (Py_ssize_t)len);
        Py_DECREF(out);
        out = shorter;
    }
    return out;
}

/* One line (with its "\n"), at most <size> bytes when size >= 0; b"" at the end. */
static PyObject *readline_impl(input_t *in, Py_ssize_t size)
{
    size_t scanned = 0;
    for (;;) {
        size_t have = in->end - in->start;
        const char *nl = have > scanned
                             ? memchr(in->buf + in->start + scanned, '\n', have - scanned)
                             : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - (in->buf + in->start)) + 1;
            return take(in, size >= 0 && (size_t)size < n ? (size_t)size : n);
        }
        if ((size >= 0 && have >= (size_t)size) || in->left == 0)
            return take(in, size >= 0 && (size_t)size < have ? (size_t)size : have);
        scanned = have;
        Py_ssize_t got = fill(in);
        if (got < 0)
            return NULL;
        if (got == 0) {
            have = in->end - in->start;
            return take(in, size >= 0 && (size_t)size < have ? (size_t)size : have);
        }
    }
}

static PyObject *input_readline(PyObject *self, PyObject *args)
{
    input_t *in = (input_t *)self;
    PyObject *arg = NULL;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "|O:readline", &arg) || size_arg(arg, &size) < 0 ||
        check_open(in) < 0)
        return NULL;
    return readline_impl(in, size);
}

static PyObject *input_readlines(PyObject *self, PyObject *args)
{
    input_t *in = (input_t *)self;
    PyObject *arg = NULL;
    Py_ssize_t hint;
    if (!PyArg_ParseTuple(args, "|O:readlines", &arg) || size_arg(arg, &hint) < 0 ||
        check_open(in) < 0)
        return NULL;
    PyObject *lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    Py_ssize_t total = 0;
    for (;;) {
        PyObject *line = readline_impl(in, -1);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        Py_ssize_t n = PyBytes_Size(line);
        if (n == 0) {
            Py_DECREF(line);
            return lines;
        }
        int rc = PyList_Append(lines, line);
        Py_DECREF(line);
        if (rc < 0) {
            Py_DECREF(lines);
            return NULL;
        }
        total += n;
        if (hint > 0 && total >= hint)
            return lines;
    }
}

static PyObject *input_iter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *input_next(PyObject *self)
{
    input_t *in = (input_t *)self;
    if (check_open(in) < 0)
        return NULL;
    PyObject *line = readline_impl(in, -1);
    if (line != NULL && PyBytes_Size(line) == 0) {
        Py_DECREF(line);
        return NULL; /* StopIteration */
    }
    return line;
}

static PyMethodDef input_methods[] = {
    {"read", input_read, METH_VARARGS, "read(size=-1) -> bytes: up to <size> body bytes, all "
                                       "that is left when size is -1 or None; b'' at the end"},
    {"readline", input_readline, METH_VARARGS,
     "readline(size=-1) -> bytes: one line with its newline, at most <size> bytes"},
    {"readlines", input_readlines, METH_VARARGS,
     "readlines(hint=-1) -> list: the remaining lines, stopping once <hint> bytes were read"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot input_slots[] = {
    {Py_tp_dealloc, (void *)input_dealloc},
    {Py_tp_iter, (void *)input_iter},
    {Py_tp_iternext, (void *)input_next},
    {Py_tp_methods, input_methods},
    {Py_tp_doc, "wsgi.input: the request body, read from the core as the app asks"},
    {0, NULL},
};

static PyType_Spec input_spec = {
    .name = "_ferry.Input",
    .basicsize = sizeof(input_t),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = input_slots,
};

/* ---- wsgi.file_wrapper ---------------------------------------------------------------------- */

typedef struct file_wrapper {
    PyObject_HEAD
    PyObject *filelike;
    PyObject *read; /* filelike.read, looked up once */
    Py_ssize_t block_size;
} file_wrapper_t;

static int file_wrapper_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    static char *kwlist[] = {"filelike", "block_size", NULL};
    PyObject *filelike;
    Py_ssize_t block_size = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:FileWrapper", kwlist, &filelike,
                                     &block_size))
        return -1;
    PyObject *read = PyObject_GetAttrString(filelike, "read");
    if (read == NULL)
        return -1;
    Py_INCREF(filelike);
    Py_XDECREF(fw->filelike);
    fw->filelike = filelike;
    Py_XDECREF(fw->read);
    fw->read = read;
    fw->block_size = block_size;
    return 0;
}

static int file_wrapper_traverse(PyObject *self, visitproc visit, void *arg)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(fw->filelike);
    Py_VISIT(fw->read);
    return 0;
}

static int file_wrapper_clear(PyObject *self)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    Py_CLEAR(fw->filelike);
    Py_CLEAR(fw->read);
    return 0;
}

static void file_wrapper_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    file_wrapper_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static PyObject *file_wrapper_iter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *file_wrapper_next(PyObject *self)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    if (fw->read == NULL)
        return NULL;
    PyObject *data = PyObject_CallFunction(fw->read, "n", fw->block_size);
    if (data == NULL)
        return NULL;
    int truth = PyObject_IsTrue(data);
    if (truth <= 0) {
        Py_DECREF(data);
        return NULL; /* StopIteration, or the error of __bool__ */
    }
    return data;
}

/* close() closes the file when it has a close (PEP 3333: the server calls it like any result's
 * close). */
static PyObject *file_wrapper_close(PyObject *self, PyObject *unused)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    if (fw->filelike == NULL)
        Py_RETURN_NONE;
    PyObject *close = PyObject_GetAttrString(fw->filelike, "close");
    if (close == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallObject(close, NULL);
    Py_DECREF(close);
    return r;
}

static PyMethodDef file_wrapper_methods[] = {
    {"close", file_wrapper_close, METH_NOARGS, "closes the file (when it has a close method)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef file_wrapper_members[] = {
    {"filelike", T_OBJECT, offsetof(file_wrapper_t, filelike), READONLY, "the wrapped file"},
    {"block_size", T_PYSSIZET, offsetof(file_wrapper_t, block_size), READONLY,
     "bytes per read"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot file_wrapper_slots[] = {
    {Py_tp_init, (void *)file_wrapper_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_traverse, (void *)file_wrapper_traverse},
    {Py_tp_clear, (void *)file_wrapper_clear},
    {Py_tp_dealloc, (void *)file_wrapper_dealloc},
    {Py_tp_iter, (void *)file_wrapper_iter},
    {Py_tp_iternext, (void *)file_wrapper_next},
    {Py_tp_methods, file_wrapper_methods},
    {Py_tp_members, file_wrapper_members},
    {Py_tp_doc, "wsgi.file_wrapper(filelike, block_size=8192): iterates filelike.read("
                "block_size) until it returns nothing; close() closes the file"},
    {0, NULL},
};

static PyType_Spec file_wrapper_spec = {
    .name = "_ferry.FileWrapper",
    .basicsize = sizeof(file_wrapper_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = file_wrapper_slots,
};

int fy_pyext_input_types_init(PyObject *module)
{
    fy_pyext_input_type = PyType_FromSpec(&input_spec);
    if (fy_pyext_input_type == NULL)
        return -1;
    fy_pyext_file_wrapper_type = PyType_FromSpec(&file_wrapper_spec);
    if (fy_pyext_file_wrapper_type == NULL)
        return -1;
    Py_INCREF(fy_pyext_input_type);
    if (PyModule_AddObject(module, "Input", fy_pyext_input_type) < 0) {
        Py_DECREF(fy_pyext_input_type);
        return -1;
    }
    Py_INCREF(fy_pyext_file_wrapper_type);
    if (PyModule_AddObject(module, "FileWrapper", fy_pyext_file_wrapper_type) < 0) {
        Py_DECREF(fy_pyext_file_wrapper_type);
        return -1;
    }
    return 0;
}
