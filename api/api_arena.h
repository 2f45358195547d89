/* api_arena.h - jansson's allocations from a per-request arena (internal). */
#ifndef API_ARENA_H
#define API_ARENA_H

#include <stddef.h>

/* While an arena is active on a thread, every allocation jansson makes on
 * that thread is carved from it and its frees are no-ops; api_arena_end
 * releases it all at once, so the request's JSON tree needs no per-node
 * free (json_decref may be skipped). Allocations made with no active
 * arena come from malloc as usual. Chunks double from 64 KiB. The
 * allocator is installed into jansson when the program loads. */
typedef struct api_chunk api_chunk;
typedef struct {
    api_chunk *head;
    size_t next_cap;
} api_arena;

void api_arena_begin(api_arena *a);
void api_arena_end(api_arena *a);

#endif
