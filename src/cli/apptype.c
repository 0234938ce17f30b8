/* App-type detection (see apptype.h). */
#include "cli/apptype.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"

static const char *const wsgi_files[] = {"passenger_wsgi.py", "wsgi.py", "app.py"};

static bool is_regular_file_in(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return false;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A name of the form "<something>.so". */
static bool has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

char *fy_apptype_shared_object(const char *dir)
{
    if (is_regular_file_in(dir, "app.so"))
        return fy_xasprintf("%s/app.so", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    char *first = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!has_so_suffix(e->d_name) || (first != NULL && strcmp(e->d_name, first) >= 0))
            continue;
        if (!is_regular_file_in(dir, e->d_name))
            continue;
        free(first);
        first = fy_xstrdup(e->d_name);
    }
    closedir(d);
    if (first == NULL)
        return NULL;
    char *path = fy_xasprintf("%s/%s", dir, first);
    free(first);
    return path;
}

const char *fy_apptype_detect(const char *dir)
{
    if (is_regular_file_in(dir, "config.ru"))
        return "rack";
    for (size_t i = 0; i < FY_ARRAY_SIZE(wsgi_files); i++) {
        if (is_regular_file_in(dir, wsgi_files[i]))
            return "wsgi";
    }
    char *so = fy_apptype_shared_object(dir);
    if (so != NULL) {
        free(so);
        return "c";
    }
    return NULL;
}

bool fy_apptype_is_known(const char *type)
{
    return type != NULL &&
           (strcmp(type, "rack") == 0 || strcmp(type, "wsgi") == 0 || strcmp(type, "c") == 0);
}
