/* A pool of same-size objects kept apart from the malloc heap: they live in 64 KiB chunks of
 * their own (mmap), so the short-lived buffers the objects use from the heap never share pages
 * with them, and chunks whose objects are all freed go back to the system (but one). For many
 * long-lived small objects, such as idle client connections (docs/operations.md, "Memory").
 * Not thread-safe: one thread per slab. Under ASan a free slot is poisoned, so a use after free
 * is still reported. */
#ifndef FY_CORE_SLAB_H
#define FY_CORE_SLAB_H

#include <stddef.h>

typedef struct fy_slab_chunk fy_slab_chunk_t;

typedef struct fy_slab {
    size_t object_size;      /* what fy_slab_alloc returns, rounded up for alignment */
    size_t per_chunk;        /* objects in one chunk */
    fy_slab_chunk_t *chunks; /* chunks with at least one free slot first */
    size_t chunk_count;
    size_t empty_chunks;     /* chunks with no live object: at most one is kept */
    size_t live;             /* objects allocated and not freed */
} fy_slab_t;

/* Sets up an empty slab for objects of <object_size> bytes (at most 16 KiB). */
void fy_slab_init(fy_slab_t *slab, size_t object_size);
/* A zeroed object; aborts when the system has no memory left (as fy_xcalloc does). */
void *fy_slab_alloc(fy_slab_t *slab);
/* Gives <obj> (from fy_slab_alloc of this slab) back. A chunk left without live objects is
 * unmapped, unless it is the only empty one (kept for the next allocation). */
void fy_slab_free(fy_slab_t *slab, void *obj);
/* Unmaps every chunk. Every object must have been freed. */
void fy_slab_dispose(fy_slab_t *slab);

#endif
