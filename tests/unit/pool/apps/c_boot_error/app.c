/* Pool unit-test app whose init fails: every spawn is a boot failure. */
#include <stdio.h>

#include <ferry.h>

int ferry_app_init(ferry_init_t *init)
{
    fprintf(stderr, "c_boot_error: about to fail\n");
    init->error = "deliberate boot failure";
    return FERRY_ERROR;
}
