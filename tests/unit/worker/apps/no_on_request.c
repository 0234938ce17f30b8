/* Unit-test app: ferry_app_init succeeds but sets no on_request. */
#include <ferry.h>

int ferry_app_init(ferry_init_t *init)
{
    (void)init;
    return FERRY_OK;
}
