/* One WSGI request (PEP 3333) on the C worker runtime: the environ from the request variables,
 * start_response and write(), the iteration of the app's result, close(), HEAD, and the app's
 * errors (a 500 before the head, a cut response after it: docs/protocol.md §3, §4.3).
 *
 * The head is handed to the runtime (fy_worker_response_start_reason) only when it must go: with
 * the first non-empty body piece, at the first write() call, or after the iterable ended and its
 * close() ran. Until then start_response(..., exc_info) may still replace status and headers. */
#include "ext.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proto/httpdef.h"
#include "worker/host.h"

PyObject *fy_pyext_start_response_type;

/* The longest reason phrase the runtime takes (host.h, FY_WORKER_REASON_MAX). */
#define REASON_MAX 200

/* ---- the environ ------------------------------------------------------------------------------ */

/* The variable names most requests carry, interned once; any other name is decoded per request
 * (not interned: client header names must not grow the interpreter's intern table). */
static const char *const common_names[] = {
    "REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "HTTPS", "CONTENT_LENGTH",
    "CONTENT_TYPE", "HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION", "HTTP_COOKIE", "HTTP_REFERER", "HTTP_ORIGIN",
    "HTTP_CACHE_CONTROL", "HTTP_AUTHORIZATION", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
    "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_REQUEST_ID", "HTTP_UPGRADE",
    "HTTP_PRAGMA", "HTTP_DNT",
};
#define COMMON_COUNT (sizeof common_names / sizeof common_names[0])
static size_t common_lens[COMMON_COUNT];
static PyObject *common_keys[COMMON_COUNT];

static PyObject *key_script_name, *key_query_string, *key_https;
static PyObject *key_version, *key_url_scheme, *key_input, *key_errors, *key_multithread,
    *key_multiprocess, *key_run_once, *key_file_wrapper;
static PyObject *value_version, *value_http, *value_https, *value_empty;
static PyObject *str_close;

static PyObject *intern(const char *s)
{
    return PyUnicode_InternFromString(s);
}

int fy_pyext_request_init(void)
{
    for (size_t i = 0; i < COMMON_COUNT; i++) {
        common_lens[i] = strlen(common_names[i]);
        if ((common_keys[i] = intern(common_names[i])) == NULL)
            return -1;
    }
    key_script_name = intern("SCRIPT_NAME");
    key_query_string = intern("QUERY_STRING");
    key_https = intern("HTTPS");
    key_version = intern("wsgi.version");
    key_url_scheme = intern("wsgi.url_scheme");
    key_input = intern("wsgi.input");
    key_errors = intern("wsgi.errors");
    key_multithread = intern("wsgi.multithread");
    key_multiprocess = intern("wsgi.multiprocess");
    key_run_once = intern("wsgi.run_once");
    key_file_wrapper = intern("wsgi.file_wrapper");
    value_version = Py_BuildValue("(ii)", 1, 0);
    value_http = intern("http");
    value_https = intern("https");
    value_empty = PyUnicode_FromStringAndSize("", 0);
    str_close = intern("close");
    if (key_script_name == NULL || key_query_string == NULL || key_https == NULL ||
        key_version == NULL || key_url_scheme == NULL || key_input == NULL ||
        key_errors == NULL || key_multithread == NULL || key_multiprocess == NULL ||
        key_run_once == NULL || key_file_wrapper == NULL || value_version == NULL ||
        value_http == NULL || value_https == NULL || value_empty == NULL || str_close == NULL)
        return -1;
    return 0;
}

/* The environ key for the variable <name>: a new reference. */
static PyObject *key_for(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < COMMON_COUNT; i++) {
        if (common_lens[i] == len && memcmp(common_names[i], name, len) == 0) {
            Py_INCREF(common_keys[i]);
            return common_keys[i];
        }
    }
    return PyUnicode_DecodeLatin1(name, (Py_ssize_t)len, NULL);
}

static bool https_on(const char *v)
{
    return strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "true") == 0;
}

static int set_item(PyObject *dict, PyObject *key, PyObject *value)
{
    return value == NULL ? -1 : PyDict_SetItem(dict, key, value);
}

/* The PEP 3333 environ of <req>: every variable (the runtime already left the connect password
 * out) as a latin-1 str, the first of a repeated name winning; SCRIPT_NAME "" (also for "/"),
 * QUERY_STRING "" when absent; the wsgi.* keys. */
static PyObject *build_environ(ferry_request_t *req, PyObject *input)
{
    PyObject *env = PyDict_New();
    if (env == NULL)
        return NULL;
    bool https = false, https_seen = false;
    size_t count = ferry_request_var_count(req);
    for (size_t i = 0; i < count; i++) {
        const char *name, *value;
        if (ferry_request_var_at(req, i, &name, &value) != FERRY_OK)
            continue;
        PyObject *key = key_for(name);
        if (key == NULL)
            goto fail;
        int present = PyDict_Contains(env, key);
        if (present != 0) {
            Py_DECREF(key);
            if (present < 0)
                goto fail;
            continue;
        }
        if (key == key_https && !https_seen) {
            https_seen = true;
            https = https_on(value);
        }
        PyObject *v;
        if (*value == '\0' || (key == key_script_name && strcmp(value, "/") == 0)) {
            Py_INCREF(value_empty);
            v = value_empty;
        } else {
            v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)strlen(value), NULL);
        }
        int rc = set_item(env, key, v);
        Py_XDECREF(v);
        Py_DECREF(key);
        if (rc < 0)
            goto fail;
    }
    if ((PyDict_Contains(env, key_script_name) == 0 &&
         PyDict_SetItem(env, key_script_name, value_empty) < 0) ||
        (PyDict_Contains(env, key_query_string) == 0 &&
         PyDict_SetItem(env, key_query_string, value_empty) < 0))
        goto fail;
    if (PyErr_Occurred())
        goto fail;
    PyObject *errors = PySys_GetObject("stderr"); /* borrowed */
    if (PyDict_SetItem(env, key_version, value_version) < 0 ||
        PyDict_SetItem(env, key_url_scheme, https ? value_https : value_http) < 0 ||
        PyDict_SetItem(env, key_input, input) < 0 ||
        PyDict_SetItem(env, key_errors, errors ? errors : Py_None) < 0 ||
        PyDict_SetItem(env, key_multithread, Py_False) < 0 ||
        PyDict_SetItem(env, key_multiprocess, Py_True) < 0 ||
        PyDict_SetItem(env, key_run_once, Py_False) < 0 ||
        PyDict_SetItem(env, key_file_wrapper, fy_pyext_file_wrapper_type) < 0)
        goto fail;
    return env;
fail:
    Py_DECREF(env);
    return NULL;
}

/* ---- start_response and write() ------------------------------------------------------------- */

typedef struct start_response {
    PyObject_HEAD
    ferry_request_t *req; /* NULL once the request is over */
    bool is_head;         /* a HEAD request: no body byte goes out */
    bool status_set;      /* start_response was called */
    bool head_sent;       /* handed to the runtime: status and headers are final */
    bool gone;            /* a write failed: the core no longer reads this response */
    int status;
    char reason[REASON_MAX + 1];
    /* The headers, latin-1: "name\0value\0" each, <count> of them. */
    char *fields;
    size_t fields_len, fields_cap, count;
} start_response_t;

/* The type's name of <obj> as a new str (the limited API hides tp_name). */
static PyObject *type_name(PyObject *obj)
{
    PyObject *tp = PyObject_Type(obj);
    if (tp == NULL)
        return NULL;
    PyObject *name = PyObject_GetAttrString(tp, "__name__");
    Py_DECREF(tp);
    return name;
}

static void raise_with_type(PyObject *exc, const char *fmt, PyObject *obj)
{
    PyObject *name = type_name(obj);
    if (name != NULL) {
        PyErr_Format(exc, fmt, name);
        Py_DECREF(name);
    }
}

/* The code points of <s>, in a buffer reused from call to call (GIL held). Sets *len. */
static Py_UCS4 *ucs4_of(PyObject *s, Py_ssize_t *len)
{
    static Py_UCS4 *buf;
    static Py_ssize_t cap;
    Py_ssize_t n = PyUnicode_GetLength(s);
    if (n < 0)
        return NULL;
    if (n + 1 > cap) {
        Py_ssize_t want = cap ? cap : 256;
        while (want < n + 1)
            want *= 2;
        buf = fy_xrealloc(buf, (size_t)want * sizeof *buf);
        cap = want;
    }
    if (PyUnicode_AsUCS4(s, buf, cap, 1) == NULL)
        return NULL;
    *len = n;
    return buf;
}

/* What the WSGI loaders refuse in a header value or reason: C0 controls but tab, and DEL. */
static bool is_control(Py_UCS4 c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static void fields_append(start_response_t *sr, const Py_UCS4 *chars, Py_ssize_t n)
{
    if (sr->fields_len + (size_t)n + 1 > sr->fields_cap) {
        size_t cap = sr->fields_cap ? sr->fields_cap : 512;
        while (cap < sr->fields_len + (size_t)n + 1)
            cap *= 2;
        sr->fields = fy_xrealloc(sr->fields, cap);
        sr->fields_cap = cap;
    }
    char *p = sr->fields + sr->fields_len;
    for (Py_ssize_t i = 0; i < n; i++)
        p[i] = (char)(unsigned char)chars[i];
    p[n] = '\0';
    sr->fields_len += (size_t)n + 1;
}

/* Checks a WSGI status ("200 OK") and keeps its code and reason. Returns 0, or -1 with
 * TypeError/ValueError (the old loader's messages). */
static int take_status(start_response_t *sr, PyObject *status)
{
    if (!PyUnicode_CheckExact(status)) {
        raise_with_type(PyExc_TypeError, "WSGI status must be str, got %R", status);
        return -1;
    }
    Py_ssize_t n;
    Py_UCS4 *c = ucs4_of(status, &n);
    if (c == NULL)
        return -1;
    bool ok = n >= 4 && c[0] >= '1' && c[0] <= '9' && c[1] >= '0' && c[1] <= '9' &&
              c[2] >= '0' && c[2] <= '9' && c[3] == ' ';
    bool latin1 = true;
    for (Py_ssize_t i = 4; ok && i < n; i++) {
        if (is_control(c[i]))
            ok = false;
        else if (c[i] > 0xff)
            latin1 = false;
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError,
                     "invalid WSGI status %R (want three digits, a space and a reason)", status);
        return -1;
    }
    if (!latin1) {
        PyErr_Format(PyExc_ValueError,
                     "WSGI status %R is not Latin-1 (PEP 3333 wants latin-1 native strings)",
                     status);
        return -1;
    }
    if (n - 4 > REASON_MAX) {
        PyErr_Format(PyExc_ValueError, "WSGI status %R: the reason phrase passes %d characters",
                     status, REASON_MAX);
        return -1;
    }
    sr->status = (int)((c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0'));
    for (Py_ssize_t i = 4; i < n; i++)
        sr->reason[i - 4] = (char)(unsigned char)c[i];
    sr->reason[n - 4] = '\0';
    return 0;
}

/* Checks WSGI response headers (an exact list of exact (str, str) tuples, token names, latin-1
 * values without control characters but tab: no header injection) and keeps them. Returns 0, or
 * -1 with TypeError/ValueError (the old loader's messages). */
static int take_headers(start_response_t *sr, PyObject *headers)
{
    if (!PyList_CheckExact(headers)) {
        raise_with_type(PyExc_TypeError, "WSGI response headers must be a list, got %R", headers);
        return -1;
    }
    sr->fields_len = 0;
    sr->count = 0;
    for (Py_ssize_t i = 0; i < PyList_Size(headers); i++) {
        PyObject *item = PyList_GetItem(headers, i); /* borrowed */
        if (item == NULL)
            return -1;
        if (!PyTuple_CheckExact(item) || PyTuple_Size(item) != 2) {
            PyErr_Format(PyExc_TypeError, "WSGI response header %R is not a (name, value) tuple",
                         item);
            return -1;
        }
        PyObject *name = PyTuple_GetItem(item, 0), *value = PyTuple_GetItem(item, 1);
        if (!PyUnicode_CheckExact(name) || !PyUnicode_CheckExact(value)) {
            PyErr_Format(PyExc_TypeError, "WSGI response header %R: name and value must be str",
                         item);
            return -1;
        }
        Py_ssize_t n;
        Py_UCS4 *c = ucs4_of(name, &n);
        if (c == NULL)
            return -1;
        bool ok = n > 0;
        for (Py_ssize_t k = 0; ok && k < n; k++)
            ok = c[k] < 0x80 && fy_httpdef_is_tchar((unsigned char)c[k]);
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "invalid response header name %R", name);
            return -1;
        }
        fields_append(sr, c, n);
        if ((c = ucs4_of(value, &n)) == NULL)
            return -1;
        bool control = false, latin1 = true;
        for (Py_ssize_t k = 0; k < n; k++) {
            if (is_control(c[k]))
                control = true;
            else if (c[k] > 0xff)
                latin1 = false;
        }
        if (control) {
            PyErr_Format(PyExc_ValueError,
                         "response header %U has a control character in its value %R", name,
                         value);
            return -1;
        }
        if (!latin1) {
            PyErr_Format(PyExc_ValueError,
                         "response header %U is not Latin-1 (PEP 3333 wants latin-1 native "
                         "strings)",
                         name);
            return -1;
        }
        fields_append(sr, c, n);
        sr->count++;
    }
    return 0;
}

/* Hands status and headers to the runtime (nothing is written yet). Returns 0, or -1 with
 * ValueError (a head over 128 KiB). */
static int commit_head(start_response_t *sr)
{
    ferry_field_t stack_fields[32] = {{NULL, NULL}};
    ferry_field_t *fields = sr->count <= 32 ? stack_fields : fy_xcalloc(sr->count, sizeof *fields);
    const char *p = sr->fields;
    for (size_t i = 0; i < sr->count; i++) {
        fields[i].name = p;
        p += strlen(p) + 1;
        fields[i].value = p;
        p += strlen(p) + 1;
    }
    int rc = fy_worker_response_start_reason(sr->req, sr->status, sr->reason, fields, sr->count);
    if (fields != stack_fields)
        free(fields);
    if (rc == FERRY_ETOOBIG) {
        PyErr_SetString(PyExc_ValueError, "the response head passes 131072 bytes "
                                          "(docs/protocol.md §3)");
        return -1;
    }
    if (rc != FERRY_OK) {
        PyErr_Format(PyExc_ValueError, "the runtime refused the response head: %s",
                     ferry_strerror(rc));
        return -1;
    }
    sr->head_sent = true;
    return 0;
}

static PyObject *raise_gone(start_response_t *sr)
{
    sr->gone = true;
    PyErr_SetString(fy_pyext_client_gone, "the core closed the connection");
    return NULL;
}

/* Writes <len> bytes (the head first, when it has not gone), with the GIL released. <owner>
 * keeps <data> alive (a bytes object: immutable while the GIL is away). Returns 0 or -1. */
static int write_bytes(start_response_t *sr, const char *data, size_t len)
{
    if (sr->gone) {
        raise_gone(sr);
        return -1;
    }
    if (!sr->head_sent && commit_head(sr) < 0)
        return -1;
    if (sr->is_head)
        len = 0; /* the runtime drops HEAD bodies too; this saves it the copy */
    if (fy_pyext_sdk_enter() < 0)
        return -1;
    int rc;
    ferry_request_t *req = sr->req;
    Py_BEGIN_ALLOW_THREADS
    rc = ferry_response_write(req, data, len);
    Py_END_ALLOW_THREADS
    fy_pyext_sdk_leave();
    if (rc != FERRY_OK || fy_worker_request_aborted(req)) {
        raise_gone(sr);
        return -1;
    }
    return 0;
}

/* Sends one body piece (bytes, bytearray or memoryview). An empty piece sends nothing unless
 * <force_head> (write() sends the head at once). Returns 0 or -1 with an exception. */
static int send_piece(start_response_t *sr, PyObject *piece, bool force_head)
{
    PyObject *bytes;
    if (PyBytes_Check(piece)) {
        Py_INCREF(piece);
        bytes = piece;
    } else if (PyByteArray_Check(piece) || PyMemoryView_Check(piece)) {
        /* a copy: a mutable buffer could change size while the GIL is released */
        if ((bytes = PyBytes_FromObject(piece)) == NULL)
            return -1;
    } else {
        raise_with_type(PyExc_TypeError, "WSGI body pieces must be bytes, got %U", piece);
        return -1;
    }
    char *data;
    Py_ssize_t len;
    int rc = PyBytes_AsStringAndSize(bytes, &data, &len);
    if (rc == 0 && (len > 0 || force_head)) {
        if (!sr->status_set) {
            PyErr_SetString(PyExc_RuntimeError,
                            "the application sent a body before calling start_response");
            rc = -1;
        } else if (len > 0 || !sr->head_sent) {
            rc = write_bytes(sr, data, (size_t)len);
        }
    }
    Py_DECREF(bytes);
    return rc;
}

static int check_live(start_response_t *sr)
{
    if (sr->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_response or write() of a request that is over");
        return -1;
    }
    if (sr->gone) {
        raise_gone(sr);
        return -1;
    }
    return 0;
}

/* write(data), returned by start_response (PEP 3333 "The write() Callable"). */
static PyObject *write_callable(PyObject *self, PyObject *data)
{
    start_response_t *sr = (start_response_t *)self;
    if (check_live(sr) < 0)
        return NULL;
    if (!sr->status_set) {
        PyErr_SetString(PyExc_RuntimeError, "write() called before start_response");
        return NULL;
    }
    if (send_piece(sr, data, true) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef write_def = {"write", write_callable, METH_O,
                                "write(data): sends data now (the head first, if it has not gone)"};

/* start_response(status, headers, exc_info=None) -> write. */
static PyObject *start_response_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    start_response_t *sr = (start_response_t *)self;
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", kwlist, &status,
                                     &headers, &exc_info))
        return NULL;
    if (sr->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_response of a request that is over");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (sr->head_sent) {
            /* PEP 3333: too late to change the response, re-raise the app's error. */
            PyObject *value = PySequence_GetItem(exc_info, 1);
            PyObject *tb = value ? PySequence_GetItem(exc_info, 2) : NULL;
            if (value != NULL && tb != NULL) {
                if (tb != Py_None && PyException_SetTraceback(value, tb) < 0) {
                    /* error set */
                } else {
                    PyObject *tp = PyObject_Type(value);
                    PyErr_SetObject(tp, value);
                    Py_XDECREF(tp);
                }
            }
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
    } else if (sr->status_set) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called a second time without exc_info");
        return NULL;
    }
    if (take_status(sr, status) < 0 || take_headers(sr, headers) < 0) {
        if (!sr->status_set)
            sr->count = sr->fields_len = 0;
        return NULL;
    }
    sr->status_set = true;
    return PyCFunction_New(&write_def, self);
}

static void start_response_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    free(((start_response_t *)self)->fields);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot start_response_slots[] = {
    {Py_tp_dealloc, (void *)start_response_dealloc},
    {Py_tp_call, (void *)start_response_call},
    {Py_tp_doc, "start_response(status, headers, exc_info=None) -> write (PEP 3333)"},
    {0, NULL},
};

static PyType_Spec start_response_spec = {
    .name = "_ferry.StartResponse",
    .basicsize = sizeof(start_response_t),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = start_response_slots,
};

int fy_pyext_request_types_init(PyObject *module)
{
    (void)module;
    fy_pyext_start_response_type = PyType_FromSpec(&start_response_spec);
    return fy_pyext_start_response_type == NULL ? -1 : 0;
}

static start_response_t *start_response_new(ferry_request_t *req)
{
    PyTypeObject *tp = (PyTypeObject *)fy_pyext_start_response_type;
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    start_response_t *sr = (start_response_t *)alloc(tp, 0);
    if (sr != NULL) {
        sr->req = req;
        sr->is_head = strcmp(ferry_request_method(req), "HEAD") == 0;
    }
    return sr;
}

/* ---- running the app ------------------------------------------------------------------------ */

/* result.close() when it has one. Returns 0, or -1 with its exception set. */
static int call_close(PyObject *result)
{
    PyObject *close = PyObject_GetAttr(result, str_close);
    if (close == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    PyObject *r = PyObject_CallObject(close, NULL);
    Py_DECREF(close);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Iterates <result> and sends its pieces; for HEAD only until start_response was called (a
 * generator app calls it when first iterated). Returns 0 or -1 with an exception. */
static int send_result(start_response_t *sr, PyObject *result)
{
    if (sr->is_head && sr->status_set)
        return 0;
    PyObject *it = PyObject_GetIter(result);
    if (it == NULL)
        return -1;
    PyObject *piece;
    int rc = 0;
    while ((piece = PyIter_Next(it)) != NULL) {
        if (sr->is_head) {
            Py_DECREF(piece);
            if (sr->status_set)
                break;
            continue;
        }
        rc = send_piece(sr, piece, false);
        Py_DECREF(piece);
        if (rc < 0)
            break;
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : 0;
}

/* A 500 with <body> while the head has not gone (no body for HEAD: the runtime drops it). */
static void send_500(ferry_request_t *req, const char *body, size_t len)
{
    char length[24];
    snprintf(length, sizeof length, "%zu", len);
    ferry_field_t fields[] = {{"Content-Type", "text/plain; charset=utf-8"},
                              {"Content-Length", length}};
    if (ferry_response_start(req, 500, fields, 2) != FERRY_OK)
        return;
    if (fy_pyext_sdk_enter() < 0) {
        PyErr_Clear();
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    if (ferry_response_write(req, body, len) == FERRY_OK)
        ferry_response_end(req);
    Py_END_ALLOW_THREADS
    fy_pyext_sdk_leave();
}

static const char production_500[] = "Internal Server Error\n";

int fy_pyext_handle_request(fy_pyext_app_t *app, ferry_request_t *req)
{
    const char *method = ferry_request_method(req);
    const char *uri = ferry_request_uri(req);
    if (*uri == '\0')
        uri = ferry_request_path(req);
    char fields[1200] = "";
    fy_pyext_log_field(fields, sizeof fields, "method", method);
    fy_pyext_log_field(fields, sizeof fields, "uri", uri);

    /* The traceback of the app's failure (the first one), or NULL. */
    char *failure = NULL;
    bool gone = false;
    PyObject *result = NULL, *environ = NULL;
    PyObject *input = fy_pyext_input_new(req);
    start_response_t *sr = start_response_new(req);
    if (input != NULL && sr != NULL)
        environ = build_environ(req, input);
    if (environ != NULL)
        result = PyObject_CallFunctionObjArgs(app->application, environ, (PyObject *)sr, NULL);
    /* A list or tuple has no close(): nothing of the app's runs after its last piece. */
    if (result != NULL && (PyList_CheckExact(result) || PyTuple_CheckExact(result)))
        fy_worker_request_final_write_with_end(req);
    if (result == NULL || send_result(sr, result) < 0) {
        if (sr != NULL && sr->gone && PyErr_ExceptionMatches(fy_pyext_client_gone)) {
            PyErr_Clear();
            gone = true;
        } else {
            failure = fy_pyext_format_exception();
        }
    }
    if (result != NULL && call_close(result) < 0) {
        char *text = fy_pyext_format_exception();
        fy_pyext_log(FY_LOG_ERROR, fields, "result.close() raised", text);
        if (failure == NULL && !gone && !sr->head_sent)
            failure = text; /* nothing went out yet: the response becomes a 500 */
        else
            free(text);
    }
    if (failure == NULL && sr->gone)
        gone = true; /* the app caught ClientGone and returned */
    if (failure == NULL && !gone && !sr->head_sent) {
        /* The iterable ended (and was closed) before any body byte: the head goes now. */
        if (!sr->status_set)
            PyErr_SetString(PyExc_RuntimeError,
                            "the application returned without calling start_response");
        if (!sr->status_set || commit_head(sr) < 0)
            failure = fy_pyext_format_exception();
    }

    int rc = FERRY_OK;
    if (gone) {
        fy_pyext_log(FY_LOG_INFO, fields,
                     "the core closed the connection during the response", NULL);
    } else if (failure != NULL && sr != NULL && sr->head_sent) {
        fy_pyext_log(FY_LOG_ERROR, fields,
                     "exception in the application after the head was sent: closing the "
                     "connection",
                     failure);
        rc = FERRY_ERROR; /* the runtime ends it as APP_FAILED (v2) or cuts the connection (v1) */
    } else if (failure != NULL) {
        fy_pyext_log(FY_LOG_ERROR, fields, "exception in the application: answering 500",
                     failure);
        if (app->development) {
            char *body = fy_xasprintf("%s\n%s", production_500, failure);
            send_500(req, body, strlen(body));
            free(body);
        } else {
            send_500(req, production_500, sizeof production_500 - 1);
        }
    }
    free(failure);
    if (input != NULL)
        fy_pyext_input_detach(input);
    if (sr != NULL)
        sr->req = NULL;
    Py_XDECREF(result);
    Py_XDECREF(environ);
    Py_XDECREF(input);
    Py_XDECREF((PyObject *)sr);
    app->requests_served++;
    return rc;
}
