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

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *ring;
    unsigned cap, head, count;
    bool stopping;
    pthread_t *threads;
    unsigned nthreads;
    int nice_inc;
} wq = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *worker(void *unused)
{
    (void)unused;
    /* Linux applies nice per thread */
    if (wq.nice_inc)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), wq.nice_inc);
    pthread_mutex_lock(&wq.lock);
    for (;;) {
        while (!wq.count && !wq.stopping)
            pthread_cond_wait(&wq.cond, &wq.lock);
        if (!wq.count && wq.stopping)
            break;
        struct job j = wq.ring[wq.head];
        wq.head = (wq.head + 1) % wq.cap;
        wq.count--;
        pthread_mutex_unlock(&wq.lock);
        j.fn(j.arg);
        pthread_mutex_lock(&wq.lock);
    }
    pthread_mutex_unlock(&wq.lock);
    return NULL;
}

bool ink_workq_start(unsigned threads, unsigned capacity, int nice_inc)
{
    wq.ring = ink_calloc(capacity, sizeof *wq.ring);
    wq.cap = capacity;
    wq.head = wq.count = 0;
    wq.stopping = false;
    wq.nice_inc = nice_inc;
    wq.threads = ink_calloc(threads, sizeof *wq.threads);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&wq.threads[i], NULL, worker, NULL) != 0)
            return false;
        wq.nthreads++;
    }
    return true;
}

bool ink_workq_submit(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&wq.lock);
    if (wq.stopping || wq.count == wq.cap || !wq.ring) {
        pthread_mutex_unlock(&wq.lock);
        return false;
    }
    wq.ring[(wq.head + wq.count) % wq.cap] = (struct job){fn, arg};
    wq.count++;
    pthread_cond_signal(&wq.cond);
    pthread_mutex_unlock(&wq.lock);
    return true;
}

unsigned ink_workq_pending(void)
{
    pthread_mutex_lock(&wq.lock);
    unsigned n = wq.count;
    pthread_mutex_unlock(&wq.lock);
    return n;
}

void ink_workq_stop(void)
{
    pthread_mutex_lock(&wq.lock);
    wq.stopping = true;
    pthread_cond_broadcast(&wq.cond);
    pthread_mutex_unlock(&wq.lock);
    for (unsigned i = 0; i < wq.nthreads; i++)
        pthread_join(wq.threads[i], NULL);
    free(wq.threads);
    free(wq.ring);
    wq.threads = NULL;
    wq.ring = NULL;
    wq.nthreads = 0;
}
