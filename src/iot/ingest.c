#include "inklet/ingest.h"

#include "inklet/alloc.h"
#include "inklet/db.h"
#include "inklet/ids.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct job {
    enum ink_up_kind up;
    char thing[INK_THING_NAME_MAX + 1];
    char *payload;
    size_t len;
};

struct worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *ring;
    unsigned cap, head, count;
    bool stopping;
    int64_t drop_after_ms; /* while stopping: jobs not started by then are dropped (0: none) */
    struct ink_db *db;
};

static struct worker *workers;
static unsigned nworkers;
static ink_ingest_handler handler;
static atomic_ullong dropped_at_shutdown, processed, dropped, limited;

void ink_ingest_get_stats(struct ink_ingest_stats *out)
{
    out->processed = atomic_load(&processed);
    out->dropped = atomic_load(&dropped);
    out->limited = atomic_load(&limited);
}

static unsigned pick(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % nworkers;
}

static bool push(struct worker *w, struct job *j)
{
    pthread_mutex_lock(&w->lock);
    if (w->count == w->cap || w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return false;
    }
    w->ring[(w->head + w->count) % w->cap] = *j;
    w->count++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return true;
}

/* Runs one job, retrying while the database is unreachable so a short outage loses nothing. */
static void run(struct worker *w, struct job *j)
{
    for (int attempt = 0;; attempt++) {
        enum ink_status st = ink_db_private_ready(w->db);
        if (st == INK_OK)
            st = handler(w->db, j->thing, j->up, j->payload, j->len);
        if (st == INK_INVALID || st == INK_NOT_FOUND) {
            atomic_fetch_add(&dropped, 1);
            ink_debug("dropped a malformed message from thing %s", j->thing);
            return;
        }
        if (st == INK_RATE_LIMITED) {
            atomic_fetch_add(&limited, 1);
            return;
        }
        if (st == INK_OK)
            atomic_fetch_add(&processed, 1);
        if (st != INK_UNAVAILABLE)
            return;
        if (attempt >= 5) {
            atomic_fetch_add(&dropped, 1);
            ink_warn("gave up on a message from thing %s: the database stayed unavailable",
                     j->thing);
            return;
        }
        bool stopping;
        pthread_mutex_lock(&w->lock);
        stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);
        if (stopping)
            return;
        usleep(200000u << attempt);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->count && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->count && w->stopping)
            break;
        struct job j = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        bool drop = w->stopping && w->drop_after_ms && ink_now_mono_ms() > w->drop_after_ms;
        pthread_mutex_unlock(&w->lock);
        if (drop) {
            atomic_fetch_add(&dropped, 1);
            atomic_fetch_add(&dropped_at_shutdown, 1);
        } else {
            run(w, &j);
        }
        free(j.payload);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

bool ink_ingest_start(unsigned n, unsigned queue_capacity, ink_ingest_handler h)
{
    handler = h;
    workers = ink_calloc(n, sizeof *workers);
    nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &workers[i];
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->ring = ink_calloc(queue_capacity, sizeof *w->ring);
        w->cap = queue_capacity;
        /* device telemetry tolerates losing the last few ms on a crash: skip the fsync wait */
        w->db = ink_db_private_new("SET synchronous_commit = off");
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return false;
    }
    return true;
}

void ink_ingest_stop(unsigned drain_ms)
{
    int64_t drop_after = ink_now_mono_ms() + drain_ms;
    for (unsigned i = 0; i < nworkers; i++) {
        pthread_mutex_lock(&workers[i].lock);
        workers[i].stopping = true;
        workers[i].drop_after_ms = drop_after;
        pthread_cond_signal(&workers[i].cond);
        pthread_mutex_unlock(&workers[i].lock);
    }
    for (unsigned i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
    unsigned long long late = atomic_load(&dropped_at_shutdown);
    if (late)
        ink_warn("shutdown: %llu queued device messages were not processed in time", late);
}

void ink_ingest_free(void)
{
    for (unsigned i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        for (unsigned k = 0; k < w->count; k++)
            free(w->ring[(w->head + k) % w->cap].payload);
        free(w->ring);
        ink_db_private_free(w->db);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}

bool ink_ingest_submit(const char *thing, enum ink_up_kind kind, const void *payload, size_t len)
{
    if (!nworkers) {
        atomic_fetch_add(&dropped, 1); /* not running (yet, or any more) */
        return false;
    }
    struct job j = {.up = kind, .len = len};
    snprintf(j.thing, sizeof j.thing, "%s", thing);
    j.payload = ink_malloc(len + 1);
    if (len) /* an empty MQTT payload comes as NULL, which memcpy must not get */
        memcpy(j.payload, payload, len);
    j.payload[len] = '\0';
    if (!push(&workers[pick(thing)], &j)) {
        free(j.payload);
        atomic_fetch_add(&dropped, 1);
        ink_warn("device message queue full or stopping; dropped a message");
        return false;
    }
    return true;
}
