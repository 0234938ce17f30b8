/* Conformance boot failure: the app needs a function from a library that is not present, so
 * dlopen(RTLD_NOW) fails with "undefined symbol: ferry_conformance_missing_library_call". */
#include <ferry.h>

/* Provided by no library on the system. */
int ferry_conformance_missing_library_call(void);

static int on_request(ferry_request_t *req)
{
    int rc = ferry_response_start(req, 200, NULL, 0);
    if (rc == FERRY_OK && ferry_conformance_missing_library_call() != 0)
        rc = FERRY_ERROR;
    return rc;
}

int ferry_app_init(ferry_init_t *init)
{
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
