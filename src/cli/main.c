/* ferry: the command-line front door. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"start", fy_cmd_start, "serve an app over HTTP (Rack, WSGI or native C, detected)"},
    {"status", fy_cmd_status, "show the running instances: app, workers, queue, memory"},
    {"restart", fy_cmd_restart, "replace the workers of a running instance, dropping no request"},
    {"stop", fy_cmd_stop, "shut a running instance down gracefully"},
    {"worker", fy_cmd_worker, "run one worker process (spawn handshake on fds 3 and 4)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`ferry <command> --help` documents each command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "ferry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
