/* Internals of the CPython extension module `_ferry` (src/ext/python/README.md): the WSGI host
 * of the C worker runtime (src/worker/host.h). One interpreter per worker process, so the
 * module's state is file-level statics set up once by PyInit__ferry; every function here runs
 * with the GIL held unless it says otherwise.
 *
 * Built against the stable ABI of CPython 3.9 (Py_LIMITED_API=0x03090000, the meson.build next
 * to this file): one abi3 build serves every interpreter from 3.9 on. */
#ifndef FY_EXT_PYTHON_EXT_H
#define FY_EXT_PYTHON_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"
#include "worker/host.h"

/* ---- module state (module.c) --------------------------------------------------------------- */

/* The types, created by fy_pyext_types_init from their specs (PyType_FromSpec). */
extern PyObject *fy_pyext_input_type;        /* wsgi.input */
extern PyObject *fy_pyext_file_wrapper_type; /* wsgi.file_wrapper */
extern PyObject *fy_pyext_start_response_type;
/* _ferry.ClientGone: the core closed the connection while the response was being written. */
extern PyObject *fy_pyext_client_gone;

/* Creates the module's types; 0, or -1 with an exception set. */
int fy_pyext_input_types_init(PyObject *module);
int fy_pyext_request_types_init(PyObject *module);

/* One "wsgi:" log line, and a field for it: the host runtime's (src/worker/host.h). Touch no
 * Python object: may run without the GIL. */
static inline void fy_pyext_log(int level, const char *fields, const char *message,
                                const char *detail)
{
    fy_worker_host_log(level, "wsgi", fields, message, detail);
}
#define fy_pyext_log_field fy_worker_host_log_field

/* The text of the current exception with its traceback (traceback.format_exception), as a new
 * UTF-8 C string the caller frees; clears the exception. Never NULL (a fallback on failure). */
char *fy_pyext_format_exception(void);

/* ---- requests (request.c) ------------------------------------------------------------------- */

/* What fy_pyext_serve set up for on_request. */
typedef struct fy_pyext_app {
    PyObject *application; /* the WSGI callable (strong) */
    bool development;      /* FERRY_ENV=development: tracebacks in 500 bodies */
    unsigned long requests_served;
} fy_pyext_app_t;

/* Builds the interned environ keys and constants; 0, or -1 with an exception set. */
int fy_pyext_request_init(void);

/* Serves one request with <app> (GIL held). Returns FERRY_OK for a complete response (or one
 * the core stopped reading), FERRY_ERROR when the app failed after the head was sent. */
int fy_pyext_handle_request(fy_pyext_app_t *app, ferry_request_t *req);

/* ---- wsgi.input (input.c) ------------------------------------------------------------------- */

/* A new wsgi.input over the body of <req>, or NULL with an exception set. The object refers to
 * <req> until fy_pyext_input_detach; after that its methods raise ValueError. */
PyObject *fy_pyext_input_new(ferry_request_t *req);
void fy_pyext_input_detach(PyObject *input);

/* Serialises the blocking SDK calls of one request: the GIL is released around each, so another
 * Python thread of the app could otherwise enter the SDK for the same request at the same time.
 * fy_pyext_sdk_enter returns 0, or -1 with RuntimeError set when a call is already running. */
extern bool fy_pyext_sdk_busy;
int fy_pyext_sdk_enter(void);
void fy_pyext_sdk_leave(void);

#endif
