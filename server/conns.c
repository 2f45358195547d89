/* conns.c - open connections and their deadlines; a reaper thread cuts those too slow to send a whole request (slowloris). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server.h"

/* Why not libmicrohttpd's own timeout: it measures inactivity, and a
 * slowloris client is never inactive, sending a byte every few seconds
 * forever. A deadline per request bounds the time instead; the HTTP layer
 * sets it when a request may start and clears it once the request has
 * arrived whole (computing and answering have no deadline here).
 *
 * Connections are kept in shards, each with its own lock: a connection
 * is added and removed by the one libmicrohttpd thread that owns it, so
 * HTTP threads (which get distinct shards) only ever contend with the
 * reaper's scan, a few times a second. */
#define SHARDS 16

/* How often the reaper looks: a cut comes at most this late. */
#define TICK_NS 100000000ull

typedef struct {
    _Alignas(64) pthread_mutex_t lock;
    srv_conn *head;
} shard;

struct srv_conns {
    shard shards[SHARDS];
    srv_metrics *metrics;
    unsigned timeout_s;
    pthread_t reaper;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stop;        /* under stop_lock */
    int started;
};

static _Thread_local int my_shard = -1;
static atomic_uint next_shard;

/* Cuts every connection past its deadline. shutdown(), not close(): the
 * descriptor stays libmicrohttpd's, which sees the end of the stream and
 * closes the connection itself. The shard's lock is held, and
 * libmicrohttpd removes a connection from here (srv_conns_remove) before
 * it closes its descriptor, so fd cannot be a reused number. */
static void reap(srv_conns *cs) {
    uint64_t now = srv_now_ns();
    for (size_t i = 0; i < SHARDS; i++) {
        shard *s = &cs->shards[i];
        pthread_mutex_lock(&s->lock);
        for (srv_conn *c = s->head; c; c = c->next) {
            uint64_t d = atomic_load(&c->deadline);
            if (!d || d > now) continue;
            atomic_store(&c->deadline, 0);
            shutdown(c->fd, SHUT_RDWR);
            srv_metrics_reject(cs->metrics, SRV_REJECT_TIMEOUT);
            srv_log(SRV_LOG_WARN, "cut the connection from %s: no whole request within %u s "
                    "(--connection-timeout)", c->remote, cs->timeout_s);
        }
        pthread_mutex_unlock(&s->lock);
    }
}

static void *reaper(void *arg) {
    srv_conns *cs = arg;
    pthread_mutex_lock(&cs->stop_lock);
    while (!cs->stop) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_nsec += (long)TICK_NS;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cs->stop_cond, &cs->stop_lock, &t);
        if (cs->stop) break;
        pthread_mutex_unlock(&cs->stop_lock);
        reap(cs);
        pthread_mutex_lock(&cs->stop_lock);
    }
    pthread_mutex_unlock(&cs->stop_lock);
    return NULL;
}

srv_conns *srv_conns_new(srv_metrics *m, unsigned timeout_s) {
    srv_conns *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    cs->metrics = m;
    cs->timeout_s = timeout_s;
    for (size_t i = 0; i < SHARDS; i++) pthread_mutex_init(&cs->shards[i].lock, NULL);
    pthread_mutex_init(&cs->stop_lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cs->stop_cond, &a);
    pthread_condattr_destroy(&a);
    if (pthread_create(&cs->reaper, NULL, reaper, cs)) {
        srv_conns_free(cs);
        return NULL;
    }
    cs->started = 1;
    return cs;
}

void srv_conns_free(srv_conns *cs) {
    if (!cs) return;
    if (cs->started) {
        pthread_mutex_lock(&cs->stop_lock);
        cs->stop = 1;
        pthread_cond_signal(&cs->stop_cond);
        pthread_mutex_unlock(&cs->stop_lock);
        pthread_join(cs->reaper, NULL);
    }
    for (size_t i = 0; i < SHARDS; i++) pthread_mutex_destroy(&cs->shards[i].lock);
    pthread_mutex_destroy(&cs->stop_lock);
    pthread_cond_destroy(&cs->stop_cond);
    free(cs);
}

void srv_conns_add(srv_conns *cs, srv_conn *c) {
    if (my_shard < 0) my_shard = (int)(atomic_fetch_add(&next_shard, 1) % SHARDS);
    c->shard = (unsigned)my_shard;
    shard *s = &cs->shards[c->shard];
    pthread_mutex_lock(&s->lock);
    c->prev = NULL;
    c->next = s->head;
    if (s->head) s->head->prev = c;
    s->head = c;
    pthread_mutex_unlock(&s->lock);
}

void srv_conns_remove(srv_conns *cs, srv_conn *c) {
    shard *s = &cs->shards[c->shard];
    pthread_mutex_lock(&s->lock);
    if (c->prev) c->prev->next = c->next;
    else s->head = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->lock);
}
