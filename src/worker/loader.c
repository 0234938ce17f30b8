/* The native app loader: dlopen the app's .so, find ferry_app_init, call it. Each failure names
 * the step and says what to check, since the summary ends up on the user's error page. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "worker/worker_internal.h"

int fy_worker_app_load(const char *path, const char *app_root, const char *environment,
                       fy_worker_app_t *app, char **summary, char **details)
{
    memset(app, 0, sizeof *app);
    *summary = NULL;
    *details = NULL;

    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *err = dlerror();
        *summary = fy_xasprintf("cannot load %s: %s", path, err ? err : "unknown dlopen error");
        *details = fy_xasprintf(
            "step=load_app: dlopen(\"%s\", RTLD_NOW|RTLD_LOCAL) failed. Check that the file is a "
            "shared object built for this machine (file %s), and that every library and symbol "
            "it needs is present (ldd -r %s). The ferry_* SDK symbols come from the ferry binary: "
            "do not link libferry into the app.",
            path, path, path);
        return -ENOEXEC;
    }

    dlerror();
    void *sym = dlsym(handle, FERRY_APP_INIT_SYMBOL);
    if (sym == NULL) {
        const char *err = dlerror();
        *summary = fy_xasprintf("%s has no " FERRY_APP_INIT_SYMBOL " entry point", path);
        *details = fy_xasprintf(
            "step=find_entry_point: dlsym(\"" FERRY_APP_INIT_SYMBOL "\") failed: %s. A native "
            "app exports `int ferry_app_init(ferry_init_t *init)` (include/ferry.h) with default "
            "visibility.",
            err ? err : "symbol not found");
        dlclose(handle);
        return -ENOENT;
    }

    ferry_app_init_fn init_fn;
    /* POSIX guarantees the data pointer from dlsym converts to a function pointer. */
    memcpy(&init_fn, &sym, sizeof init_fn);

    ferry_init_t init;
    memset(&init, 0, sizeof init);
    init.api_version = FERRY_API_VERSION;
    init.app_root = app_root;
    init.environment = environment;
    int rc = init_fn(&init);
    if (rc != FERRY_OK) {
        *summary = fy_xasprintf("ferry_app_init of %s failed: %s", path,
                                init.error ? init.error : ferry_strerror(rc));
        *details =
            fy_xasprintf("step=init_app: ferry_app_init returned %d (%s)%s%s", rc,
                         ferry_strerror(rc), init.error ? ": " : "", init.error ? init.error : "");
        dlclose(handle);
        return -ECANCELED;
    }
    if (init.callbacks.on_request == NULL) {
        *summary = fy_xasprintf("ferry_app_init of %s set no on_request callback", path);
        *details = fy_xstrdup("step=init_app: ferry_app_init returned FERRY_OK but left "
                              "init->callbacks.on_request NULL; it is the one required callback.");
        if (init.callbacks.on_shutdown != NULL)
            init.callbacks.on_shutdown(init.data);
        dlclose(handle);
        return -EINVAL;
    }
    app->callbacks = init.callbacks;
    app->data = init.data;
    app->dl_handle = handle;
    app->final_write_with_end = true;
    app->path = fy_xstrdup(path);
    return 0;
}

void fy_worker_app_dispose(fy_worker_app_t *app, bool call_shutdown)
{
    if (call_shutdown && app->callbacks.on_shutdown != NULL)
        app->callbacks.on_shutdown(app->data);
    if (app->dl_handle != NULL)
        dlclose(app->dl_handle);
    free(app->path);
    memset(app, 0, sizeof *app);
}
