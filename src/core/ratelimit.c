/* Fixed-size open-addressed tables: memory is bounded no matter how many addresses appear. When
 * a probe window is full the stalest bucket is replaced, which can only ever forgive a client,
 * never block one wrongly. */
#include "inklet/ratelimit.h"

#include "inklet/timeutil.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define SLOTS 8192 /* per class, power of two */
#define PROBE 8

struct bucket {
    uint64_t key;
    double tokens;
    int64_t updated_us;
};

struct table {
    pthread_mutex_t lock;
    struct ink_rate rate;
    struct bucket slots[SLOTS];
};

static struct table tables[INK_RATE_CLASS_COUNT];

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

void ink_ratelimit_init(const struct ink_rate rates[INK_RATE_CLASS_COUNT])
{
    for (int c = 0; c < INK_RATE_CLASS_COUNT; c++) {
        pthread_mutex_init(&tables[c].lock, NULL);
        tables[c].rate = rates[c];
        memset(tables[c].slots, 0, sizeof tables[c].slots);
    }
}

void ink_ratelimit_reset(void)
{
    for (int c = 0; c < INK_RATE_CLASS_COUNT; c++) {
        pthread_mutex_lock(&tables[c].lock);
        memset(tables[c].slots, 0, sizeof tables[c].slots);
        pthread_mutex_unlock(&tables[c].lock);
    }
}

unsigned ink_ratelimit_take(enum ink_rate_class cls, const char *key)
{
    if (cls <= INK_RATE_NONE || cls >= INK_RATE_CLASS_COUNT)
        return 0;
    struct table *t = &tables[cls];
    if (!t->rate.requests)
        return 0;
    uint64_t h = hash_key(key);
    int64_t now = ink_now_mono_us();
    double per_us = (double)t->rate.requests / ((double)t->rate.seconds * 1e6);
    unsigned wait = 0;

    pthread_mutex_lock(&t->lock);
    struct bucket *b = NULL, *stalest = NULL;
    for (unsigned i = 0; i < PROBE; i++) {
        struct bucket *s = &t->slots[(h + i) & (SLOTS - 1)];
        if (s->key == h) {
            b = s;
            break;
        }
        if (!stalest || s->updated_us < stalest->updated_us)
            stalest = s;
    }
    if (!b) {
        b = stalest;
        b->key = h;
        b->tokens = t->rate.requests;
        b->updated_us = now;
    }
    b->tokens += (double)(now - b->updated_us) * per_us;
    if (b->tokens > t->rate.requests)
        b->tokens = t->rate.requests;
    b->updated_us = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        double secs = (1.0 - b->tokens) / (per_us * 1e6);
        wait = (unsigned)ceil(secs);
        if (wait < 1)
            wait = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return wait;
}
