#include "inklet/devices.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/broker.h"
#include "inklet/claimcode.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/nfc.h"
#include "inklet/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAIM_CODE_ATTEMPTS 8

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

size_t ink_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static json_t *device_json(const PGresult *r, int row)
{
    json_t *battery =
        PQgetisnull(r, row, C_BATT) ? json_null() : json_integer(ink_db_ll(r, row, C_BATT));
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id",
                     PQgetvalue(r, row, C_ID), "hwId", PQgetvalue(r, row, C_HW), "thingName",
                     PQgetvalue(r, row, C_THING), "firmware",
                     ink_json_str_or_null(ink_db_str(r, row, C_FW)), "battery", battery, "online",
                     PQgetvalue(r, row, C_ONLINE)[0] == 't', "lastSeenAt",
                     ink_json_time(ink_db_ll(r, row, C_SEEN)), "ownerId",
                     ink_json_str_or_null(ink_db_str(r, row, C_OWNER)), "boundAt",
                     ink_json_time(ink_db_ll(r, row, C_BOUND)), "claimCode",
                     ink_json_str_or_null(ink_db_str(r, row, C_CODE)), "state",
                     ink_json_str_or_null(ink_db_str(r, row, C_STATE)), "stateUpdatedAt",
                     ink_json_time(ink_db_ll(r, row, C_STATE_AT)), "nickname",
                     ink_json_str_or_null(ink_db_str(r, row, C_NICK)));
}

/* ---- commands ----------------------------------------------------------------------------- */

static const struct ink_sql SQL_CMD_INSERT = {
    "cmd_insert", "INSERT INTO device_commands (id, device_id, kind, payload, status)"
                  " VALUES ($1, $2, $3, $4, $5) RETURNING extract(epoch FROM created_at)::bigint"};

static const struct ink_sql SQL_CMD_FAILED = {
    "cmd_failed", "UPDATE device_commands SET status = 'failed' WHERE id = $1"};

/* Logs and publishes one command. `fields` (stolen) holds the kind-specific members. When `out`
 * is given it receives the command object. INK_UNAVAILABLE: stored as failed. */
static enum ink_status send_command(struct ink_db *db, const char *device_id, const char *thing,
                                    const char *kind, json_t *fields, json_t **out)
{
    char id[INK_UUID_STRLEN + 1];
    ink_uuid_v7(id);
    size_t plen, mlen;
    char *payload = ink_json_dump(fields, &plen);
    json_t *msg = json_pack("{s:s,s:s}", "kind", kind, "id", id);
    json_object_update(msg, fields);
    char *text = ink_json_dump(msg, &mlen);
    json_decref(msg);

    bool up = ink_broker_connected();
    PGresult *r = NULL;
    enum ink_status st =
        ink_db_exec(db, &SQL_CMD_INSERT, 5,
                    (const char *[]){id, device_id, kind, payload, up ? "queued" : "failed"}, &r);
    if (st != INK_OK)
        goto out;
    long long created = ink_db_ll(r, 0, 0);
    const char *status = "queued";
    if (!up || ink_broker_publish_cmd(thing, id, text, mlen) != INK_OK) {
        if (up)
            ink_db_exec(db, &SQL_CMD_FAILED, 1, (const char *[]){id}, NULL);
        status = "failed";
        st = INK_UNAVAILABLE;
    }
    if (out)
        *out = json_pack("{s:s,s:s,s:s,s:O,s:s,s:o,s:n,s:n}", "id", id, "deviceId", device_id,
                         "kind", kind, "payload", fields, "status", status, "createdAt",
                         ink_json_time(created), "sentAt", "deliveredAt");
out:
    PQclear(r);
    json_decref(fields);
    free(payload);
    free(text);
    return st;
}

static const struct ink_sql SQL_CMD_SENT = {
    "cmd_sent", "UPDATE device_commands SET status = 'sent', sent_at = now()"
                " WHERE id = $1 AND status = 'queued'"};

enum ink_status ink_device_command_sent(struct ink_db *db, const char *command_id)
{
    return ink_db_exec(db, &SQL_CMD_SENT, 1, (const char *[]){command_id}, NULL);
}

/* ---- ownership ---------------------------------------------------------------------------- */

static const struct ink_sql SQL_DEVICE_BY_ID = {"device_by_id", "SELECT " DEVICE_COLUMNS
                                                                " FROM devices d WHERE d.id = $1"};

/* Loads a device the caller owns. INK_NOT_FOUND / INK_FORBIDDEN otherwise. *res stays owned by
 * the caller on INK_OK. */
static enum ink_status load_owned(struct ink_db *db, const char *user_id, const char *device_id,
                                  PGresult **res)
{
    *res = NULL;
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_DEVICE_BY_ID, 1, (const char *[]){device_id}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return INK_NOT_FOUND;
    }
    const char *owner = ink_db_str(r, 0, C_OWNER);
    if (!owner || strcmp(owner, user_id) != 0) {
        PQclear(r);
        return INK_FORBIDDEN;
    }
    *res = r;
    return INK_OK;
}

/* load_owned on a connection of its own. */
static enum ink_status fetch_owned(const char *user_id, const char *device_id, PGresult **res)
{
    *res = NULL;
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    st = load_owned(db, user_id, device_id, res);
    ink_db_release(db);
    return st;
}

enum ink_status ink_device_get(const char *user_id, const char *device_id, json_t **out)
{
    PGresult *r;
    enum ink_status st = fetch_owned(user_id, device_id, &r);
    if (st == INK_OK)
        *out = device_json(r, 0);
    PQclear(r);
    return st;
}

static const struct ink_sql SQL_DEVICES_OF = {"devices_of", "SELECT " DEVICE_COLUMNS
                                                            " FROM devices d WHERE d.owner_id = $1"
                                                            " ORDER BY d.bound_at DESC, d.id DESC"};

enum ink_status ink_devices_list(const char *user_id, json_t **out)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_DEVICES_OF, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(arr, device_json(r, i));
    PQclear(r);
    *out = arr;
    return INK_OK;
}

/* ---- binding ------------------------------------------------------------------------------ */

static const struct ink_sql SQL_BIND_CODE = {
    "device_bind_code", "UPDATE devices d SET owner_id = $1, bound_at = now(), claim_code = NULL,"
                        " claim_expires_at = NULL"
                        " WHERE claim_code = $2 AND claim_expires_at > now() AND owner_id IS NULL"
                        " RETURNING " DEVICE_COLUMNS};

static const struct ink_sql SQL_CODE_STATUS = {
    "device_code_status", "SELECT claim_expires_at <= now() FROM devices WHERE claim_code = $1"};

static enum ink_status bound_reply(struct ink_db *db, PGresult *r, json_t **out)
{
    /* tell the display; the binding stands even if the broker is down right now */
    send_command(db, PQgetvalue(r, 0, C_ID), PQgetvalue(r, 0, C_THING), "bound", json_object(),
                 NULL);
    *out = device_json(r, 0);
    return INK_OK;
}

/* Runs the conditional bind UPDATE (`bind`, params user and key). On a match the display is told
 * and *out is the device. On a miss, *miss receives `lookup` (param key) so the caller can say
 * why; the caller PQclears it. */
static enum ink_status try_bind(const char *user_id, const char *key, const struct ink_sql *bind,
                                const struct ink_sql *lookup, json_t **out, PGresult **miss)
{
    *miss = NULL;
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r = NULL;
    st = ink_db_exec(db, bind, 2, (const char *[]){user_id, key}, &r);
    if (st == INK_OK && PQntuples(r) == 1)
        st = bound_reply(db, r, out);
    else if (st == INK_OK)
        st = ink_db_exec(db, lookup, 1, (const char *[]){key}, miss);
    PQclear(r);
    ink_db_release(db);
    return st;
}

enum ink_status ink_device_bind_code(const char *user_id, const char *code_in, json_t **out,
                                     struct ink_err *err)
{
    char code[INK_CLAIM_CODE_LEN + 1];
    if (!ink_claim_code_normalize(code_in, code)) {
        *err = (struct ink_err){"invalid_claim_code",
                                "A claim code is 6 characters from the code alphabet."};
        return INK_INVALID;
    }
    /* one conditional UPDATE: of several users racing for a code exactly one matches */
    PGresult *miss;
    enum ink_status st = try_bind(user_id, code, &SQL_BIND_CODE, &SQL_CODE_STATUS, out, &miss);
    if (st == INK_OK && miss) {
        if (PQntuples(miss) == 0) {
            *err = (struct ink_err){"claim_code_not_found", "No device shows that code."};
            st = INK_NOT_FOUND;
        } else if (PQgetvalue(miss, 0, 0)[0] == 't') {
            *err = (struct ink_err){"claim_code_expired",
                                    "That code has expired; the display will show a new one."};
            st = INK_GONE;
        } else {
            *err = (struct ink_err){"device_already_bound", "That device is already bound."};
            st = INK_CONFLICT;
        }
    }
    PQclear(miss);
    return st;
}

static const struct ink_sql SQL_BIND_HW = {
    "device_bind_hw",
    "UPDATE devices d SET owner_id = $1, bound_at = now(), claim_code = NULL,"
    " claim_expires_at = NULL WHERE hw_id = $2 AND owner_id IS NULL RETURNING " DEVICE_COLUMNS};

static const struct ink_sql SQL_DEVICE_BY_HW = {
    "device_by_hw", "SELECT " DEVICE_COLUMNS " FROM devices d WHERE d.hw_id = $1"};

enum ink_status ink_device_bind_nfc(const char *user_id, const char *payload, json_t **out,
                                    struct ink_err *err)
{
    char hw[INK_UUID_STRLEN + 1], sig[INK_NFC_SIG_LEN + 1];
    if (ink_nfc_parse(payload, hw, sig) != INK_OK) {
        *err = (struct ink_err){"invalid_nfc_payload",
                                "The NFC payload is not inklet:1:{hwId}:{signature}."};
        return INK_INVALID;
    }
    unsigned char key[32];
    ink_hex_decode(ink_app.cfg.factory_secret, 64, key, sizeof key);
    if (!ink_nfc_verify(key, hw, sig)) {
        *err = (struct ink_err){"invalid_nfc_signature", "The NFC signature is not valid."};
        return INK_FORBIDDEN;
    }
    PGresult *miss;
    enum ink_status st = try_bind(user_id, hw, &SQL_BIND_HW, &SQL_DEVICE_BY_HW, out, &miss);
    if (st == INK_OK && miss) {
        const char *owner = PQntuples(miss) ? ink_db_str(miss, 0, C_OWNER) : NULL;
        if (PQntuples(miss) == 0) {
            *err = (struct ink_err){"device_not_found",
                                    "That device has not connected yet; power it on first."};
            st = INK_NOT_FOUND;
        } else if (owner && strcmp(owner, user_id) == 0) {
            *out = device_json(miss, 0); /* already yours: idempotent */
        } else {
            *err = (struct ink_err){"device_already_bound",
                                    "That device is bound to another account."};
            st = INK_CONFLICT;
        }
    }
    PQclear(miss);
    return st;
}

static const struct ink_sql SQL_UNBIND = {
    "device_unbind",
    "UPDATE devices SET owner_id = NULL, bound_at = NULL, nickname = NULL, state = NULL,"
    " state_updated_at = NULL WHERE id = $1 AND owner_id = $2 RETURNING id, thing_name"};

enum ink_status ink_device_unbind(const char *user_id, const char *device_id)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r = NULL;
    st = ink_db_exec(db, &SQL_UNBIND, 2, (const char *[]){device_id, user_id}, &r);
    if (st == INK_OK && PQntuples(r) == 1) {
        send_command(db, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), "unbound", json_object(), NULL);
    } else if (st == INK_OK) {
        PGresult *o;
        st = load_owned(db, user_id, device_id, &o);
        PQclear(o);
        if (st == INK_OK) /* bound to the caller after all: lost a race with a re-bind */
            st = INK_CONFLICT;
    }
    PQclear(r);
    ink_db_release(db);
    return st;
}

static const struct ink_sql SQL_UNBIND_ALL = {
    "device_unbind_all",
    "UPDATE devices SET owner_id = NULL, bound_at = NULL, nickname = NULL, state = NULL,"
    " state_updated_at = NULL WHERE owner_id = $1 RETURNING id, thing_name"};

enum ink_status ink_devices_on_account_delete(struct ink_db *db, const char *user_id)
{
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_UNBIND_ALL, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK) {
        ink_warn("could not unbind the devices of a deleted account");
        return st;
    }
    for (int i = 0; i < PQntuples(r); i++)
        send_command(db, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), "unbound", json_object(), NULL);
    PQclear(r);
    return INK_OK;
}

/* ---- nickname, commands, state ------------------------------------------------------------ */

static const struct ink_sql SQL_NICKNAME = {
    "device_nickname",
    "UPDATE devices d SET nickname = $3 WHERE id = $1 AND owner_id = $2 RETURNING " DEVICE_COLUMNS};

enum ink_status ink_device_set_nickname(const char *user_id, const char *device_id,
                                        const char *nickname, json_t **out, struct ink_err *err)
{
    if (nickname) {
        size_t n = ink_utf8_chars(nickname);
        bool blank = strspn(nickname, " \t\r\n") == strlen(nickname);
        if (n < 1 || n > INK_NICKNAME_MAX_CHARS || blank) {
            *err = (struct ink_err){"invalid_nickname",
                                    "A nickname is 1-64 characters, or null to clear it."};
            return INK_INVALID;
        }
    }
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r = NULL;
    st = ink_db_exec(db, &SQL_NICKNAME, 3, (const char *[]){device_id, user_id, nickname}, &r);
    if (st == INK_OK && PQntuples(r) == 1) {
        *out = device_json(r, 0);
    } else if (st == INK_OK) {
        PGresult *o;
        st = load_owned(db, user_id, device_id, &o);
        PQclear(o);
        if (st == INK_OK)
            st = INK_CONFLICT;
    }
    PQclear(r);
    ink_db_release(db);
    return st;
}

enum ink_status ink_device_send_text(const char *user_id, const char *device_id, const char *text,
                                     json_t **out, struct ink_err *err)
{
    size_t n = ink_utf8_chars(text);
    if (n < 1 || n > INK_TEXT_MAX_CHARS || strspn(text, " \t\r\n\v\f") == strlen(text)) {
        *err = (struct ink_err){"invalid_command",
                                "text must be 1-4000 characters and not only white space."};
        return INK_INVALID;
    }
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r;
    st = load_owned(db, user_id, device_id, &r);
    if (st == INK_OK) {
        st = send_command(db, device_id, PQgetvalue(r, 0, C_THING), "text",
                          json_pack("{s:s}", "text", text), out);
        if (st == INK_UNAVAILABLE) {
            *err = (struct ink_err){"broker_unavailable",
                                    "The device network is unavailable; the command was not sent."};
            json_decref(*out);
            *out = NULL;
        }
    }
    PQclear(r);
    ink_db_release(db);
    return st;
}

static const struct ink_sql SQL_COMMANDS = {
    "device_commands",
    "SELECT c.id, c.kind, c.payload, c.status, extract(epoch FROM c.created_at)::bigint,"
    " extract(epoch FROM c.sent_at)::bigint, extract(epoch FROM c.delivered_at)::bigint"
    " FROM device_commands c JOIN devices d ON d.id = c.device_id"
    " WHERE c.device_id = $1 AND c.created_at >= d.bound_at"
    " ORDER BY c.created_at DESC, c.id DESC LIMIT $2::int"};

enum ink_status ink_device_commands(const char *user_id, const char *device_id, int limit,
                                    json_t **out)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r, *o;
    st = load_owned(db, user_id, device_id, &o);
    PQclear(o);
    if (st != INK_OK) {
        ink_db_release(db);
        return st;
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    st = ink_db_exec(db, &SQL_COMMANDS, 2, (const char *[]){device_id, lim}, &r);
    ink_db_release(db);
    if (st != INK_OK)
        return st;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *payload = json_loads(PQgetvalue(r, i, 2), 0, NULL);
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o}", "id", PQgetvalue(r, i, 0),
                           "deviceId", device_id, "kind", PQgetvalue(r, i, 1), "payload",
                           payload ? payload : json_object(), "status", PQgetvalue(r, i, 3),
                           "createdAt", ink_json_time(ink_db_ll(r, i, 4)), "sentAt",
                           ink_json_time(ink_db_ll(r, i, 5)), "deliveredAt",
                           ink_json_time(ink_db_ll(r, i, 6))));
    }
    PQclear(r);
    *out = arr;
    return INK_OK;
}

enum ink_status ink_device_state(const char *user_id, const char *device_id, json_t **out)
{
    PGresult *r;
    enum ink_status st = fetch_owned(user_id, device_id, &r);
    if (st != INK_OK)
        return st;
    const char *text = ink_db_str(r, 0, C_STATE);
    json_t *state = text ? json_loads(text, 0, NULL) : NULL;
    *out = json_pack(
        "{s:s,s:o,s:o,s:b,s:o}", "deviceId", device_id, "state", state ? state : json_null(),
        "stateUpdatedAt", ink_json_time(ink_db_ll(r, 0, C_STATE_AT)), "online",
        PQgetvalue(r, 0, C_ONLINE)[0] == 't', "lastSeenAt", ink_json_time(ink_db_ll(r, 0, C_SEEN)));
    PQclear(r);
    return INK_OK;
}

/* ---- device side -------------------------------------------------------------------------- */

static const struct ink_sql SQL_HEARTBEAT = {
    "device_heartbeat",
    "INSERT INTO devices (id, hw_id, thing_name, firmware, battery, last_seen_at)"
    " VALUES ($1, $2, $3, $4, $5, now())"
    " ON CONFLICT (thing_name) DO UPDATE SET"
    "  firmware = COALESCE(EXCLUDED.firmware, devices.firmware),"
    "  battery = COALESCE(EXCLUDED.battery, devices.battery), last_seen_at = now()"
    "  WHERE devices.hw_id = EXCLUDED.hw_id"
    " RETURNING id, owner_id IS NOT NULL,"
    "  claim_code IS NOT NULL AND claim_expires_at > now(), claim_code,"
    "  extract(epoch FROM claim_expires_at)::bigint"};

static const struct ink_sql SQL_ISSUE_CODE = {
    "device_issue_code",
    "UPDATE devices SET claim_code = $2,"
    " claim_expires_at = now() + make_interval(secs => $3::int)"
    " WHERE id = $1 AND owner_id IS NULL AND (claim_code IS NULL OR claim_expires_at <= now())"
    " RETURNING extract(epoch FROM claim_expires_at)::bigint"};

/* The fields of a heartbeat or request_claim. Wrong types make the message malformed. */
static enum ink_status parse_device_payload(const char *payload, size_t len, json_t **root,
                                            const char **hw, const char **fw, const char **battery)
{
    const char *why;
    if (ink_json_parse_object(payload, len, root, &why) != INK_OK)
        return INK_INVALID;
    if (ink_json_opt_string(*root, "hwId", hw) != INK_OK || !*hw || !ink_uuid_valid(*hw))
        goto bad;
    if (fw && (ink_json_opt_string(*root, "firmware", fw) != INK_OK ||
               (*fw && (strlen(*fw) > 64 || !**fw))))
        goto bad;
    if (battery) {
        static _Thread_local char buf[8];
        json_t *b = json_object_get(*root, "battery");
        *battery = NULL;
        if (b && !json_is_null(b) && !json_is_number(b))
            goto bad;
        /* out-of-range or fractional levels are ignored, not fatal */
        if (json_is_integer(b) && json_integer_value(b) >= 0 && json_integer_value(b) <= 100) {
            snprintf(buf, sizeof buf, "%d", (int)json_integer_value(b));
            *battery = buf;
        }
    }
    return INK_OK;
bad:
    json_decref(*root);
    *root = NULL;
    return INK_INVALID;
}

static enum ink_status publish_code(struct ink_db *db, const char *device_id, const char *thing,
                                    const char *code, long long expires)
{
    char at[21];
    ink_time_rfc3339((time_t)expires, at);
    return send_command(db, device_id, thing, "claim_code",
                        json_pack("{s:s,s:s}", "code", code, "expiresAt", at), NULL);
}

/* Gives an unbound device a fresh code, retrying on the rare collision with another code. */
static enum ink_status issue_code(struct ink_db *db, const char *device_id, const char *thing)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", ink_app.cfg.claim_code_ttl);
    for (int attempt = 0; attempt < CLAIM_CODE_ATTEMPTS; attempt++) {
        char code[INK_CLAIM_CODE_LEN + 1];
        ink_claim_code_new(code);
        PGresult *r;
        enum ink_status st =
            ink_db_exec(db, &SQL_ISSUE_CODE, 3, (const char *[]){device_id, code, ttl}, &r);
        if (st == INK_CONFLICT)
            continue;
        if (st != INK_OK)
            return st;
        bool issued = PQntuples(r) == 1;
        long long expires = issued ? ink_db_ll(r, 0, 0) : 0;
        PQclear(r);
        /* not issued: bound meanwhile, or another worker gave it a live code */
        return issued ? publish_code(db, device_id, thing, code, expires) : INK_OK;
    }
    ink_error("could not find a free claim code");
    return INK_INTERNAL;
}

/* Upserts the device from a heartbeat-like payload; *r receives the SQL_HEARTBEAT row. */
static enum ink_status touch_device(struct ink_db *db, const char *thing, const char *hw,
                                    const char *fw, const char *battery, PGresult **r)
{
    char id[INK_UUID_STRLEN + 1];
    ink_uuid_v7(id);
    const char *params[] = {id, hw, thing, fw, battery};
    enum ink_status st = ink_db_exec(db, &SQL_HEARTBEAT, 5, params, r);
    /* Two instances creating the same new device at once: ON CONFLICT only arbitrates the thing
     * name, so the loser trips over the hwId index instead. Once more, and it is an update. */
    if (st == INK_CONFLICT)
        st = ink_db_exec(db, &SQL_HEARTBEAT, 5, params, r);
    if (st == INK_CONFLICT || (st == INK_OK && PQntuples(*r) != 1)) {
        ink_warn("rejected a message from thing %s: its hwId does not match the registered one",
                 thing);
        PQclear(*r);
        *r = NULL;
        return INK_INVALID;
    }
    return st;
}

enum ink_status ink_device_heartbeat(struct ink_db *db, const char *thing, const char *payload,
                                     size_t len)
{
    json_t *root;
    const char *hw, *fw, *battery;
    if (parse_device_payload(payload, len, &root, &hw, &fw, &battery) != INK_OK)
        return INK_INVALID;
    PGresult *r;
    enum ink_status st = touch_device(db, thing, hw, fw, battery, &r);
    if (st == INK_OK) {
        bool bound = PQgetvalue(r, 0, 1)[0] == 't', live_code = PQgetvalue(r, 0, 2)[0] == 't';
        if (!bound && !live_code)
            st = issue_code(db, PQgetvalue(r, 0, 0), thing);
        PQclear(r);
    }
    json_decref(root);
    return st == INK_UNAVAILABLE && !ink_broker_connected() ? INK_OK : st;
}

enum ink_status ink_device_request_claim(struct ink_db *db, const char *thing, const char *payload,
                                         size_t len)
{
    json_t *root;
    const char *hw;
    if (parse_device_payload(payload, len, &root, &hw, NULL, NULL) != INK_OK)
        return INK_INVALID;
    PGresult *r;
    enum ink_status st = touch_device(db, thing, hw, NULL, NULL, &r);
    if (st == INK_OK) {
        const char *id = PQgetvalue(r, 0, 0);
        if (PQgetvalue(r, 0, 1)[0] == 't')
            st = send_command(db, id, thing, "already_bound", json_object(), NULL);
        else if (PQgetvalue(r, 0, 2)[0] == 't')
            st = publish_code(db, id, thing, PQgetvalue(r, 0, 3), ink_db_ll(r, 0, 4));
        else
            st = issue_code(db, id, thing);
        PQclear(r);
    }
    json_decref(root);
    return st;
}

static const struct ink_sql SQL_STATE = {
    "device_state",
    "UPDATE devices SET state = $2, state_updated_at = now() WHERE thing_name = $1 RETURNING id"};

static const struct ink_sql SQL_DELIVERED = {
    "cmd_delivered", "UPDATE device_commands SET status = 'delivered', delivered_at = now(),"
                     " sent_at = COALESCE(sent_at, now())"
                     " WHERE id = $1 AND device_id = $2 AND status IN ('queued', 'sent')"};

enum ink_status ink_device_report_state(struct ink_db *db, const char *thing, const char *payload,
                                        size_t len)
{
    json_t *root;
    const char *why, *last_cmd = NULL;
    if (ink_json_parse_object(payload, len, &root, &why) != INK_OK)
        return INK_INVALID;
    if (ink_json_opt_string(root, "lastCmd", &last_cmd) != INK_OK) {
        json_decref(root);
        return INK_INVALID;
    }
    size_t tlen;
    char *text = ink_json_dump(root, &tlen);
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_STATE, 2, (const char *[]){thing, text}, &r);
    if (st == INK_OK && PQntuples(r) == 1 && last_cmd && ink_uuid_valid(last_cmd))
        st = ink_db_exec(db, &SQL_DELIVERED, 2, (const char *[]){last_cmd, PQgetvalue(r, 0, 0)},
                         NULL);
    else if (st == INK_OK && PQntuples(r) != 1)
        st = INK_NOT_FOUND; /* state from a thing that never sent a heartbeat */
    PQclear(r);
    free(text);
    json_decref(root);
    return st;
}
