/* Pool unit-test app: answers every request with its pid; says hello on stdout at boot. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ferry.h>

static int on_request(ferry_request_t *req)
{
    char body[32];
    int n = snprintf(body, sizeof body, "%d", (int)getpid());
    ferry_field_t fields[] = {{"Content-Type", "text/plain"}};
    int rc = ferry_response_start(req, 200, fields, 1);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, body, (size_t)n);
    return rc;
}

int ferry_app_init(ferry_init_t *init)
{
    printf("c_hello booting\n");
    fflush(stdout);
    init->callbacks.on_request = on_request;
    return FERRY_OK;
}
