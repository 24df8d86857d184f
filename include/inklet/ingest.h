/** Processing of device messages off the MQTT thread: a few workers, each with its own database
 *  connection and bounded queue; messages of one device always go to the same worker so they are
 *  handled in order. */
#ifndef INKLET_INGEST_H
#define INKLET_INGEST_H
#include "inklet/topic.h"

#include <stdbool.h>
#include <stddef.h>

#include "inklet/db.h"
#include "inklet/status.h"

/** Handles one message on the worker's own connection. INK_INVALID / INK_NOT_FOUND: dropped
 *  (counted); INK_RATE_LIMITED: refused by a per-device limit (counted); INK_UNAVAILABLE: the
 *  database failed, retried a few times. */
typedef enum ink_status (*ink_ingest_handler)(struct ink_db *db, const char *thing,
                                              enum ink_up_kind kind, const char *payload,
                                              size_t len);

bool ink_ingest_start(unsigned workers, unsigned queue_capacity, ink_ingest_handler handler);
/** Stops taking jobs, processes what is queued for up to `drain_ms` (the rest is dropped and
 *  counted) and joins the workers. The queues stay allocated, so a broker callback that still
 *  runs is refused rather than touching freed memory: free them with ink_ingest_free() once
 *  the broker's network thread is gone. */
void ink_ingest_stop(unsigned drain_ms);
void ink_ingest_free(void);
/** Queues a device message (copied). False (and counted as dropped) when the queue is full. */
bool ink_ingest_submit(const char *thing, enum ink_up_kind kind, const void *payload, size_t len);
struct ink_ingest_stats {
    unsigned long long processed, dropped, limited;
};
void ink_ingest_get_stats(struct ink_ingest_stats *out);

#endif
