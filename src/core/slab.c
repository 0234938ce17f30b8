/* The object pool of slab.h. A chunk is one 64 KiB mapping: its header, then slots. A slot is
 * the back pointer to its chunk followed by the object; a free slot holds the next free one. */
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/slab.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHUNK_SIZE (64u * 1024u)
#define ALIGN alignof(max_align_t)

typedef struct slot {
    fy_slab_chunk_t *chunk;
    union {
        struct slot *next_free;
        max_align_t object[1];
    } u;
} slot_t;

struct fy_slab_chunk {
    fy_slab_chunk_t *prev, *next;
    slot_t *free_slots;
    size_t used;
};

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static size_t slot_size(const fy_slab_t *slab)
{
    return offsetof(slot_t, u) + slab->object_size;
}

static size_t header_size(void)
{
    return round_up(sizeof(fy_slab_chunk_t), ALIGN);
}

void fy_slab_init(fy_slab_t *slab, size_t object_size)
{
    FY_ASSERT(object_size > 0 && object_size <= 16 * 1024);
    memset(slab, 0, sizeof *slab);
    slab->object_size = round_up(object_size < sizeof(slot_t *) ? sizeof(slot_t *) : object_size,
                                 ALIGN);
    slab->per_chunk = (CHUNK_SIZE - header_size()) / round_up(slot_size(slab), ALIGN);
    FY_ASSERT(slab->per_chunk >= 1);
}

static void unlink_chunk(fy_slab_t *slab, fy_slab_chunk_t *ch)
{
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        slab->chunks = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    ch->prev = ch->next = NULL;
}

static void push_front(fy_slab_t *slab, fy_slab_chunk_t *ch)
{
    ch->prev = NULL;
    ch->next = slab->chunks;
    if (slab->chunks)
        slab->chunks->prev = ch;
    slab->chunks = ch;
}

static fy_slab_chunk_t *new_chunk(fy_slab_t *slab)
{
    void *mem = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        fy_assert_fail("mmap of a slab chunk (out of memory)", __FILE__, __LINE__);
    fy_slab_chunk_t *ch = mem;
    memset(ch, 0, sizeof *ch);
    size_t step = round_up(slot_size(slab), ALIGN);
    char *base = (char *)mem + header_size();
    for (size_t i = slab->per_chunk; i-- > 0;) {
        slot_t *s = (slot_t *)(base + i * step);
        s->chunk = ch;
        s->u.next_free = ch->free_slots;
        ch->free_slots = s;
        POISON(&s->u, slab->object_size);
    }
    slab->chunk_count++;
    slab->empty_chunks++;
    push_front(slab, ch);
    return ch;
}

void *fy_slab_alloc(fy_slab_t *slab)
{
    fy_slab_chunk_t *ch = slab->chunks;
    if (ch == NULL || ch->free_slots == NULL)
        ch = new_chunk(slab);
    slot_t *s = ch->free_slots;
    if (ch->used == 0)
        slab->empty_chunks--;
    UNPOISON(&s->u, slab->object_size);
    ch->free_slots = s->u.next_free;
    ch->used++;
    slab->live++;
    if (ch->free_slots == NULL) {
        /* full: behind the chunks that still have room */
        unlink_chunk(slab, ch);
        fy_slab_chunk_t **tail = &slab->chunks;
        fy_slab_chunk_t *prev = NULL;
        while (*tail != NULL) {
            prev = *tail;
            tail = &(*tail)->next;
        }
        ch->prev = prev;
        *tail = ch;
    }
    memset(&s->u, 0, slab->object_size);
    return &s->u;
}

void fy_slab_free(fy_slab_t *slab, void *obj)
{
    if (obj == NULL)
        return;
    slot_t *s = (slot_t *)((char *)obj - offsetof(slot_t, u));
    fy_slab_chunk_t *ch = s->chunk;
    FY_ASSERT(ch->used > 0 && slab->live > 0);
    bool was_full = ch->free_slots == NULL;
    s->u.next_free = ch->free_slots;
    ch->free_slots = s;
    POISON(&s->u, slab->object_size);
    ch->used--;
    slab->live--;
    if (ch->used == 0 && slab->empty_chunks >= 1) {
        /* one empty chunk is kept, so that a connection that comes and goes maps nothing */
        unlink_chunk(slab, ch);
        slab->chunk_count--;
        munmap(ch, CHUNK_SIZE);
    } else if (ch->used == 0) {
        slab->empty_chunks++;
        if (was_full) {
            unlink_chunk(slab, ch);
            push_front(slab, ch);
        }
    } else if (was_full) {
        unlink_chunk(slab, ch);
        push_front(slab, ch);
    }
}

void fy_slab_dispose(fy_slab_t *slab)
{
    FY_ASSERT(slab->live == 0);
    while (slab->chunks) {
        fy_slab_chunk_t *ch = slab->chunks;
        unlink_chunk(slab, ch);
        munmap(ch, CHUNK_SIZE);
    }
    slab->chunk_count = 0;
    slab->empty_chunks = 0;
}
