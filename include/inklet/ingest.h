/** Processing of device messages off the MQTT thread: a few workers, each with its own database
 *  connection and bounded queue; messages of one device always go to the same worker so they are
 *  handled in order. */
#ifndef INKLET_INGEST_H
#define INKLET_INGEST_H
#include "inklet/topic.h"

#include <stdbool.h>
#include <stddef.h>

#define INK_INGEST_MAX_PAYLOAD (16 * 1024)

bool ink_ingest_start(unsigned workers, unsigned queue_capacity);
/** Stops taking jobs, processes what is queued for up to `drain_ms` (the rest is dropped and
 *  counted) and joins the workers. The queues stay allocated, so a broker callback that still
 *  runs is refused rather than touching freed memory: free them with ink_ingest_free() once
 *  the broker's network thread is gone. */
void ink_ingest_stop(unsigned drain_ms);
void ink_ingest_free(void);
/** Queues a device message (copied). False (and counted as dropped) when the queue is full. */
bool ink_ingest_submit(const char *thing, enum ink_up_kind kind, const void *payload, size_t len);
/** Queues "the broker acknowledged command_id". */
void ink_ingest_command_acked(const char *command_id);

#endif
