/* The ferry subcommands. Each takes the arguments after its name (argv[0] is the command name)
 * and returns the process exit status. */
#ifndef FY_CLI_COMMANDS_H
#define FY_CLI_COMMANDS_H

int fy_cmd_start(int argc, char **argv);
int fy_cmd_worker(int argc, char **argv);
int fy_cmd_status(int argc, char **argv);
int fy_cmd_restart(int argc, char **argv);
int fy_cmd_stop(int argc, char **argv);

#endif
