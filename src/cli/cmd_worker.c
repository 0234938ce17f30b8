/* Placeholder until the worker command lands; replaced by its owner. */
#include <stdio.h>

#include "cli/commands.h"

int fy_cmd_worker(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ferry worker: not built yet\n");
    return 1;
}
