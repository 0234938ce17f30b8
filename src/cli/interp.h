/* Which interpreter runs a WSGI or Rack app's loader: one set of rules for `ferry start` (which
 * names its choice in the start line and `ferry status` and hands it to every worker in
 * FERRY_PYTHON / FERRY_RUBY) and `ferry worker` started by hand (docs/configuration.md,
 * "Interpreters"). In order, the first that applies:
 *
 *   wsgi: the configured --python; APP_DIR/.venv/bin/python; APP_DIR/venv/bin/python;
 *         python3 on PATH; /usr/bin/python3
 *   rack: the configured --ruby; ruby on PATH; /usr/bin/ruby
 *
 * A configured value with a '/' is a path (relative to the current directory), without one a
 * name looked up on PATH. Only executable regular files count (a symlink counts as what it
 * points to; the path kept is the one found, not its target, so a virtualenv's python still
 * finds its pyvenv.cfg). Reads the file system and PATH, nothing else; any thread. */
#ifndef FY_CLI_INTERP_H
#define FY_CLI_INTERP_H

#include <limits.h>
#include <stddef.h>

typedef struct fy_interp {
    char path[PATH_MAX];     /* the interpreter to exec */
    const char *source;      /* why it was chosen, for the log and status (static): "--python",
                              * "--ruby", "APP_DIR/.venv", "APP_DIR/venv", "PATH" or "default" */
} fy_interp_t;

/* Chooses the interpreter of an app of <type> ("wsgi" or "rack") in <app_root>, <configured>
 * being the --python / --ruby value (NULL or "" when not set). Returns 0 and fills <out>;
 * -ENOENT when the configured interpreter is not an executable file (or not on PATH), after
 * writing one line saying so into <err> (<err_len> bytes); -EINVAL for another <type>. The
 * last resorts (/usr/bin/python3, /usr/bin/ruby) are returned even when missing: the exec then
 * fails with a boot error naming them. */
int fy_interp_choose(const char *type, const char *app_root, const char *configured,
                     fy_interp_t *out, char *err, size_t err_len);

#endif
