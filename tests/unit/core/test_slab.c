/* The object pool (src/core/slab.c): zeroed objects, reuse, chunks that fill and empty, and
 * what goes back to the system. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/slab.h"

typedef struct {
    char bytes[1500];
} conn_like_t;

Test(slab, objects_are_zeroed_aligned_and_distinct)
{
    fy_slab_t s;
    fy_slab_init(&s, sizeof(conn_like_t));
    conn_like_t *a = fy_slab_alloc(&s), *b = fy_slab_alloc(&s);
    cr_assert_neq(a, b);
    cr_assert_eq((uintptr_t)a % 16, 0);
    for (size_t i = 0; i < sizeof a->bytes; i++)
        cr_assert_eq(a->bytes[i], 0);
    memset(a->bytes, 0xab, sizeof a->bytes);
    cr_assert_eq(b->bytes[0], 0, "writing one object leaves the next alone");
    fy_slab_free(&s, a);
    conn_like_t *c = fy_slab_alloc(&s);
    cr_assert_eq(c, a, "a freed slot is reused first");
    cr_assert_eq(c->bytes[100], 0, "and zeroed again");
    fy_slab_free(&s, b);
    fy_slab_free(&s, c);
    cr_assert_eq(s.live, 0);
    fy_slab_dispose(&s);
}

Test(slab, chunks_come_and_go_but_one_empty_chunk_stays)
{
    fy_slab_t s;
    fy_slab_init(&s, sizeof(conn_like_t));
    size_t n = s.per_chunk * 5 + 3;
    cr_assert_geq(s.per_chunk, 40);
    conn_like_t **objs = calloc(n, sizeof *objs);
    for (size_t i = 0; i < n; i++)
        objs[i] = fy_slab_alloc(&s);
    cr_assert_eq(s.chunk_count, 6);
    cr_assert_eq(s.live, n);
    for (size_t i = 0; i < n; i++)
        fy_slab_free(&s, objs[i]);
    cr_assert_eq(s.live, 0);
    cr_assert_eq(s.chunk_count, 1, "every empty chunk but one is unmapped");
    cr_assert_eq(s.empty_chunks, 1);
    conn_like_t *again = fy_slab_alloc(&s);
    cr_assert_eq(s.chunk_count, 1, "the kept chunk serves the next allocation");
    fy_slab_free(&s, again);
    free(objs);
    fy_slab_dispose(&s);
    cr_assert_eq(s.chunk_count, 0);
}

Test(slab, a_full_chunk_with_a_freed_slot_is_used_before_a_new_one)
{
    fy_slab_t s;
    fy_slab_init(&s, 4000);
    size_t n = s.per_chunk * 2;
    void **objs = calloc(n, sizeof *objs);
    for (size_t i = 0; i < n; i++)
        objs[i] = fy_slab_alloc(&s);
    cr_assert_eq(s.chunk_count, 2);
    fy_slab_free(&s, objs[0]);
    objs[0] = fy_slab_alloc(&s);
    cr_assert_eq(s.chunk_count, 2, "no third chunk while the first has a free slot");
    for (size_t i = 0; i < n; i++)
        fy_slab_free(&s, objs[i]);
    free(objs);
    fy_slab_dispose(&s);
}

Test(slab, small_objects_still_hold_the_free_list)
{
    fy_slab_t s;
    fy_slab_init(&s, 1);
    cr_assert_geq(s.object_size, sizeof(void *));
    void *a = fy_slab_alloc(&s);
    fy_slab_free(&s, a);
    fy_slab_free(&s, NULL);
    fy_slab_dispose(&s);
}
