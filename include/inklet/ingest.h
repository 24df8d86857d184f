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
void ink_ingest_stop(void);
/** Queues a device message (copied). False (and counted as dropped) when the queue is full. */
bool ink_ingest_submit(const char *thing, enum ink_up_kind kind, const void *payload, size_t len);
/** Queues "the broker acknowledged command_id". */
void ink_ingest_command_acked(const char *command_id);

#endif
