/* What displays report over MQTT (contract §5): heartbeats (create the device, hand out claim
 * codes, redeliver what waits), state reports (cumulative delivery) and claim requests, with the
 * per-thing limits that keep a misbehaving display from growing the command log. */
#include "devices_internal.h"
#include "inklet/app.h"
#include "inklet/claimcode.h"
#include "inklet/device_link.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLAIM_CODE_ATTEMPTS 8
/* already_bound answers are worth nothing after a minute */
#define ALREADY_BOUND_TTL 60

const struct ink_sql ink_device_heartbeat_sql = {
    "device_heartbeat",
    "INSERT INTO devices (id, hw_id, thing_name, firmware, battery, last_seen_at)"
    " VALUES ($1, $2, $3, $4, $5, now())"
    " ON CONFLICT (thing_name) DO UPDATE SET"
    "  firmware = COALESCE(EXCLUDED.firmware, devices.firmware),"
    "  battery = COALESCE(EXCLUDED.battery, devices.battery), last_seen_at = now()"
    "  WHERE devices.hw_id = EXCLUDED.hw_id"
    " RETURNING id, owner_id IS NOT NULL,"
    "  claim_code IS NOT NULL AND claim_expires_at > now(), claim_code,"
    "  extract(epoch FROM claim_expires_at)::bigint,"
    /* something waits for this display: saves the redelivery statement when nothing does.
     * Not EXISTS: where a few displays hold thousands of commands, the planner's estimate of
     * rows per device makes EXISTS a sequential scan of device_commands (it expects a match
     * early), 10 ms per heartbeat at 60k commands, which starved ingest. The first row in the
     * undelivered index's order is one index probe; a sequential plan would have to sort. */
    "  (SELECT true FROM device_commands c WHERE c.device_id = devices.id"
    "   AND c.status IN ('queued', 'sent') AND c.expires_at > now()"
    "   AND (c.last_published_at IS NULL OR c.last_published_at <= now() - interval '5 seconds')"
    "   ORDER BY c.created_at, c.id LIMIT 1) IS NOT NULL"};

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
    /* the command lives as long as the code: a display that wakes later gets it again */
    long long ttl = expires - (long long)time(NULL);
    return ink_cmd_enqueue(db, device_id, thing, "claim_code",
                           json_pack("{s:s,s:s}", "code", code, "expiresAt", at),
                           ttl < 1 ? 1u : (unsigned)ttl, false, NULL);
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

/* Upserts the device from a heartbeat-like payload; *r receives the ink_device_heartbeat_sql row.
 */
static enum ink_status touch_device(struct ink_db *db, const char *thing, const char *hw,
                                    const char *fw, const char *battery, PGresult **r)
{
    char id[INK_UUID_STRLEN + 1];
    ink_uuid_v7(id);
    const char *params[] = {id, hw, thing, fw, battery};
    enum ink_status st = ink_db_exec(db, &ink_device_heartbeat_sql, 5, params, r);
    /* Two instances creating the same new device at once: ON CONFLICT only arbitrates the thing
     * name, so the loser trips over the hwId index instead. Once more, and it is an update. */
    if (st == INK_CONFLICT)
        st = ink_db_exec(db, &ink_device_heartbeat_sql, 5, params, r);
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
        bool waiting = PQgetvalue(r, 0, 5)[0] == 't';
        char id[INK_UUID_STRLEN + 1];
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        /* at most one code per claim lifetime: a new one only once the last has expired */
        if (!bound && !live_code)
            st = issue_code(db, id, thing);
        /* the display is awake: what waits for it goes out now (a code whose publish failed
         * included) */
        if (st == INK_OK && waiting)
            st = ink_cmd_redeliver(db, id, thing);
    }
    json_decref(root);
    return st;
}

/* Claims the right to answer a request_claim: at most one answer per 5 s per thing,
 * shared by every instance, so a display asking every 100 ms grows nothing. */
static const struct ink_sql SQL_CLAIM_ANSWER = {
    "device_claim_answer",
    "UPDATE devices SET claim_answered_at = now() WHERE id = $1"
    " AND (claim_answered_at IS NULL OR claim_answered_at <= now() - interval '5 seconds')"};

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
        PGresult *claimed = NULL;
        st = ink_db_exec(db, &SQL_CLAIM_ANSWER, 1, (const char *[]){id}, &claimed);
        bool answer = st == INK_OK && strcmp(PQcmdTuples(claimed), "1") == 0;
        PQclear(claimed);
        if (st == INK_OK && !answer) {
            ink_debug("thing %s asked for a claim code again within 5 s; not answered", thing);
            st = INK_RATE_LIMITED;
        } else if (st == INK_OK && PQgetvalue(r, 0, 1)[0] == 't') {
            st = ink_cmd_enqueue(db, id, thing, "already_bound", json_object(), ALREADY_BOUND_TTL,
                                 false, NULL);
        } else if (st == INK_OK && PQgetvalue(r, 0, 2)[0] == 't') {
            st = publish_code(db, id, thing, PQgetvalue(r, 0, 3), ink_db_ll(r, 0, 4));
        } else if (st == INK_OK) {
            st = issue_code(db, id, thing);
        }
        PQclear(r);
    }
    json_decref(root);
    return st;
}

/* The state of a known thing; a payload that names an hwId must name the registered one. */
static const struct ink_sql SQL_STATE = {
    "device_state",
    "UPDATE devices SET state = $2, state_updated_at = now()"
    " WHERE thing_name = $1 AND ($3::uuid IS NULL OR hw_id = $3::uuid) RETURNING id"};

enum ink_status ink_device_report_state(struct ink_db *db, const char *thing, const char *payload,
                                        size_t len)
{
    json_t *root;
    const char *why, *last_cmd = NULL, *hw = NULL;
    if (ink_json_parse_object(payload, len, &root, &why) != INK_OK)
        return INK_INVALID;
    if (ink_json_opt_string(root, "lastCmd", &last_cmd) != INK_OK ||
        ink_json_opt_string(root, "hwId", &hw) != INK_OK || (hw && !ink_uuid_valid(hw))) {
        json_decref(root);
        return INK_INVALID;
    }
    size_t tlen;
    char *text = ink_json_dump(root, &tlen);
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_STATE, 3, (const char *[]){thing, text, hw}, &r);
    if (st == INK_OK && PQntuples(r) == 1 && last_cmd && ink_uuid_valid(last_cmd)) {
        st = ink_cmd_delivered(db, PQgetvalue(r, 0, 0), last_cmd);
    } else if (st == INK_OK && PQntuples(r) != 1) {
        if (hw)
            ink_warn("rejected a state report from thing %s: its hwId does not match the "
                     "registered one",
                     thing);
        st = hw ? INK_INVALID : INK_NOT_FOUND; /* or from a thing that never sent a heartbeat */
    }
    PQclear(r);
    free(text);
    json_decref(root);
    return st;
}
