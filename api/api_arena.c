/* api_arena.c - a bump allocator for jansson, one per request, set through json_set_alloc_funcs. */
#include "api_arena.h"

#include <jansson.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>

struct api_chunk {
    api_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

static _Thread_local api_arena *active;

/* Blocks from the active arena are 16-byte aligned slices of its chunks;
 * any other block is plain malloc, so that json_dumps' strings (which
 * callers release with free()) and trees built outside a request stay
 * ordinary heap memory. */
static void *arena_malloc(size_t n) {
    api_arena *a = active;
    if (!a) return malloc(n);
    size_t need = (n + 15) & ~(size_t)15;
    api_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = a->next_cap;
        while (cap < need) cap *= 2;
        if (a->next_cap < ((size_t)16 << 20)) a->next_cap *= 2;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

/* A block of the active arena is released with the arena: a no-op here.
 * The arena holds a few doubling chunks, so the search is short. Trees
 * built in an arena are never freed block by block on another thread:
 * api_handle drops them with the arena instead of calling json_decref. */
static void arena_free(void *ptr) {
    if (!ptr) return;
    for (api_chunk *c = active ? active->head : NULL; c; c = c->next)
        if ((unsigned char *)ptr >= c->data && (unsigned char *)ptr < c->data + c->cap) return;
    free(ptr);
}

/* jansson must get its allocator before its first allocation, or a block
 * made by plain malloc would later reach arena_free without a header: so
 * it is installed when the program loads, before main (this object is
 * linked into every program that calls api_handle). */
__attribute__((constructor)) static void install(void) {
    json_set_alloc_funcs(arena_malloc, arena_free);
}

void api_arena_begin(api_arena *a) {
    a->head = NULL;
    a->next_cap = 64 << 10;
    active = a;
}

void api_arena_end(api_arena *a) {
    if (active == a) active = NULL;
    for (api_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
}
