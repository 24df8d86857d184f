#include "inklet/workq.h"

#include "inklet/alloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct job {
    void (*fn)(void *);
    void *arg;
};

struct ink_workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *ring;
    unsigned cap, head, count;
    bool stopping;
    pthread_t *threads;
    unsigned nthreads;
    int nice_inc;
};

static void *worker(void *arg)
{
    struct ink_workq *q = arg;
    /* Linux applies nice per thread */
    if (q->nice_inc)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), q->nice_inc);
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->count && !q->stopping)
            pthread_cond_wait(&q->cond, &q->lock);
        if (!q->count && q->stopping)
            break;
        struct job j = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_mutex_unlock(&q->lock);
        j.fn(j.arg);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct ink_workq *ink_workq_start(unsigned threads, unsigned capacity, int nice_inc)
{
    struct ink_workq *q = ink_calloc(1, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->ring = ink_calloc(capacity, sizeof *q->ring);
    q->cap = capacity;
    q->nice_inc = nice_inc;
    q->threads = ink_calloc(threads, sizeof *q->threads);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, worker, q) != 0) {
            ink_workq_stop(q);
            return NULL;
        }
        q->nthreads++;
    }
    return q;
}

bool ink_workq_submit(struct ink_workq *q, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&q->lock);
    if (q->stopping || q->count == q->cap) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    q->ring[(q->head + q->count) % q->cap] = (struct job){fn, arg};
    q->count++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return true;
}

unsigned ink_workq_take(struct ink_workq *q, void (*fn)(void *), void **args, unsigned max)
{
    unsigned n = 0;
    pthread_mutex_lock(&q->lock);
    while (n < max && q->count && q->ring[q->head].fn == fn) {
        args[n++] = q->ring[q->head].arg;
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

unsigned ink_workq_pending(struct ink_workq *q)
{
    pthread_mutex_lock(&q->lock);
    unsigned n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void ink_workq_stop(struct ink_workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->threads);
    free(q->ring);
    free(q);
}
