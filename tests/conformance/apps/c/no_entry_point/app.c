/* Conformance boot failure: a valid shared object that does not export ferry_app_init. */
#include <ferry.h>

int ferry_app_initialize(ferry_init_t *init);

/* Misnamed on purpose: the loader looks for ferry_app_init. */
int ferry_app_initialize(ferry_init_t *init)
{
    (void)init;
    return FERRY_OK;
}
