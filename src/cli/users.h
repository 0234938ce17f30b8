/* Which user the app runs as (docs/deploying.md, "Users"), as Passenger chooses it: started as
 * root, ferry binds its listeners and then runs the workers, and by default itself, as
 *
 *   --user NAME (and --group NAME, else that user's primary group); else the owner of the app's
 *   startup file (config.ru, the WSGI file, the .so, --startup-file; with --app, APP_DIR);
 *   when that owner is root: nobody. Root only when `--user root` is said.
 *
 * Started as another user, nothing switches: --user and --group may only name that user and
 * group. Reads the user and group databases and the file system; before the loop only. */
#ifndef FY_CLI_USERS_H
#define FY_CLI_USERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct fy_run_as {
    bool switching;          /* root switches to uid/gid (false: run as we are) */
    uid_t uid;
    gid_t gid;
    char user[64];
    char group[64];
    char home[PATH_MAX];
    char why[PATH_MAX + 32]; /* "--user", "owner of /srv/app/config.ru", ... for the log */
} fy_run_as_t;

/* Chooses by the rules above; <user> and <group> are the options ("" when not set), <owner_of>
 * the file whose owner is the default. Returns 0, or -ENOENT (no such user or group), -EPERM
 * (not root and another user or group named) after writing one line into <err>. */
int fy_users_choose(const char *user, const char *group, const char *owner_of, fy_run_as_t *out,
                    char *err, size_t err_len);

/* Becomes <r>'s user in this process: supplementary groups (initgroups), gid, uid, and checks
 * that root cannot be regained. Returns 0 or -errno after writing why into <err>. */
int fy_users_become(const fy_run_as_t *r, char *err, size_t err_len);

#endif
