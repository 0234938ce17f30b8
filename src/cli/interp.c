/* The interpreter of a WSGI or Rack app (see interp.h). */
#include "cli/interp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static bool set_path(fy_interp_t *out, const char *path, const char *source)
{
    if (snprintf(out->path, sizeof out->path, "%s", path) >= (int)sizeof out->path)
        return false;
    out->source = source;
    return true;
}

/* Looks <name> up in the directories of $PATH (an empty entry is the current directory, as
 * execvp has it). Returns true and fills out->path. */
static bool find_on_path(const char *name, fy_interp_t *out, const char *source)
{
    const char *p = getenv("PATH");
    if (p == NULL)
        return false;
    while (true) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char candidate[PATH_MAX];
        int n = len == 0 ? snprintf(candidate, sizeof candidate, "./%s", name)
                         : snprintf(candidate, sizeof candidate, "%.*s/%s", (int)len, p, name);
        if (n < (int)sizeof candidate && is_executable_file(candidate) &&
            set_path(out, candidate, source))
            return true;
        if (end == NULL)
            return false;
        p = end + 1;
    }
}

int fy_interp_choose(const char *type, const char *app_root, const char *configured,
                     fy_interp_t *out, char *err, size_t err_len)
{
    bool wsgi = strcmp(type, "wsgi") == 0;
    if (!wsgi && strcmp(type, "rack") != 0)
        return -EINVAL;
    const char *flag = wsgi ? "--python" : "--ruby";
    if (configured != NULL && configured[0] != '\0') {
        bool found = strchr(configured, '/') != NULL
                         ? is_executable_file(configured) && set_path(out, configured, flag)
                         : find_on_path(configured, out, flag);
        if (found)
            return 0;
        snprintf(err, err_len, "%s %s: %s", flag, configured,
                 strchr(configured, '/') != NULL ? "not an executable file"
                                                 : "no executable of that name on PATH");
        return -ENOENT;
    }
    if (wsgi) {
        static const char *const venvs[][2] = {{".venv", "APP_DIR/.venv"},
                                               {"venv", "APP_DIR/venv"}};
        for (size_t i = 0; i < 2; i++) {
            char candidate[PATH_MAX];
            int n = snprintf(candidate, sizeof candidate, "%s/%s/bin/python", app_root,
                             venvs[i][0]);
            if (n < (int)sizeof candidate && is_executable_file(candidate) &&
                set_path(out, candidate, venvs[i][1]))
                return 0;
        }
    }
    if (find_on_path(wsgi ? "python3" : "ruby", out, "PATH"))
        return 0;
    set_path(out, wsgi ? "/usr/bin/python3" : "/usr/bin/ruby", "default");
    return 0;
}
