/* Broker acknowledgements (PUBACK) of published commands, written as `sent`. The broker's network
 * thread only appends the command id under a short lock; one writer thread with its own
 * connection marks them in batches. The buffer holds ACK_CAP ids and commands.c stops publishing
 * once ACK_BACKLOG_MAX of them wait (at most ACK_BACKLOG_MAX more can be in flight at the
 * broker), so an acknowledgement is never dropped: while the database is down they wait here. */
#include "devices_internal.h"
#include "inklet/alloc.h"
#include "inklet/device_link.h"
#include "inklet/ids.h"
#include "inklet/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ACK_CAP 65536
#define BATCH 500

typedef char ack_id[INK_UUID_STRLEN + 1];

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    ack_id *ring; /* ACK_CAP */
    unsigned head, count;
    bool running, stopping;
    pthread_t thread;
    struct ink_db *db;
    atomic_ullong overflow;
    atomic_ullong marked_sent; /* rows the batches moved from queued to sent */
} acks = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

unsigned ink_device_acks_backlog(void)
{
    pthread_mutex_lock(&acks.lock);
    unsigned n = acks.count;
    pthread_mutex_unlock(&acks.lock);
    return n;
}

void ink_device_ack(const char *command_id)
{
    pthread_mutex_lock(&acks.lock);
    if (acks.ring && acks.count < ACK_CAP) {
        memcpy(acks.ring[(acks.head + acks.count) % ACK_CAP], command_id, sizeof(ack_id) - 1);
        acks.ring[(acks.head + acks.count) % ACK_CAP][INK_UUID_STRLEN] = '\0';
        acks.count++;
        pthread_cond_signal(&acks.wake);
    } else {
        /* by design unreachable (see the top of the file); the command is redelivered anyway */
        atomic_fetch_add(&acks.overflow, 1);
    }
    pthread_mutex_unlock(&acks.lock);
}

static const struct ink_sql SQL_SENT = {
    "cmd_sent_batch", "UPDATE device_commands SET status = 'sent', sent_at = now()"
                      " WHERE id = ANY($1::uuid[]) AND status = 'queued'"};

/* Writes the first n ids of the ring; false when the database failed (they stay). */
static bool write_batch(unsigned n)
{
    /* "{id,id,...}": ids are UUIDs (checked when published), so no quoting is needed */
    char *arr = ink_malloc((size_t)n * (INK_UUID_STRLEN + 1) + 3);
    size_t len = 0;
    arr[len++] = '{';
    pthread_mutex_lock(&acks.lock);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            arr[len++] = ',';
        memcpy(arr + len, acks.ring[(acks.head + i) % ACK_CAP], INK_UUID_STRLEN);
        len += INK_UUID_STRLEN;
    }
    pthread_mutex_unlock(&acks.lock);
    arr[len++] = '}';
    arr[len] = '\0';
    enum ink_status st = ink_db_private_ready(acks.db);
    PGresult *r = NULL;
    if (st == INK_OK)
        st = ink_db_exec(acks.db, &SQL_SENT, 1, (const char *[]){arr}, &r);
    free(arr);
    if (st != INK_OK)
        return false;
    /* an ack of a redelivered command that is already `sent` moves nothing */
    atomic_fetch_add(&acks.marked_sent, strtoull(PQcmdTuples(r), NULL, 10));
    PQclear(r);
    pthread_mutex_lock(&acks.lock);
    acks.head = (acks.head + n) % ACK_CAP;
    acks.count -= n;
    pthread_mutex_unlock(&acks.lock);
    return true;
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&acks.lock);
    for (;;) {
        while (!acks.count && !acks.stopping)
            pthread_cond_wait(&acks.wake, &acks.lock);
        if (!acks.count && acks.stopping)
            break;
        unsigned n = acks.count < BATCH ? acks.count : BATCH;
        bool stopping = acks.stopping;
        pthread_mutex_unlock(&acks.lock);
        if (!write_batch(n)) {
            if (stopping)
                break; /* the database is gone at shutdown: the commands are redelivered */
            usleep(200 * 1000);
        }
        pthread_mutex_lock(&acks.lock);
    }
    pthread_mutex_unlock(&acks.lock);
    return NULL;
}

bool ink_device_acks_start(void)
{
    acks.ring = ink_calloc(ACK_CAP, sizeof *acks.ring);
    /* a lost `sent` costs a redelivery, not a message: skip the fsync wait */
    acks.db = ink_db_private_new("SET synchronous_commit = off");
    acks.stopping = false;
    acks.running = pthread_create(&acks.thread, NULL, writer_main, NULL) == 0;
    return acks.running;
}

void ink_device_acks_stop(void)
{
    if (!acks.running)
        return;
    pthread_mutex_lock(&acks.lock);
    acks.stopping = true;
    pthread_cond_signal(&acks.wake);
    pthread_mutex_unlock(&acks.lock);
    pthread_join(acks.thread, NULL);
    acks.running = false;
    unsigned left = acks.count;
    if (left)
        ink_warn("shutdown: %u broker acknowledgements were not written (the commands will be "
                 "published again)",
                 left);
    ink_db_private_free(acks.db);
    pthread_mutex_lock(&acks.lock);
    free(acks.ring);
    acks.ring = NULL;
    acks.count = acks.head = 0;
    pthread_mutex_unlock(&acks.lock);
}

void ink_devices_get_stats(struct ink_device_stats *out)
{
    ink_cmd_get_stats(out);
    out->marked_sent = atomic_load(&acks.marked_sent);
    out->acks_lost = atomic_load(&acks.overflow);
    out->acks_backlog = ink_device_acks_backlog();
}
