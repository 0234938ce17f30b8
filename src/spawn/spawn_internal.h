/* Between spawn.c (the fy_proc) and preloader.c (smart spawning): the forked flavour of a proc.
 * Loop thread only. */
#ifndef FY_SPAWN_SPAWN_INTERNAL_H
#define FY_SPAWN_SPAWN_INTERNAL_H

#include "spawn/spawn.h"

/* A proc whose worker a preloader will fork: its start timeout runs from now; nothing else
 * happens until fy_proc_forked_connect or fy_proc_forked_fail. */
fy_proc_t *fy_proc_forked_new(uv_loop_t *loop, const fy_spawn_options_t *opts,
                              const fy_spawn_callbacks_t *cbs, void *data);
/* Sends the spawn request to the preloader's spawn server at <address> with <password>
 * (docs/protocol.md §5.4) and reads the answer on the loop. Returns 0, or the negative errno of
 * the failed connect or send, after failing <p> with -EAGAIN (reported on the next turn). */
int fy_proc_forked_connect(fy_proc_t *p, const char *address, const char *password);
/* Sends a re-fork request on <control_fd> (a worker's kept control channel, taken by this call)
 * with the new preloader's idle time <idle_s> (docs/protocol.md §5.5) and reads the answer on
 * the loop, as for a spawn: the child's owner pipe, then its ready. Returns as
 * fy_proc_forked_connect. */
int fy_proc_forked_refork(fy_proc_t *p, int control_fd, unsigned idle_s);
/* Fails <p> with <status>, <summary> and <details> (copied) on the next loop turn. */
void fy_proc_forked_fail(fy_proc_t *p, int status, const char *summary, const char *details);
/* Marks <p> as waiting in <pl>'s list (NULL: not waiting). */
void fy_proc_forked_set_waiting(fy_proc_t *p, fy_preloader_t *pl);
/* The link of <p> in its preloader's waiting list. */
fy_proc_t **fy_proc_wait_next(fy_proc_t *p);

/* Removes <p> from <pl>'s waiting list (preloader.c); no-op when it is not in it. */
void fy_preloader_unwait(fy_preloader_t *pl, fy_proc_t *p);

#endif
