/* The smallest native ferry app: answers every request with 200 "hello world\n".
 * Build: meson builds it into build/examples/hello-c/app.so.
 * Run:   ferry start build/examples/hello-c   (or: ferry worker build/examples/hello-c) */
#include <ferry.h>

static int on_request(ferry_request_t *req)
{
    static const char body[] = "hello world\n";
    ferry_field_t fields[] = {
        {"Content-Type", "text/plain"},
        {"Content-Length", "12"},
    };
    int rc = ferry_response_start(req, 200, fields, 2);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, body, sizeof body - 1);
    return rc;
}

int ferry_app_init(ferry_init_t *init)
{
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
