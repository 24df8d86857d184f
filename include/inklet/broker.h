/** The backend's MQTT link (libmosquitto): one client, its own network thread, automatic
 *  reconnect with back-off, QoS 1 publishes tracked until the broker acknowledges them.
 *  Incoming `up` messages and acknowledgements go to the handlers main.c registers. */
#ifndef INKLET_BROKER_H
#define INKLET_BROKER_H
#include "inklet/status.h"
#include "inklet/topic.h"

#include <stdbool.h>
#include <stddef.h>

#define INK_BROKER_MAX_PAYLOAD (16 * 1024)

/** Where the link hands what comes in; both run on the broker's network thread and must not
 *  wait on anything (queue the work). */
struct ink_broker_handlers {
    /** A well-formed `up` message (topic parsed, payload ≤ INK_BROKER_MAX_PAYLOAD). */
    void (*message)(const char *thing, enum ink_up_kind kind, const void *payload, size_t len);
    /** The broker acknowledged a command published with ink_broker_publish_cmd. */
    void (*acked)(const char *command_id);
};

/** Connects asynchronously using ink_app.cfg; succeeds even while the broker is down. */
bool ink_broker_start(const struct ink_broker_handlers *handlers);
/** First step of shutdown: no new device messages (in a share group the others take them). */
void ink_broker_unsubscribe(void);
/** Last step: DISCONNECT, join the network thread, free. After it no callback runs; call it
 *  once nothing publishes any more (HTTP and ingest stopped). */
void ink_broker_stop(void);
/** True while the link is usable: connected and the subscription granted (SUBACK). */
bool ink_broker_connected(void);
/** True while a publish would be taken: connected, and fewer than the most publishes in
 *  flight that acknowledgements can be matched for. */
bool ink_broker_can_publish(void);
/** Publishes `payload` on the device's down/cmd topic with QoS 1; handlers.acked(command_id)
 *  runs when the broker acknowledges it. INK_UNAVAILABLE when the link is down, too many
 *  publishes are in flight, or the publish is refused. After a lost connection, what was in
 *  flight is never acknowledged (the caller publishes it again later). */
enum ink_status ink_broker_publish_cmd(const char *thing, const char *command_id,
                                       const char *payload, size_t len);

struct ink_broker_stats {
    unsigned long long received, published, acked, dropped, refused;
    unsigned in_flight;
};
void ink_broker_get_stats(struct ink_broker_stats *out);

#endif
