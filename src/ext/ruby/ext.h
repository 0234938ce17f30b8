/* Internals of the Ruby extension `ferry_ext` (src/ext/ruby/README.md): the Rack host of the C
 * worker runtime (src/worker/host.h). One interpreter per worker process, so the state is
 * file-level statics set up once by Init_ferry_ext. Every function here runs with the GVL held
 * unless it says otherwise; Ruby objects kept in statics are registered with the GC. */
#ifndef FY_EXT_RUBY_EXT_H
#define FY_EXT_RUBY_EXT_H

#include <ruby.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "worker/host.h"

/* ---- module (module.c) ---------------------------------------------------------------------- */

extern VALUE fy_rbext_module;           /* FerryExt */
extern VALUE fy_rbext_invalid_response; /* FerryExt::InvalidResponse < StandardError */
extern VALUE fy_rbext_client_gone;      /* FerryExt::ClientGone < IOError */

/* One "rack:" log line, and a field for it: the host runtime's (src/worker/host.h). Touch no
 * Ruby object: may run without the GVL. */
static inline void fy_rbext_log(int level, const char *fields, const char *message,
                                const char *detail)
{
    fy_worker_host_log(level, "rack", fields, message, detail);
}
#define fy_rbext_log_field fy_worker_host_log_field

/* What the current request's log lines carry as request="..." ("" when idle). */
extern char fy_rbext_current[1024];

/* ---- the SDK without the GVL (module.c) ----------------------------------------------------- */

/* The runtime is not thread-aware: the blocking SDK calls of one request (the response's
 * writes on the main thread, rack.input reads on any app thread) are serialised by one mutex,
 * taken without the GVL. Each returns the SDK's result. */
int fy_rbext_write(ferry_request_t *req, const char *data, size_t len);
int fy_rbext_end(ferry_request_t *req);
/* Reads until <len> bytes or the body's end (0 bytes more): returns the bytes read or a
 * negative FERRY_E*. */
ssize_t fy_rbext_read(ferry_request_t *req, char *buf, size_t len);
/* Sends the open file <fd> from its offset to its end (all without the GVL). FERRY_OK;
 * FERRY_EIO when the core stopped reading (or aborted); FERRY_ERROR with *read_errno when
 * reading the file failed. */
int fy_rbext_send_fd(ferry_request_t *req, int fd, int *read_errno);
/* Waits, with the GVL released, until no other thread is inside the SDK (an app thread still
 * reading rack.input when the request ends). */
void fy_rbext_sdk_quiesce(void);

/* ---- requests (request.c) ------------------------------------------------------------------- */

typedef struct fy_rbext_app {
    VALUE app;          /* the Rack app (registered with the GC) */
    bool development;   /* FERRY_ENV=development: backtraces in 500 bodies */
    unsigned long requests_served;
    /* An exception that must end the worker (SystemExit, SignalException), raised again once
     * fy_worker_host_serve returns; Qnil when none. Registered with the GC. */
    VALUE pending_exit;
} fy_rbext_app_t;

/* Builds the env keys and constants (Init time); reads Rack::VERSION and the reason phrases of
 * Rack::Utils::HTTP_STATUS_CODES (serve time, when Rack is loaded). */
void fy_rbext_request_init(void);
void fy_rbext_request_setup(void);

/* Serves one request (GVL held). Returns FERRY_OK for a complete response (or one the core
 * stopped reading), FERRY_ERROR when the app failed after the head was sent. Never lets a Ruby
 * exception escape. */
int fy_rbext_handle_request(fy_rbext_app_t *app, ferry_request_t *req);

/* The description of exception <exc> for logs and pages: "Class: message" in *first (heap) and
 * its backtrace, one line per entry, each ending in "\n", in *trace (heap, may be ""). Never
 * raises. */
void fy_rbext_describe(VALUE exc, char **first, char **trace);

/* ---- rack.input (input.c) ------------------------------------------------------------------- */

void fy_rbext_input_init(VALUE module);
/* A new FerryExt::Input over the body of <req>; it refers to <req> until fy_rbext_input_detach,
 * after which its methods raise IOError. */
VALUE fy_rbext_input_new(ferry_request_t *req);
void fy_rbext_input_detach(VALUE input);

#endif
