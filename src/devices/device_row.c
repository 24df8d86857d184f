/* The device row: its JSON and the ownership checks every device route starts with. */
#include "devices_internal.h"
#include "inklet/devices.h"
#include "inklet/json.h"

#include <string.h>

size_t ink_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

json_t *ink_device_json(const PGresult *r, int row)
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

static const struct ink_sql SQL_DEVICE_BY_ID = {"device_by_id", "SELECT " DEVICE_COLUMNS
                                                                " FROM devices d WHERE d.id = $1"};

enum ink_status ink_device_load_owned(struct ink_db *db, const char *user_id, const char *device_id,
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

enum ink_status ink_device_fetch_owned(const char *user_id, const char *device_id, PGresult **res)
{
    *res = NULL;
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    st = ink_device_load_owned(db, user_id, device_id, res);
    ink_db_release(db);
    return st;
}
