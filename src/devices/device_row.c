/* The device row: its JSON and the ownership checks every device route starts with. */
#include "devices_internal.h"
#include "inklet/devices.h"
#include "inklet/alloc.h"
#include "inklet/json_text.h"

#include <stdlib.h>
#include <string.h>

size_t ink_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* The device object is written as text straight from the row: the device list is the hottest
 * authenticated route, and building a jansson tree of 13 members per device and serialising it
 * was more than half of its instructions (docs/performance.md). The buffer is sized from the
 * row first (an escaped byte takes at most 6), so nothing is ever cut. */
#define DEVICE_FIXED_BYTES 512 /* the keys, punctuation, three timestamps, battery, online */

static const int TEXT_COLUMNS[] = {C_ID, C_HW, C_THING, C_FW, C_OWNER, C_CODE, C_STATE, C_NICK};

static size_t device_bound(const PGresult *r, int row)
{
    size_t n = DEVICE_FIXED_BYTES;
    for (size_t i = 0; i < sizeof TEXT_COLUMNS / sizeof TEXT_COLUMNS[0]; i++)
        n += INK_JT_ESCAPED_MAX((size_t)PQgetlength(r, row, TEXT_COLUMNS[i]));
    return n;
}

static void put_str(struct ink_sb *sb, const char *key, const PGresult *r, int row, int col)
{
    ink_jt_str(sb, key, ink_db_str(r, row, col));
}

static void put_time(struct ink_sb *sb, const char *key, const PGresult *r, int row, int col)
{
    ink_jt_time(sb, key, ink_db_ll(r, row, col));
}

static void device_write(struct ink_sb *sb, const PGresult *r, int row)
{
    ink_sb_puts(sb, "{");
    put_str(sb, "id", r, row, C_ID);
    put_str(sb, "hwId", r, row, C_HW);
    put_str(sb, "thingName", r, row, C_THING);
    put_str(sb, "firmware", r, row, C_FW);
    ink_jt_key(sb, "battery");
    if (PQgetisnull(r, row, C_BATT))
        ink_sb_puts(sb, "null");
    else
        ink_sb_printf(sb, "%lld", ink_db_ll(r, row, C_BATT));
    ink_jt_bool(sb, "online", PQgetvalue(r, row, C_ONLINE)[0] == 't');
    put_time(sb, "lastSeenAt", r, row, C_SEEN);
    put_str(sb, "ownerId", r, row, C_OWNER);
    put_time(sb, "boundAt", r, row, C_BOUND);
    put_str(sb, "claimCode", r, row, C_CODE);
    put_str(sb, "state", r, row, C_STATE);
    put_time(sb, "stateUpdatedAt", r, row, C_STATE_AT);
    put_str(sb, "nickname", r, row, C_NICK);
    ink_sb_puts(sb, "}");
}

/* rows [first, first + count) as one object (`array` false, count 1) or as an array */
static char *render(const PGresult *r, int first, int count, bool array)
{
    size_t cap = 3; /* [ ] NUL */
    for (int i = first; i < first + count; i++)
        cap += device_bound(r, i) + 1;
    char *text = ink_malloc(cap);
    struct ink_sb sb;
    ink_sb_init(&sb, text, cap);
    ink_sb_puts(&sb, array ? "[" : "");
    for (int i = first; i < first + count; i++) {
        ink_sb_puts(&sb, i > first ? "," : "");
        device_write(&sb, r, i);
    }
    ink_sb_puts(&sb, array ? "]" : "");
    if (sb.truncated)
        abort(); /* the bound above is wrong: a bug, never input */
    return text;
}

char *ink_device_json(const PGresult *r, int row)
{
    return render(r, row, 1, false);
}

char *ink_devices_json(const PGresult *r)
{
    return ink_devices_json_rows(r, 0, PQntuples(r));
}

char *ink_devices_json_rows(const PGresult *r, int first, int count)
{
    return render(r, first, count, true);
}

const struct ink_sql ink_device_by_id_sql = {"device_by_id", "SELECT " DEVICE_COLUMNS
                                                             " FROM devices d WHERE d.id = $1"};

enum ink_status ink_device_load_owned(struct ink_db *db, const char *user_id, const char *device_id,
                                      PGresult **res)
{
    *res = NULL;
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &ink_device_by_id_sql, 1, (const char *[]){device_id}, &r);
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
