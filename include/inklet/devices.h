/** The device service: what users do with their displays over HTTP (§4) and what the displays
 *  report over MQTT (§5). SQL for devices and their command log lives here. */
#ifndef INKLET_DEVICES_H
#define INKLET_DEVICES_H
#include "inklet/auth.h"
#include "inklet/db.h"

#include <jansson.h>

#define INK_TEXT_MAX_CHARS 4000
#define INK_NICKNAME_MAX_CHARS 64

/* ---- HTTP side (user_id is the authenticated caller) ---- */
enum ink_status ink_devices_list(const char *user_id, json_t **out);
/** INK_NOT_FOUND / INK_FORBIDDEN (exists, another owner). */
enum ink_status ink_device_get(const char *user_id, const char *device_id, json_t **out);
enum ink_status ink_device_bind_code(const char *user_id, const char *code, json_t **out,
                                     struct ink_err *err);
enum ink_status ink_device_bind_nfc(const char *user_id, const char *payload, json_t **out,
                                    struct ink_err *err);
enum ink_status ink_device_unbind(const char *user_id, const char *device_id);
/** nickname NULL clears it. */
enum ink_status ink_device_set_nickname(const char *user_id, const char *device_id,
                                        const char *nickname, json_t **out, struct ink_err *err);
/** Stores and publishes a text command; 202 object in *out. On INK_UNAVAILABLE the command is
 *  stored as failed. */
enum ink_status ink_device_send_text(const char *user_id, const char *device_id, const char *text,
                                     json_t **out, struct ink_err *err);
enum ink_status ink_device_commands(const char *user_id, const char *device_id, int limit,
                                    json_t **out);
enum ink_status ink_device_state(const char *user_id, const char *device_id, json_t **out);

/** Account deletion hook: unbinds every device of user_id and tells each one. */
enum ink_status ink_devices_on_account_delete(struct ink_db *db, const char *user_id);

/* ---- device side (db is the ingest worker's connection) ---- */
enum ink_status ink_device_heartbeat(struct ink_db *db, const char *thing, const char *payload,
                                     size_t len);
enum ink_status ink_device_report_state(struct ink_db *db, const char *thing, const char *payload,
                                        size_t len);
enum ink_status ink_device_request_claim(struct ink_db *db, const char *thing, const char *payload,
                                         size_t len);
enum ink_status ink_device_command_sent(struct ink_db *db, const char *command_id);

/** Counts Unicode code points of valid UTF-8. */
size_t ink_utf8_chars(const char *s);

#endif
