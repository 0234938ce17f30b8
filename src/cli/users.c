/* The user the app runs as (see users.h). */
#include "cli/users.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Looks up a user by name (or a decimal uid). Returns 0 or -ENOENT. */
static int find_user(const char *name, uid_t *uid, gid_t *gid, char *user, size_t user_len,
                     char *home, size_t home_len)
{
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (pw == NULL) {
        char *end;
        unsigned long n = strtoul(name, &end, 10);
        if (name[0] >= '0' && name[0] <= '9' && *end == '\0')
            pw = getpwuid((uid_t)n);
    }
    if (pw == NULL)
        return -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    snprintf(user, user_len, "%s", pw->pw_name);
    snprintf(home, home_len, "%s", pw->pw_dir ? pw->pw_dir : "/");
    return 0;
}

static int find_group(const char *name, gid_t *gid, char *group, size_t group_len)
{
    struct group *gr = getgrnam(name);
    if (gr == NULL) {
        char *end;
        unsigned long n = strtoul(name, &end, 10);
        if (name[0] >= '0' && name[0] <= '9' && *end == '\0')
            gr = getgrgid((gid_t)n);
    }
    if (gr == NULL)
        return -ENOENT;
    *gid = gr->gr_gid;
    snprintf(group, group_len, "%s", gr->gr_name);
    return 0;
}

static void group_name(gid_t gid, char *out, size_t cap)
{
    struct group *gr = getgrgid(gid);
    if (gr != NULL)
        snprintf(out, cap, "%s", gr->gr_name);
    else
        snprintf(out, cap, "%u", (unsigned)gid);
}

int fy_users_choose(const char *user, const char *group, const char *owner_of, fy_run_as_t *out,
                    char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    bool root = geteuid() == 0;
    if (user[0] != '\0') {
        if (find_user(user, &out->uid, &out->gid, out->user, sizeof out->user, out->home,
                      sizeof out->home) != 0) {
            snprintf(err, err_len, "--user %s: no such user", user);
            return -ENOENT;
        }
        snprintf(out->why, sizeof out->why, "--user");
    } else if (root) {
        struct stat st;
        if (stat(owner_of, &st) != 0) {
            snprintf(err, err_len, "%s: %s (its owner would be the app's user)", owner_of,
                     strerror(errno));
            return -ENOENT;
        }
        char uid_text[16];
        snprintf(uid_text, sizeof uid_text, "%u", (unsigned)st.st_uid);
        bool by_root = st.st_uid == 0;
        if (find_user(by_root ? "nobody" : uid_text, &out->uid, &out->gid, out->user,
                      sizeof out->user, out->home, sizeof out->home) != 0) {
            snprintf(err, err_len, "%s: its owner (uid %s) is no user; pass --user",
                     by_root ? "nobody" : owner_of, by_root ? "nobody" : uid_text);
            return -ENOENT;
        }
        snprintf(out->why, sizeof out->why, "%s%s", by_root ? "nobody, as root owns " : "owner of ",
                 owner_of);
    } else {
        out->uid = geteuid();
        out->gid = getegid();
    }
    if (group[0] != '\0') {
        if (find_group(group, &out->gid, out->group, sizeof out->group) != 0) {
            snprintf(err, err_len, "--group %s: no such group", group);
            return -ENOENT;
        }
    } else {
        group_name(out->gid, out->group, sizeof out->group);
    }
    if (!root) {
        if (out->uid != geteuid() || out->gid != getegid()) {
            snprintf(err, err_len, "--user/--group: only root can run the app as another user "
                                   "or group (ferry runs as uid %u gid %u)",
                     (unsigned)geteuid(), (unsigned)getegid());
            return -EPERM;
        }
        return 0;
    }
    /* Root stays root only when said: --user root (or uid 0). */
    out->switching = !(out->uid == 0 && out->gid == 0);
    return 0;
}

int fy_users_become(const fy_run_as_t *r, char *err, size_t err_len)
{
    if (!r->switching)
        return 0;
    if (initgroups(r->user[0] ? r->user : "nobody", r->gid) == -1 || setgid(r->gid) == -1 ||
        setuid(r->uid) == -1) {
        int e = errno;
        snprintf(err, err_len, "cannot become %s:%s (uid %u gid %u): %s", r->user, r->group,
                 (unsigned)r->uid, (unsigned)r->gid, strerror(e));
        return -e;
    }
    if (r->uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
        snprintf(err, err_len, "root could be regained after becoming %s", r->user);
        return -EPERM;
    }
    return 0;
}
