/* parse_floor.c - how long jansson alone takes to parse a request body: the floor under gradserve's time per request (make bench-service prints it). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "api_arena.h"

/* Usage: parse_floor BODY...  Prints, for each body, a tab-separated line
 *     file  bytes  microseconds
 * the best of five runs of json_loadb (the flags and the per-request arena
 * allocator gradserve uses) on this thread's CPU clock, each run repeated
 * for at least 0.2 s. */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void parse_once(const char *body, size_t len) {
    api_arena a;
    api_arena_begin(&a);
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!j) {
        fprintf(stderr, "parse_floor: not JSON: %s\n", e.text);
        exit(1);
    }
    api_arena_end(&a);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        char *body = malloc((size_t)n + 1);
        if (!body || fread(body, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "parse_floor: cannot read %s\n", argv[i]);
            return 1;
        }
        fclose(f);
        parse_once(body, (size_t)n); /* warm-up */
        double best = 1e30;
        for (int t = 0; t < 5; t++) {
            long reps = 0;
            double t0 = now(), dt;
            do {
                parse_once(body, (size_t)n);
                reps++;
                dt = now() - t0;
            } while (dt < 0.2);
            if (dt / (double)reps < best) best = dt / (double)reps;
        }
        printf("%s\t%ld\t%.2f\n", argv[i], n, 1e6 * best);
        free(body);
    }
    return 0;
}
