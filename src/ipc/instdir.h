/* The instance directory (docs/operations.md, "The instance directory"):
 * $TMPDIR/ferry.<pid>.<random>/, mode 0700, holds the instance's properties (properties.json)
 * and files such as the admin password (0600) and fallback socket files. `ferry status` finds
 * instances here; a dead instance's directory is recognised (its pid is gone) and cleaned. */
#ifndef FY_IPC_INSTDIR_H
#define FY_IPC_INSTDIR_H

#include <stddef.h>
#include <sys/types.h>

typedef struct fy_instdir {
    char path[256];
} fy_instdir_t;

/* The parent of instance directories: $TMPDIR or /tmp. */
const char *fy_instdir_base(void);

/* Creates a new instance directory for this process. Returns 0 or a negative errno. */
int fy_instdir_create(fy_instdir_t *dir);

/* Writes <data> to the file <name> inside <dir> with <mode>, atomically (temp file + rename).
 * Returns 0 or a negative errno. */
int fy_instdir_write_file(const fy_instdir_t *dir, const char *name, const void *data,
                          size_t len, mode_t mode);

/* Removes <dir> and everything in it (one level deep: no subdirectories are created). */
int fy_instdir_remove(fy_instdir_t *dir);

/* Parses the owner pid out of an instance directory name "ferry.<pid>.<random>"; returns the pid
 * or -EINVAL. */
pid_t fy_instdir_name_pid(const char *name);

/* Removes the directories of dead instances in fy_instdir_base() that belong to our uid. Returns
 * the number removed, or a negative errno. */
int fy_instdir_clean_stale(void);

#endif
