/* App-type detection: which loader serves the app in a directory. One set of rules for
 * `ferry start` (to tell the pool and `ferry status` the type) and `ferry worker` (to pick the
 * loader and, for a native app, the .so), as docs/configuration.md describes them. The first
 * rule that matches wins:
 *
 *   config.ru                                              -> rack
 *   passenger_wsgi.py, else wsgi.py, else app.py           -> wsgi
 *   a *.so: app.so, else the alphabetically first (bytes)  -> c
 *
 * Only regular files count (a symlink counts as what it points to): a directory named
 * config.ru is not an app. Reads the directory, nothing else; any thread. */
#ifndef FY_CLI_APPTYPE_H
#define FY_CLI_APPTYPE_H

#include <stdbool.h>

/* What the rules look for, as error messages list it. */
#define FY_APPTYPE_LOOKED_FOR                                                                  \
    "config.ru (rack), passenger_wsgi.py, wsgi.py or app.py (wsgi), and a *.so file (c)"

/* The type of the app in <dir>: "rack", "wsgi" or "c" (static strings), or NULL when no rule
 * matches or <dir> cannot be read. */
const char *fy_apptype_detect(const char *dir);

/* The native app's shared object in <dir>: "<dir>/app.so" when that is a regular file, else the
 * regular file ending in ".so" whose name sorts first (strcmp). Returns a heap string the caller
 * frees, or NULL when there is none or <dir> cannot be read. */
char *fy_apptype_shared_object(const char *dir);

/* The file the loader of <type> loads from <dir> by the rules above: <dir>/config.ru (rack),
 * the first WSGI entry file (wsgi), the shared object (c). A heap string the caller frees, or
 * NULL when there is none. */
char *fy_apptype_startup_file(const char *dir, const char *type);

/* The type a startup file (--startup-file) names by its suffix: "rack" for *.ru, "wsgi" for
 * *.py, NULL for anything else (the caller then needs --app-type). Looks at the name only. */
const char *fy_apptype_of_startup_file(const char *file);

/* Whether <spec> has the form of a WSGI entry point (--app, gunicorn's form): MODULE,
 * MODULE:NAME or MODULE:NAME(ARGS), where MODULE and NAME are dotted Python identifiers
 * (ASCII) and ARGS anything up to the final ')' (the loader evaluates it as Python literals). */
bool fy_apptype_wsgi_app_valid(const char *spec);

/* True for the types a worker can run: "rack", "wsgi" and "c" ("auto" is not one). */
bool fy_apptype_is_known(const char *type);

#endif
