/* What the device service's files share: the device row and its JSON, ownership checks, and
 * the command log's entry points for binding and the device link. */
#ifndef INKLET_DEVICES_INTERNAL_H
#define INKLET_DEVICES_INTERNAL_H
#include "inklet/db.h"
#include "inklet/device_link.h"
#include "inklet/devices.h"
#include "inklet/status.h"

#include <jansson.h>
#include <stdbool.h>

#define DEVICE_COLUMNS                                                                             \
    "d.id, d.hw_id, d.thing_name, d.firmware, d.battery,"                                          \
    " extract(epoch FROM d.last_seen_at)::bigint, d.owner_id,"                                     \
    " extract(epoch FROM d.bound_at)::bigint, d.claim_code, d.state,"                              \
    " extract(epoch FROM d.state_updated_at)::bigint, d.nickname,"                                 \
    " COALESCE(d.last_seen_at > now() - interval '90 seconds', false)"

enum {
    C_ID,
    C_HW,
    C_THING,
    C_FW,
    C_BATT,
    C_SEEN,
    C_OWNER,
    C_BOUND,
    C_CODE,
    C_STATE,
    C_STATE_AT,
    C_NICK,
    C_ONLINE
};

/* ---- device_row.c ---- */

/** The contract's device object from a DEVICE_COLUMNS row, as malloc'd JSON text. */
char *ink_device_json(const PGresult *r, int row);
/* ink_devices_json (every row as a JSON array of device objects) is in inklet/devices.h */
/** Loads a device the caller owns into *res (caller PQclears). INK_NOT_FOUND / INK_FORBIDDEN. */
enum ink_status ink_device_load_owned(struct ink_db *db, const char *user_id, const char *device_id,
                                      PGresult **res);
/** ink_device_load_owned on a connection of its own. */
enum ink_status ink_device_fetch_owned(const char *user_id, const char *device_id, PGresult **res);

/* ---- commands.c: the durable command log ---- */

/** Stores a command for the device (kind + the kind-specific `fields`, stolen) that stays
 *  deliverable for `ttl_s` seconds, and publishes it at once when the link can take it, unless
 *  `in_tx` (the caller's transaction may still roll back: it goes at the next heartbeat). *out
 *  (may be NULL) receives the command object. Only a database failure fails it. */
enum ink_status ink_cmd_enqueue(struct ink_db *db, const char *device_id, const char *thing,
                                const char *kind, json_t *fields, unsigned ttl_s, bool in_tx,
                                json_t **out);
/** Publishes again, oldest first, every undelivered command of the device whose last publish
 *  is more than 5 s old (a heartbeat: the display is awake). Claims them atomically, so two
 *  instances never publish one command for one heartbeat. */
enum ink_status ink_cmd_redeliver(struct ink_db *db, const char *device_id, const char *thing);
/** The device reported `command_id` as its last command: it and every earlier published
 *  undelivered command of the device are delivered. */
enum ink_status ink_cmd_delivered(struct ink_db *db, const char *device_id, const char *command_id);
/** Cancels every undelivered command of the device (unbind: the next owner never sees them). */
enum ink_status ink_cmd_cancel_undelivered(struct ink_db *db, const char *device_id);

/** The command log's counters (the part of ink_devices_get_stats kept in commands.c). */
void ink_cmd_get_stats(struct ink_device_stats *out);

/* ---- acks.c ---- */

/** How many broker acknowledgements wait to be written. */
unsigned ink_device_acks_backlog(void);

#endif
