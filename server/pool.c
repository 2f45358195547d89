/* pool.c - the worker pool: computing requests, one per thread, and the parallel for-loops (api_exec) that split them. */
#include <pthread.h>
#include <stdlib.h>

#include "server.h"

/* A run() in progress: n tasks, handed out one index at a time. It lives
 * on the stack of the thread that called run(), which does not return
 * before done == n; after that no thread touches it (every access is
 * under the pool's lock, and the last one is done++).
 *
 * Why the caller takes indices too: a task may call run() again (a
 * /v1/batch item splitting its rows). If the caller only waited, nested
 * runs could occupy every worker with waiting callers and deadlock. As the
 * caller can always execute its own job's indices alone, every run()
 * finishes even with zero free workers; the workers only make it faster. */
typedef struct job {
    void (*task)(void *arg, size_t i);
    void *arg;
    size_t n;
    size_t next;            /* the next index to hand out */
    size_t done;            /* indices whose task has returned */
    pthread_cond_t all_done;
    struct job *queue_next; /* while next < n the job is queued */
} job;

struct srv_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* signalled when a job or task is queued, or on stop */
    job *head, *tail;       /* FIFO of jobs with indices left; under lock */
    srv_task *tasks, *tasks_tail; /* FIFO of submitted tasks; under lock */
    int stop;               /* under lock */
    size_t workers;
    size_t nthreads;
    pthread_t *threads;
};

/* Takes the next index of j and dequeues j once it has none left. Lock
 * held; j has indices left. */
static size_t take(srv_pool *p, job *j) {
    size_t i = j->next++;
    if (j->next == j->n && p->head == j) {
        p->head = j->queue_next;
        if (!p->head) p->tail = NULL;
    } else if (j->next == j->n) {
        /* j is not at the head: only the caller's own job can be here, and
         * a caller's job is unlinked wherever it sits. */
        job *k = p->head;
        while (k && k->queue_next != j) k = k->queue_next;
        if (k) {
            k->queue_next = j->queue_next;
            if (p->tail == j) p->tail = k;
        }
    }
    return i;
}

/* Marks one index of j done. Lock held. The signal is sent under the
 * lock, so the caller cannot wake, return and destroy j before it is sent. */
static void finish(job *j) {
    if (++j->done == j->n) pthread_cond_signal(&j->all_done);
}

/* 1 on the pool's own threads: a run() called there (a request splitting
 * its rows) has one helper fewer than the pool has threads. */
static _Thread_local int on_pool_thread;

/* A thread's loop. Indices of running jobs go before new tasks: a job
 * belongs to a request already computing, and finishing it first frees
 * that request's memory and answers its client sooner than starting
 * another would. Stop waits for the task queue to be empty, so no
 * submitted task is dropped. */
static void *worker(void *arg) {
    srv_pool *p = arg;
    on_pool_thread = 1;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->tasks && !p->stop) pthread_cond_wait(&p->work, &p->lock);
        if (p->head) {
            job *j = p->head;
            size_t i = take(p, j);
            pthread_mutex_unlock(&p->lock);
            j->task(j->arg, i);
            pthread_mutex_lock(&p->lock);
            finish(j);
        } else if (p->tasks) {
            srv_task *t = p->tasks;
            p->tasks = t->next;
            if (!p->tasks) p->tasks_tail = NULL;
            pthread_mutex_unlock(&p->lock);
            t->run(t); /* may free t */
            pthread_mutex_lock(&p->lock);
        } else {
            break; /* stop, and nothing left */
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void srv_pool_submit(srv_pool *p, srv_task *t) {
    t->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tasks_tail) p->tasks_tail->next = t;
    else p->tasks = t;
    p->tasks_tail = t;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void srv_pool_run(void *ctx, size_t n, void (*task)(void *arg, size_t i), void *arg) {
    srv_pool *p = ctx;
    /* One task, or no helpers: inline, with no lock and no hand-off, so
     * small requests cost nothing extra. */
    if (n == 0) return;
    size_t helpers = !p ? 0 : on_pool_thread && p->nthreads ? p->nthreads - 1 : p->nthreads;
    if (n == 1 || helpers == 0) {
        for (size_t i = 0; i < n; i++) task(arg, i);
        return;
    }
    job j = {task, arg, n, 0, 0, PTHREAD_COND_INITIALIZER, NULL};
    pthread_mutex_lock(&p->lock);
    if (p->tail) p->tail->queue_next = &j;
    else p->head = &j;
    p->tail = &j;
    /* Wake as many workers as there are indices the caller will not take
     * first; a broadcast would wake idle threads for nothing. */
    size_t wake = n - 1 < helpers ? n - 1 : helpers;
    for (size_t k = 0; k < wake; k++) pthread_cond_signal(&p->work);
    while (j.next < j.n) {
        size_t i = take(p, &j);
        pthread_mutex_unlock(&p->lock);
        task(arg, i);
        pthread_mutex_lock(&p->lock);
        finish(&j);
    }
    /* Every index is handed out; wait for the workers still running some. */
    while (j.done < j.n) pthread_cond_wait(&j.all_done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&j.all_done);
}

srv_pool *srv_pool_new(size_t workers) {
    srv_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->workers = workers ? workers : 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    size_t want = p->workers;
    p->threads = want ? calloc(want, sizeof *p->threads) : NULL;
    if (want && !p->threads) {
        srv_pool_free(p);
        return NULL;
    }
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p)) {
            srv_pool_free(p);
            return NULL;
        }
        p->nthreads++;
    }
    return p;
}

void srv_pool_free(srv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

api_exec srv_pool_exec(srv_pool *p) {
    api_exec x = {srv_pool_run, p, p ? p->workers : 1};
    return x;
}
