/** The backend's MQTT link (libmosquitto): one client, its own network thread, automatic
 *  reconnect with back-off, QoS 1 publishes tracked until the broker acknowledges them.
 *  Incoming `up` messages are handed to the ingest workers (inklet/ingest.h). */
#ifndef INKLET_BROKER_H
#define INKLET_BROKER_H
#include "inklet/status.h"

#include <stdbool.h>
#include <stddef.h>

/** Connects asynchronously using ink_app.cfg; succeeds even while the broker is down. */
bool ink_broker_start(void);
/** First step of shutdown: no new device messages (in a share group the others take them). */
void ink_broker_unsubscribe(void);
/** Last step: DISCONNECT, join the network thread, free. After it no callback runs; call it
 *  once nothing publishes any more (HTTP and ingest stopped). */
void ink_broker_stop(void);
/** True while the link is usable: connected and the subscription granted (SUBACK). */
bool ink_broker_connected(void);

/** Publishes `payload` on the device's down/cmd topic with QoS 1. When the broker acknowledges
 *  it, ink_ingest_command_acked(command_id) runs on an ingest worker. INK_UNAVAILABLE when the
 *  link is down or the publish is refused. */
enum ink_status ink_broker_publish_cmd(const char *thing, const char *command_id,
                                       const char *payload, size_t len);

struct ink_broker_stats {
    unsigned long long received, published, acked, dropped, processed;
};
void ink_broker_get_stats(struct ink_broker_stats *out);
/** Counts a dropped (malformed, oversized, unmatched) message. */
void ink_broker_count_drop(void);
/** Counts a device message fully handled by an ingest worker. */
void ink_broker_count_processed(void);

#endif
