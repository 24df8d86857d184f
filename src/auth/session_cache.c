#include "session_cache.h"

#include "inklet/ids.h"
#include "inklet/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#define SLOTS 4096

struct entry {
    char sid[INK_UUID_STRLEN + 1];
    char uid[INK_UUID_STRLEN + 1];
    int64_t checked_ms;
};

static struct entry entries[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned slot_of(const char *sid)
{
    uint32_t h = 2166136261u;
    for (; *sid; sid++)
        h = (h ^ (unsigned char)*sid) * 16777619u;
    return h % SLOTS;
}

bool session_cache_lookup(const char *sid, const char *uid)
{
    struct entry *e = &entries[slot_of(sid)];
    int64_t now = ink_now_mono_ms();
    pthread_mutex_lock(&lock);
    bool hit = strcmp(e->sid, sid) == 0 && strcmp(e->uid, uid) == 0 &&
               now - e->checked_ms < SESSION_CACHE_TTL_MS;
    pthread_mutex_unlock(&lock);
    return hit;
}

void session_cache_store(const char *sid, const char *uid)
{
    struct entry *e = &entries[slot_of(sid)];
    pthread_mutex_lock(&lock);
    snprintf(e->sid, sizeof e->sid, "%s", sid);
    snprintf(e->uid, sizeof e->uid, "%s", uid);
    e->checked_ms = ink_now_mono_ms();
    pthread_mutex_unlock(&lock);
}

void session_cache_forget(const char *sid)
{
    struct entry *e = &entries[slot_of(sid)];
    pthread_mutex_lock(&lock);
    if (strcmp(e->sid, sid) == 0)
        e->sid[0] = '\0';
    pthread_mutex_unlock(&lock);
}

void session_cache_forget_user(const char *uid)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < SLOTS; i++)
        if (strcmp(entries[i].uid, uid) == 0)
            entries[i].sid[0] = '\0';
    pthread_mutex_unlock(&lock);
}
