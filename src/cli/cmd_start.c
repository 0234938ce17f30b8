/* Placeholder until the start command lands; replaced by its owner. */
#include <stdio.h>

#include "cli/commands.h"

int fy_cmd_start(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ferry start: not built yet\n");
    return 1;
}
