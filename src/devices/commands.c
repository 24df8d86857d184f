/* The durable command log (contract §4, "Command delivery is durable"): a command is stored
 * first, published when the link can take it, published again whenever its display wakes
 * (heartbeat), and ends delivered, expired or canceled. */
#include "devices_internal.h"
#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/device_link.h"
#include "inklet/devices.h"
#include "inklet/histogram.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Publishing stops while this many acknowledgements wait to be written: acks.c's buffer holds
 * twice as many, so none is ever dropped (what is not published now goes at the next heartbeat). */
#define ACK_BACKLOG_MAX 32768

static const struct ink_device_outbound *outbound;

void ink_devices_set_outbound(const struct ink_device_outbound *out)
{
    outbound = out;
}

static bool can_publish(void)
{
    return outbound && outbound->ready() && ink_device_acks_backlog() < ACK_BACKLOG_MAX;
}

/* The command as the display gets it: {"kind", "id", ...fields}. malloc'd. */
static char *wire_message(const char *id, const char *kind, json_t *fields, size_t *len)
{
    json_t *msg = json_pack("{s:s,s:s}", "kind", kind, "id", id);
    json_object_update(msg, fields);
    char *text = ink_json_dump(msg, len);
    json_decref(msg);
    return text;
}

static bool publish(const char *thing, const char *id, const char *kind, json_t *fields)
{
    size_t len;
    char *text = wire_message(id, kind, fields, &len);
    bool ok = outbound->publish(thing, id, text, len) == INK_OK;
    free(text);
    return ok;
}

/* The columns of a command, its status as the contract sees it (an undelivered command past its
 * expiry is `expired` before the periodic job writes so). */
#define CMD_COLUMNS                                                                                \
    "c.id, c.kind, c.payload,"                                                                     \
    " CASE WHEN c.status IN ('queued', 'sent') AND c.expires_at <= now() THEN 'expired'"           \
    " ELSE c.status END,"                                                                          \
    " extract(epoch FROM c.created_at)::bigint, extract(epoch FROM c.sent_at)::bigint,"            \
    " extract(epoch FROM c.delivered_at)::bigint, extract(epoch FROM c.expires_at)::bigint"

static json_t *command_json(const PGresult *r, int i, const char *device_id)
{
    json_t *payload = json_loads(PQgetvalue(r, i, 2), 0, NULL);
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:o}", "id", PQgetvalue(r, i, 0), "deviceId",
                     device_id, "kind", PQgetvalue(r, i, 1), "payload",
                     payload ? payload : json_object(), "status", PQgetvalue(r, i, 3), "createdAt",
                     ink_json_time(ink_db_ll(r, i, 4)), "sentAt", ink_json_time(ink_db_ll(r, i, 5)),
                     "deliveredAt", ink_json_time(ink_db_ll(r, i, 6)), "expiresAt",
                     ink_json_time(ink_db_ll(r, i, 7)));
}

/* ---- storing and publishing ---------------------------------------------------------------- */

/* what this instance did to the command log (metrics) */
static atomic_ullong redelivered, enqueued, delivered, canceled, expired;
/* from POST to the display's report: seconds for an awake display, hours for a sleeping one */
static const double DELIVERY_BOUNDS[] = {0.1, 0.25, 0.5, 1,   2.5,  5,     10,
                                         30,  60,   300, 900, 3600, 14400, 86400};
static struct ink_histogram delivery = INK_HISTOGRAM(DELIVERY_BOUNDS);

void ink_cmd_get_stats(struct ink_device_stats *out)
{
    out->redelivered = atomic_load(&redelivered);
    out->enqueued = atomic_load(&enqueued);
    out->delivered = atomic_load(&delivered);
    out->canceled = atomic_load(&canceled);
    out->expired = atomic_load(&expired);
    out->delivery = &delivery;
}

/* last_published_at is set in the INSERT when the command goes out at once, so a heartbeat in
 * the next 5 s does not publish it a second time */
const struct ink_sql ink_cmd_insert_sql = {
    "cmd_insert",
    "INSERT INTO device_commands AS c (id, device_id, kind, payload, status, expires_at,"
    " last_published_at, publish_count, published_seen_at)"
    " VALUES ($1, $2, $3, $4, 'queued', now() + make_interval(secs => $5::int),"
    "  CASE WHEN $6::bool THEN now() END, CASE WHEN $6::bool THEN 1 ELSE 0 END,"
    "  CASE WHEN $6::bool THEN (SELECT last_seen_at FROM devices WHERE id = $2::uuid) END)"
    " RETURNING " CMD_COLUMNS};

enum ink_status ink_cmd_enqueue(struct ink_db *db, const char *device_id, const char *thing,
                                const char *kind, json_t *fields, unsigned ttl_s, bool in_tx,
                                json_t **out)
{
    char id[INK_UUID_STRLEN + 1], ttl[16];
    ink_uuid_v7(id);
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    size_t plen;
    char *payload = ink_json_dump(fields, &plen);
    /* inside a transaction that may still roll back, the display hears of it at its next
     * heartbeat instead */
    bool now = !in_tx && can_publish();
    PGresult *r = NULL;
    enum ink_status st =
        ink_db_exec(db, &ink_cmd_insert_sql, 6,
                    (const char *[]){id, device_id, kind, payload, ttl, now ? "t" : "f"}, &r);
    if (st == INK_OK) {
        if (!in_tx) /* one in a transaction is counted only if it commits: not here */
            atomic_fetch_add(&enqueued, 1);
        /* a refused publish changes nothing: the command waits for the display's next
         * heartbeat */
        if (now && !publish(thing, id, kind, fields))
            ink_debug("command %s stays queued: the broker did not take it", id);
        if (out)
            *out = command_json(r, 0, device_id);
    }
    PQclear(r);
    json_decref(fields);
    free(payload);
    return st;
}

static const struct ink_sql SQL_CLAIM_UNDELIVERED = {
    "cmd_claim_undelivered",
    "WITH u AS (UPDATE device_commands SET last_published_at = now(),"
    "  publish_count = publish_count + 1,"
    "  published_seen_at = (SELECT last_seen_at FROM devices WHERE id = $1::uuid)"
    "  WHERE id IN (SELECT id FROM device_commands WHERE device_id = $1"
    "   AND status IN ('queued', 'sent') AND expires_at > now()"
    "   AND (last_published_at IS NULL OR last_published_at <= now() - interval '5 seconds')"
    /* at most 200 per heartbeat: the log keeps no more per device anyway */
    "   ORDER BY created_at, id LIMIT 200 FOR UPDATE SKIP LOCKED)"
    "  RETURNING id, kind, payload, created_at)"
    " SELECT id, kind, payload FROM u ORDER BY created_at, id"};

enum ink_status ink_cmd_redeliver(struct ink_db *db, const char *device_id, const char *thing)
{
    if (!can_publish())
        return INK_OK; /* they stay undelivered; the next heartbeat tries again */
    PGresult *r;
    enum ink_status st =
        ink_db_exec(db, &SQL_CLAIM_UNDELIVERED, 1, (const char *[]){device_id}, &r);
    if (st != INK_OK)
        return st;
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *fields = json_loads(PQgetvalue(r, i, 2), 0, NULL);
        if (!fields)
            fields = json_object();
        if (publish(thing, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), fields))
            atomic_fetch_add(&redelivered, 1);
        json_decref(fields);
    }
    PQclear(r);
    return INK_OK;
}

/* ---- outcomes ------------------------------------------------------------------------------ */

/* The reported command, and the earlier ones it proves: published after the display's last sign
 * of life before the reported command went out. A display handles its commands in order, but
 * one that was offline (a clean session) missed whatever was published meanwhile, even if it
 * was published before the reported one (decided; the contract's "published before" alone would
 * mark those delivered although the display never showed them). */
static const struct ink_sql SQL_DELIVERED = {
    "cmd_delivered",
    "UPDATE device_commands d SET status = 'delivered', delivered_at = now(),"
    " sent_at = COALESCE(d.sent_at, now())"
    " FROM (SELECT created_at, id, published_seen_at FROM device_commands"
    "  WHERE id = $1 AND device_id = $2) c"
    " WHERE d.device_id = $2 AND d.status IN ('queued', 'sent') AND d.expires_at > now()"
    "  AND (d.id = c.id OR (d.last_published_at >= c.published_seen_at"
    "   AND (d.created_at, d.id) < (c.created_at, c.id)))"
    " RETURNING extract(epoch FROM d.delivered_at - d.created_at)"};

enum ink_status ink_cmd_delivered(struct ink_db *db, const char *device_id, const char *command_id)
{
    PGresult *r;
    enum ink_status st =
        ink_db_exec(db, &SQL_DELIVERED, 2, (const char *[]){command_id, device_id}, &r);
    if (st != INK_OK)
        return st;
    for (int i = 0; i < PQntuples(r); i++)
        ink_histogram_observe(&delivery, strtod(PQgetvalue(r, i, 0), NULL));
    atomic_fetch_add(&delivered, (unsigned long long)PQntuples(r));
    PQclear(r);
    return INK_OK;
}

static const struct ink_sql SQL_CANCEL_UNDELIVERED = {
    "cmd_cancel_undelivered", "UPDATE device_commands SET status = 'canceled'"
                              " WHERE device_id = $1 AND status IN ('queued', 'sent')"};

enum ink_status ink_cmd_cancel_undelivered(struct ink_db *db, const char *device_id)
{
    /* called inside the unbind or deletion transaction: not counted (it may roll back) */
    return ink_db_exec(db, &SQL_CANCEL_UNDELIVERED, 1, (const char *[]){device_id}, NULL);
}

/* ---- HTTP side ----------------------------------------------------------------------------- */

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
    st = ink_device_load_owned(db, user_id, device_id, &r);
    if (st == INK_OK)
        st = ink_cmd_enqueue(db, device_id, PQgetvalue(r, 0, C_THING), "text",
                             json_pack("{s:s}", "text", text), ink_app.cfg.command_ttl, false, out);
    PQclear(r);
    ink_db_release(db);
    return st;
}

static const struct ink_sql SQL_CANCEL = {
    "cmd_cancel", "UPDATE device_commands c SET status = 'canceled'"
                  " WHERE c.id = $1 AND c.device_id = $2 AND c.status IN ('queued', 'sent')"
                  "  AND c.expires_at > now() RETURNING " CMD_COLUMNS};

static const struct ink_sql SQL_COMMAND = {
    "cmd_one", "SELECT 1 FROM device_commands c JOIN devices d ON d.id = c.device_id"
               " WHERE c.id = $1 AND c.device_id = $2 AND c.created_at >= d.bound_at"};

enum ink_status ink_device_cancel_command(const char *user_id, const char *device_id,
                                          const char *command_id, json_t **out, struct ink_err *err)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    PGresult *r = NULL;
    if ((st = ink_device_load_owned(db, user_id, device_id, &r)) != INK_OK)
        goto out;
    PQclear(r);
    r = NULL;
    /* a command of the device's previous owner is not this user's to see */
    if ((st = ink_db_exec(db, &SQL_COMMAND, 2, (const char *[]){command_id, device_id}, &r)) !=
        INK_OK)
        goto out;
    bool exists = PQntuples(r) == 1;
    PQclear(r);
    r = NULL;
    if (!exists) {
        *err = (struct ink_err){"command_not_found", "No such command on this device."};
        st = INK_NOT_FOUND;
        goto out;
    }
    if ((st = ink_db_exec(db, &SQL_CANCEL, 2, (const char *[]){command_id, device_id}, &r)) !=
        INK_OK)
        goto out;
    if (PQntuples(r) == 1) {
        atomic_fetch_add(&canceled, 1);
        *out = command_json(r, 0, device_id);
    } else {
        *err = (struct ink_err){"command_finished",
                                "The command was already delivered, expired or canceled."};
        st = INK_CONFLICT;
    }
out:
    PQclear(r);
    ink_db_release(db);
    return st;
}

static const struct ink_sql SQL_COMMANDS = {
    "device_commands", "SELECT " CMD_COLUMNS " FROM device_commands c JOIN devices d"
                       " ON d.id = c.device_id"
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
    st = ink_device_load_owned(db, user_id, device_id, &o);
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
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(arr, command_json(r, i, device_id));
    PQclear(r);
    *out = arr;
    return INK_OK;
}

/* ---- housekeeping -------------------------------------------------------------------------- */

static const struct ink_sql SQL_EXPIRE = {
    "cmd_expire", "UPDATE device_commands SET status = 'expired'"
                  " WHERE status IN ('queued', 'sent') AND expires_at <= now()"};

static const struct ink_sql SQL_PRUNE = {
    "cmd_prune",
    "DELETE FROM device_commands WHERE created_at < now() - interval '90 days'"
    " OR id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY device_id"
    "  ORDER BY created_at DESC, id DESC) AS n FROM device_commands) ranked WHERE n > 200)"};

enum ink_status ink_devices_prune(long long *count)
{
    long long pruned = 0;
    long long n_expired = 0;
    enum ink_status st = ink_db_affected(&SQL_EXPIRE, &n_expired);
    if (n_expired > 0)
        atomic_fetch_add(&expired, (unsigned long long)n_expired);
    if (st == INK_OK)
        st = ink_db_affected(&SQL_PRUNE, &pruned);
    *count = n_expired + pruned;
    return st;
}
