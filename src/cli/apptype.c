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

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

/* A name of the form "<something>.so". */
static bool has_so_suffix(const char *name)
{
    return has_suffix(name, ".so");
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

char *fy_apptype_startup_file(const char *dir, const char *type)
{
    if (strcmp(type, "rack") == 0)
        return is_regular_file_in(dir, "config.ru") ? fy_xasprintf("%s/config.ru", dir) : NULL;
    if (strcmp(type, "wsgi") == 0) {
        for (size_t i = 0; i < FY_ARRAY_SIZE(wsgi_files); i++) {
            if (is_regular_file_in(dir, wsgi_files[i]))
                return fy_xasprintf("%s/%s", dir, wsgi_files[i]);
        }
        return NULL;
    }
    return strcmp(type, "c") == 0 ? fy_apptype_shared_object(dir) : NULL;
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

const char *fy_apptype_of_startup_file(const char *file)
{
    if (has_suffix(file, ".ru"))
        return "rack";
    if (has_suffix(file, ".py"))
        return "wsgi";
    return NULL;
}

/* Skips a dotted identifier at <p>; returns the end, or NULL when there is none. */
static const char *skip_dotted_name(const char *p)
{
    while (true) {
        if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return NULL;
        while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               (*p >= '0' && *p <= '9'))
            p++;
        if (*p != '.')
            return p;
        p++;
    }
}

bool fy_apptype_wsgi_app_valid(const char *spec)
{
    const char *p = skip_dotted_name(spec);
    if (p == NULL)
        return false;
    if (*p == '\0')
        return true;
    if (*p != ':' || (p = skip_dotted_name(p + 1)) == NULL)
        return false;
    if (*p == '\0')
        return true;
    size_t rest = strlen(p);
    return *p == '(' && p[rest - 1] == ')';
}

bool fy_apptype_is_known(const char *type)
{
    return type != NULL &&
           (strcmp(type, "rack") == 0 || strcmp(type, "wsgi") == 0 || strcmp(type, "c") == 0);
}
