/* Displays and their owners (contract §4): listing, binding by claim code or NFC, unbinding,
 * nicknames, reported state. The command log is commands.c; what displays report is link.c. */
#include "devices_internal.h"
#include "inklet/app.h"
#include "inklet/claimcode.h"
#include "inklet/devices.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/nfc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ink_status ink_device_get(const char *user_id, const char *device_id, char **out)
{
    PGresult *r;
    enum ink_status st = ink_device_fetch_owned(user_id, device_id, &r);
    if (st == INK_OK)
        *out = ink_device_json(r, 0);
    PQclear(r);
    return st;
}

const struct ink_sql ink_devices_of_sql = {"devices_of", "SELECT " DEVICE_COLUMNS
                                                         " FROM devices d WHERE d.owner_id = $1"
                                                         " ORDER BY d.bound_at DESC, d.id DESC"};

const struct ink_sql ink_devices_of_many_sql = {
    "devices_of_many", "SELECT " DEVICE_COLUMNS " FROM devices d WHERE d.owner_id = ANY($1::uuid[])"
                       " ORDER BY d.owner_id, d.bound_at DESC, d.id DESC"};
_Static_assert(INK_DEVICES_OWNER_COLUMN == C_OWNER, "the owner's column in DEVICE_COLUMNS");

enum ink_status ink_devices_list(const char *user_id, char **out)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&ink_devices_of_sql, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    *out = ink_devices_json(r);
    PQclear(r);
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

static enum ink_status bound_reply(struct ink_db *db, PGresult *r, char **out)
{
    /* tell the display; durable, like every command: it arrives when the display is reachable */
    enum ink_status st =
        ink_cmd_enqueue(db, PQgetvalue(r, 0, C_ID), PQgetvalue(r, 0, C_THING), "bound",
                        json_object(), ink_app.cfg.command_ttl, false, NULL);
    if (st != INK_OK)
        ink_warn("device %s was bound, but its 'bound' command could not be stored",
                 PQgetvalue(r, 0, C_ID));
    *out = ink_device_json(r, 0);
    return INK_OK; /* the binding stands */
}

/* Runs the conditional bind UPDATE (`bind`, params user and key). On a match the display is told
 * and *out is the device. On a miss, *miss receives `lookup` (param key) so the caller can say
 * why; the caller PQclears it. */
static enum ink_status try_bind(const char *user_id, const char *key, const struct ink_sql *bind,
                                const struct ink_sql *lookup, char **out, PGresult **miss)
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

enum ink_status ink_device_bind_code(const char *user_id, const char *code_in, char **out,
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

enum ink_status ink_device_bind_nfc(const char *user_id, const char *payload, char **out,
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
            *out = ink_device_json(miss, 0); /* already yours: idempotent */
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
        /* the next owner never sees what this one sent; the display hears it is free */
        if ((st = ink_cmd_cancel_undelivered(db, device_id)) == INK_OK)
            st = ink_cmd_enqueue(db, device_id, PQgetvalue(r, 0, 1), "unbound", json_object(),
                                 ink_app.cfg.command_ttl, false, NULL);
    } else if (st == INK_OK) {
        PGresult *o;
        st = ink_device_load_owned(db, user_id, device_id, &o);
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
    for (int i = 0; i < PQntuples(r) && st == INK_OK; i++)
        if ((st = ink_cmd_cancel_undelivered(db, PQgetvalue(r, i, 0))) == INK_OK)
            st = ink_cmd_enqueue(db, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), "unbound",
                                 json_object(), ink_app.cfg.command_ttl, true, NULL);
    PQclear(r);
    return st;
}

/* ---- nickname, commands, state ------------------------------------------------------------ */

static const struct ink_sql SQL_NICKNAME = {
    "device_nickname",
    "UPDATE devices d SET nickname = $3 WHERE id = $1 AND owner_id = $2 RETURNING " DEVICE_COLUMNS};

enum ink_status ink_device_set_nickname(const char *user_id, const char *device_id,
                                        const char *nickname, char **out, struct ink_err *err)
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
        *out = ink_device_json(r, 0);
    } else if (st == INK_OK) {
        PGresult *o;
        st = ink_device_load_owned(db, user_id, device_id, &o);
        PQclear(o);
        if (st == INK_OK)
            st = INK_CONFLICT;
    }
    PQclear(r);
    ink_db_release(db);
    return st;
}

enum ink_status ink_device_state(const char *user_id, const char *device_id, json_t **out)
{
    PGresult *r;
    enum ink_status st = ink_device_fetch_owned(user_id, device_id, &r);
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
