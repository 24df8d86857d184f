/** The device service, device side (contract §5): what displays report, and the one way out to
 *  them. The service knows nothing of MQTT: main.c wires the outbound port to the broker and
 *  hands it the broker's inbound messages and acknowledgements. */
#ifndef INKLET_DEVICE_LINK_H
#define INKLET_DEVICE_LINK_H
#include "inklet/db.h"
#include "inklet/status.h"

#include <stdbool.h>
#include <stddef.h>

/** The way out to the displays. */
struct ink_device_outbound {
    /** True while a publish can be taken (connected, room for one more in flight). */
    bool (*ready)(void);
    /** Publishes `payload` on the display's command topic (QoS 1). Its acknowledgement comes
     *  back through ink_device_ack(command_id). INK_UNAVAILABLE when refused. */
    enum ink_status (*publish)(const char *thing, const char *command_id, const char *payload,
                               size_t len);
};

/** Installs the port (before the first request; NULL: nothing is ever published). */
void ink_devices_set_outbound(const struct ink_device_outbound *out);

/* inbound, on an ingest worker's connection; INK_INVALID: malformed or refused (dropped) */
enum ink_status ink_device_heartbeat(struct ink_db *db, const char *thing, const char *payload,
                                     size_t len);
enum ink_status ink_device_report_state(struct ink_db *db, const char *thing, const char *payload,
                                        size_t len);
enum ink_status ink_device_request_claim(struct ink_db *db, const char *thing, const char *payload,
                                         size_t len);

/** The broker acknowledged the publish of `command_id`. Never blocks on anything but a short
 *  lock: callable from the broker's network thread. Acknowledgements are kept until written
 *  (`sent`); the command log stops publishing before their buffer could fill, so none is lost. */
void ink_device_ack(const char *command_id);
struct ink_histogram;
struct ink_device_stats {
    unsigned long long redelivered;       /* commands published again on a heartbeat */
    unsigned long long enqueued;          /* commands stored (every kind, system ones too) */
    unsigned long long delivered;         /* commands marked delivered by a display's report */
    unsigned long long canceled;          /* commands canceled by DELETE .../commands/{id} */
    unsigned long long expired;           /* commands that reached COMMAND_TTL undelivered */
    const struct ink_histogram *delivery; /* creation to delivery, seconds */
    unsigned long long marked_sent;       /* commands acknowledgements moved to sent */
    unsigned long long acks_lost;         /* by design 0 */
    unsigned acks_backlog;                /* acknowledgements waiting to be written */
};
void ink_devices_get_stats(struct ink_device_stats *out);

/** Starts / stops the writer of acknowledgements (stop writes what is left, bounded). */
bool ink_device_acks_start(void);
void ink_device_acks_stop(void);

/* The statements bench/limits.sh measures as this route's database ceiling
 * (bench/sql/heartbeat.sql); tests/unit/test_bench_sql.c checks the file still holds this text. */
/** The heartbeat upsert ($1 new id, $2 hw id, $3 thing, $4 firmware, $5 battery). */
extern const struct ink_sql ink_device_heartbeat_sql;

#endif
