/** The device service, HTTP side (contract §4): what users do with their displays. The device
 *  side (what displays report over MQTT) is inklet/device_link.h. */
#ifndef INKLET_DEVICES_H
#define INKLET_DEVICES_H
#include "inklet/db.h"
#include "inklet/status.h"

#include <jansson.h>
#include <stddef.h>

#define INK_TEXT_MAX_CHARS 4000
#define INK_NICKNAME_MAX_CHARS 64

/* user_id is the authenticated caller everywhere. The device routes answer with JSON text
 * (`char **out`, malloc'd), the others with jansson values. */
enum ink_status ink_devices_list(const char *user_id, char **out);
/** The same in two halves, for GET /api/devices batched (inklet/batched.h): the statement ($1 the
 *  user id) and the list from its result (malloc'd JSON text). */
extern const struct ink_sql ink_devices_of_sql;
char *ink_devices_json(const PGresult *r);
/** ink_devices_of_sql for many users at once ($1 a uuid[]): every one's devices, a user's rows
 *  adjacent and in ink_devices_of_sql's order, the owner in column INK_DEVICES_OWNER_COLUMN;
 *  ink_devices_json_rows makes one user's list from their rows [first, first + count). */
extern const struct ink_sql ink_devices_of_many_sql;
#define INK_DEVICES_OWNER_COLUMN 6
char *ink_devices_json_rows(const PGresult *r, int first, int count);
/** INK_NOT_FOUND / INK_FORBIDDEN (exists, another owner). */
enum ink_status ink_device_get(const char *user_id, const char *device_id, char **out);
enum ink_status ink_device_bind_code(const char *user_id, const char *code, char **out,
                                     struct ink_err *err);
enum ink_status ink_device_bind_nfc(const char *user_id, const char *payload, char **out,
                                    struct ink_err *err);
/** Unbinds, cancels the device's undelivered commands and tells the display. */
enum ink_status ink_device_unbind(const char *user_id, const char *device_id);
/** nickname NULL clears it. */
enum ink_status ink_device_set_nickname(const char *user_id, const char *device_id,
                                        const char *nickname, char **out, struct ink_err *err);
/** Stores a text command (delivered whenever the display is reachable, for COMMAND_TTL) and
 *  publishes it at once when the link is up; the 202 object in *out. */
enum ink_status ink_device_send_text(const char *user_id, const char *device_id, const char *text,
                                     json_t **out, struct ink_err *err);
/** Cancels an undelivered command: *out the command, now `canceled`. INK_NOT_FOUND
 *  `command_not_found`; INK_CONFLICT `command_finished` (delivered, expired or canceled). */
enum ink_status ink_device_cancel_command(const char *user_id, const char *device_id,
                                          const char *command_id, json_t **out,
                                          struct ink_err *err);
enum ink_status ink_device_commands(const char *user_id, const char *device_id, int limit,
                                    json_t **out);
enum ink_status ink_device_state(const char *user_id, const char *device_id, json_t **out);
/** Account deletion hook: unbinds every device of user_id and tells each one. */
enum ink_status ink_devices_on_account_delete(struct ink_db *db, const char *user_id);
/** The periodic job: undelivered commands past their expiry become `expired`; the log keeps the
 *  last 200 commands per device and nothing older than 90 days. *count: rows changed. */
enum ink_status ink_devices_prune(long long *count);

/** Counts Unicode code points of valid UTF-8. */
size_t ink_utf8_chars(const char *s);

/* The statements bench/limits.sh measures as this route's database ceiling
 * (bench/sql/commands.sql); tests/unit/test_bench_sql.c checks the file still holds this text. */
/** One device by id ($1), DEVICE_COLUMNS. */
extern const struct ink_sql ink_device_by_id_sql;
/** A new command ($1 id, $2 device, $3 kind, $4 payload, $5 ttl s, $6 published now). */
extern const struct ink_sql ink_cmd_insert_sql;

#endif
