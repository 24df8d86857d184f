/* Local subscription state from Stripe's subscription objects, in order. */
#include "inklet/billing.h"
#include "inklet/billing_internal.h"
#include "inklet/plan.h"

#include <stdio.h>
#include <string.h>

const char *ink_stripe_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s || !*s || strlen(s) > INK_STRIPE_ID_MAX)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return NULL;
    return s;
}

bool ink_stripe_id_safe(const char *id)
{
    if (!id || !*id)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

const char *ink_stripe_ref(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_object(v)) /* an expanded object */
        return ink_stripe_str(v, "id");
    return ink_stripe_str(obj, key);
}

bool ink_stripe_time(json_t *obj, const char *key, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (long long)json_integer_value(v);
    return true;
}

/* The first subscription item: its price, interval and (API 2025-03 onwards) period. */
static json_t *first_item(json_t *sub)
{
    return json_array_get(json_object_get(json_object_get(sub, "items"), "data"), 0);
}

static const char *price_interval(json_t *sub, json_t *item)
{
    json_t *price = json_object_get(item, "price");
    const char *iv =
        json_string_value(json_object_get(json_object_get(price, "recurring"), "interval"));
    if (!iv) /* the legacy Plan object */
        iv = json_string_value(json_object_get(json_object_get(item, "plan"), "interval"));
    if (!iv)
        iv = json_string_value(json_object_get(json_object_get(sub, "plan"), "interval"));
    return ink_plan_interval_from_stripe(iv);
}

/* Upsert with the ordering rule in the WHERE of the conflict branch: a canceled (or
 * incomplete_expired) subscription is final, and a snapshot older than the stored one — by the
 * event's `created`, then by the object's own current_period_start — changes nothing. `old` is
 * read from the statement's snapshot, before the write. */
const struct ink_sql ink_billing_apply_sql = {
    "billing_apply_subscription",
    "WITH c AS (SELECT user_id FROM billing_customers WHERE customer_id = $2),"
    " old AS (SELECT status, interval, current_period_end, cancel_at_period_end"
    "  FROM subscriptions WHERE subscription_id = $1),"
    " up AS (INSERT INTO subscriptions AS s (subscription_id, user_id, customer_id, status,"
    "  stripe_status, price_id, interval, current_period_start, current_period_end,"
    "  cancel_at_period_end, started_at, state_at)"
    "  SELECT $1, c.user_id, $2, $3, $4, $5, $6, to_timestamp($7::bigint), "
    "to_timestamp($8::bigint),"
    "   $9::boolean, to_timestamp($10::bigint), $11::bigint FROM c"
    "  ON CONFLICT (subscription_id) DO UPDATE SET status = EXCLUDED.status,"
    "   stripe_status = EXCLUDED.stripe_status, price_id = COALESCE(EXCLUDED.price_id, s.price_id),"
    "   interval = COALESCE(EXCLUDED.interval, s.interval),"
    "   current_period_start = COALESCE(EXCLUDED.current_period_start, s.current_period_start),"
    "   current_period_end = COALESCE(EXCLUDED.current_period_end, s.current_period_end),"
    "   cancel_at_period_end = EXCLUDED.cancel_at_period_end, state_at = EXCLUDED.state_at,"
    "   updated_at = now()"
    "  WHERE s.status <> 'canceled' AND s.stripe_status <> 'incomplete_expired'"
    "   AND (EXCLUDED.state_at > s.state_at OR (EXCLUDED.state_at = s.state_at"
    "    AND COALESCE(EXCLUDED.current_period_start, s.current_period_start, '-infinity')"
    "     >= COALESCE(s.current_period_start, '-infinity')))"
    "  RETURNING s.status, s.interval, s.current_period_end, s.cancel_at_period_end)"
    " SELECT EXISTS (SELECT 1 FROM c), o.status, o.interval,"
    "  extract(epoch FROM o.current_period_end)::bigint, o.cancel_at_period_end,"
    "  u.status, u.interval, extract(epoch FROM u.current_period_end)::bigint,"
    "  u.cancel_at_period_end"
    " FROM (SELECT 1) one LEFT JOIN old o ON true LEFT JOIN up u ON true"};

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

enum ink_status ink_billing_apply_subscription(struct ink_db *db, json_t *sub, long long state_at,
                                               struct ink_sub_change *change)
{
    memset(change, 0, sizeof *change);
    const char *id = ink_stripe_str(sub, "id"), *customer = ink_stripe_ref(sub, "customer");
    const char *stripe_status = ink_stripe_str(sub, "status");
    if (!id || !customer || !stripe_status)
        return INK_INVALID;
    json_t *item = first_item(sub);
    long long start = 0, end = 0, created = state_at;
    bool have_start = ink_stripe_time(sub, "current_period_start", &start) ||
                      ink_stripe_time(item, "current_period_start", &start);
    bool have_end = ink_stripe_time(sub, "current_period_end", &end) ||
                    ink_stripe_time(item, "current_period_end", &end);
    ink_stripe_time(sub, "created", &created);
    char start_s[24], end_s[24], created_s[24], state_s[24];
    snprintf(start_s, sizeof start_s, "%lld", start);
    snprintf(end_s, sizeof end_s, "%lld", end);
    snprintf(created_s, sizeof created_s, "%lld", created);
    snprintf(state_s, sizeof state_s, "%lld", state_at);
    const char *price = ink_stripe_str(json_object_get(item, "price"), "id");
    bool cancel = json_is_true(json_object_get(sub, "cancel_at_period_end"));
    const char *params[] = {id,
                            customer,
                            ink_plan_status_from_stripe(stripe_status),
                            stripe_status,
                            price,
                            price_interval(sub, item),
                            have_start ? start_s : NULL,
                            have_end ? end_s : NULL,
                            cancel ? "true" : "false",
                            created_s,
                            state_s};
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &ink_billing_apply_sql, 11, params, &r);
    if (st != INK_OK)
        return st;
    change->known_customer = PQgetvalue(r, 0, 0)[0] == 't';
    change->applied = !PQgetisnull(r, 0, 5);
    snprintf(change->before, sizeof change->before, "%s",
             PQgetisnull(r, 0, 1) ? "none" : PQgetvalue(r, 0, 1));
    if (change->applied) {
        snprintf(change->after, sizeof change->after, "%s", PQgetvalue(r, 0, 5));
        change->changed = PQgetisnull(r, 0, 1) ||
                          strcmp(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 5)) != 0 ||
                          !same_text(ink_db_str(r, 0, 2), ink_db_str(r, 0, 6)) ||
                          !same_text(ink_db_str(r, 0, 3), ink_db_str(r, 0, 7)) ||
                          !same_text(ink_db_str(r, 0, 4), ink_db_str(r, 0, 8));
    } else {
        snprintf(change->after, sizeof change->after, "%s", change->before);
    }
    PQclear(r);
    return INK_OK;
}
