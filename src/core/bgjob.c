/* A thread that runs rounds of work, sleeping in between. */
#include "inklet/bgjob.h"

#include "inklet/alloc.h"
#include "inklet/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct ink_bgjob {
    const char *name;
    ink_bgjob_round_fn round;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool kicked, stopping;
};

static void *bgjob_main(void *arg)
{
    struct ink_bgjob *j = arg;
    pthread_mutex_lock(&j->lock);
    while (!j->stopping) {
        j->kicked = false;
        pthread_mutex_unlock(&j->lock);
        long wait_ms = j->round();
        if (wait_ms < 1)
            wait_ms = 1;
        pthread_mutex_lock(&j->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long ns = until.tv_nsec + (wait_ms % 1000) * 1000000L;
        until.tv_sec += (time_t)(wait_ms / 1000 + ns / 1000000000L);
        until.tv_nsec = ns % 1000000000L;
        while (!j->kicked && !j->stopping)
            if (pthread_cond_timedwait(&j->wake, &j->lock, &until) != 0)
                break;
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

struct ink_bgjob *ink_bgjob_start(const char *name, ink_bgjob_round_fn round)
{
    struct ink_bgjob *j = ink_calloc(1, sizeof *j);
    j->name = name;
    j->round = round;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* a clock step must not stall it */
    pthread_cond_init(&j->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&j->lock, NULL);
    if (pthread_create(&j->thread, NULL, bgjob_main, j) != 0) {
        ink_error("cannot start the %s thread", name);
        pthread_cond_destroy(&j->wake);
        pthread_mutex_destroy(&j->lock);
        free(j);
        return NULL;
    }
    return j;
}

void ink_bgjob_kick(struct ink_bgjob *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->kicked = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}

void ink_bgjob_stop(struct ink_bgjob *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->lock);
    free(j);
}
