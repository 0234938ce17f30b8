/* Unit-test app: ferry_app_init fails with a message. */
#include <ferry.h>

int ferry_app_init(ferry_init_t *init)
{
    init->error = "database unreachable";
    return FERRY_ERROR;
}
