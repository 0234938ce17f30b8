/* The loaders' and extension modules' directories (see paths.h). */
#include "cli/paths.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* PREFIX when <exe> is PREFIX/FERRY_INSTALL_BINDIR/<name> and PREFIX holds the installed
 * loaders; writes it into <prefix> and returns true. */
static bool installed_prefix(const char *exe, char *prefix, size_t cap)
{
    const char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return false;
    size_t dir_len = (size_t)(slash - exe);
    size_t bin_len = strlen(FERRY_INSTALL_BINDIR);
    if (dir_len < bin_len + 1 || exe[dir_len - bin_len - 1] != '/' ||
        strncmp(exe + dir_len - bin_len, FERRY_INSTALL_BINDIR, bin_len) != 0)
        return false;
    size_t prefix_len = dir_len - bin_len - 1;
    if (snprintf(prefix, cap, "%.*s", (int)prefix_len, exe) >= (int)cap)
        return false;
    char loaders[4096];
    if (snprintf(loaders, sizeof loaders, "%s/%s/ferry/loaders", prefix, FERRY_INSTALL_DATADIR) >=
        (int)sizeof loaders)
        return false;
    return is_dir(loaders);
}

int fy_paths_find(const char *exe, char *loaders, char *ext, size_t cap)
{
    char prefix[4096];
    bool installed = installed_prefix(exe, prefix, sizeof prefix);
    int rule;
    const char *env = getenv("FERRY_LOADERS_DIR");
    if (env != NULL && *env != '\0') {
        snprintf(loaders, cap, "%s", env);
        rule = 1;
    } else if (installed) {
        snprintf(loaders, cap, "%s/%s/ferry/loaders", prefix, FERRY_INSTALL_DATADIR);
        rule = 2;
    } else {
        snprintf(loaders, cap, "%s/loaders", FERRY_SOURCE_ROOT);
        rule = 3;
    }
    env = getenv("FERRY_EXT_DIR");
    if (env != NULL && *env != '\0')
        snprintf(ext, cap, "%s", env);
    else if (installed)
        snprintf(ext, cap, "%s/%s/ferry/ext", prefix, FERRY_INSTALL_LIBDIR);
    else
        snprintf(ext, cap, "%s", FERRY_EXT_DIR_DEFAULT);
    return rule;
}
