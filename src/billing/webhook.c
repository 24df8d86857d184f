/* POST /billing/webhook: Stripe events, verified on the raw bytes, applied once, in order. */
#include "inklet/app.h"
#include "inklet/billing.h"
#include "inklet/billing_internal.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/stripe.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define EVENT_TYPE_MAX 128

static atomic_ullong n_applied, n_duplicate, n_ignored, n_rejected, n_failed;

void ink_billing_get_stats(struct ink_billing_stats *out)
{
    out->webhook_applied = atomic_load(&n_applied);
    out->webhook_duplicate = atomic_load(&n_duplicate);
    out->webhook_ignored = atomic_load(&n_ignored);
    out->webhook_rejected = atomic_load(&n_rejected);
    out->webhook_failed = atomic_load(&n_failed);
    ink_stripe_stats(&out->stripe_ok, &out->stripe_failed, &out->stripe_latency);
}

static void count(atomic_ullong *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

enum effect {
    EFFECT_SUBSCRIPTION,
    EFFECT_SUBSCRIPTION_DELETED,
    EFFECT_INVOICE_PAID,
    EFFECT_INVOICE_FAILED,
    EFFECT_CHECKOUT
};

static const struct {
    const char *type;
    enum effect effect;
} HANDLED[] = {
    {"customer.subscription.created", EFFECT_SUBSCRIPTION},
    {"customer.subscription.updated", EFFECT_SUBSCRIPTION},
    {"customer.subscription.deleted", EFFECT_SUBSCRIPTION_DELETED},
    {"invoice.paid", EFFECT_INVOICE_PAID},
    {"invoice.payment_failed", EFFECT_INVOICE_FAILED},
    {"checkout.session.completed", EFFECT_CHECKOUT},
};

struct event {
    const char *id, *type;
    long long created;
    json_t *object;
    enum effect effect;
};

const struct ink_sql ink_billing_event_insert_sql = {
    "billing_event_insert", "INSERT INTO billing_events (id, type, created) VALUES ($1, $2, $3)"
                            " ON CONFLICT (id) DO NOTHING"};

/* invoice events move the status of a subscription we know, in the same order rule as the
 * subscription objects: only from the listed statuses, never from canceled, never backwards */
static const struct ink_sql SQL_INVOICE_STATUS = {
    "billing_invoice_status",
    "UPDATE subscriptions SET status = $2, stripe_status = $2, state_at = $3::bigint,"
    " updated_at = now() WHERE subscription_id = $1 AND status = ANY (string_to_array($4, ','))"
    " AND state_at <= $3::bigint"};

static const struct ink_sql SQL_LINK_CUSTOMER = {
    "billing_link_customer",
    "INSERT INTO billing_customers (user_id, customer_id)"
    " SELECT id, $2 FROM users WHERE id = $1::uuid ON CONFLICT DO NOTHING"};

/* What checkout.session.completed knows: the subscription exists and was paid for. State 0, so
 * any subscription event (which carries the full object) overrides it. */
static const struct ink_sql SQL_CHECKOUT_PLACEHOLDER = {
    "billing_checkout_placeholder",
    "INSERT INTO subscriptions (subscription_id, user_id, customer_id, status, stripe_status,"
    " started_at, state_at)"
    " SELECT $1, user_id, $2, 'active', 'active', to_timestamp($3::bigint), 0"
    " FROM billing_customers WHERE customer_id = $2 ON CONFLICT (subscription_id) DO NOTHING"};

static const struct ink_sql SQL_CUSTOMER_KNOWN = {
    "billing_customer_known", "SELECT 1 FROM billing_customers WHERE customer_id = $1"};

static enum ink_status fail(struct ink_err *err, const char *code, const char *message)
{
    *err = (struct ink_err){code, message};
    return INK_INVALID;
}

static enum ink_status parse_event(json_t *root, struct event *ev, struct ink_err *err)
{
    ev->id = ink_stripe_str(root, "id");
    ev->type = json_string_value(json_object_get(root, "type"));
    ev->object = json_object_get(json_object_get(root, "data"), "object");
    if (!ev->id || !ev->type || strlen(ev->type) > EVENT_TYPE_MAX ||
        !ink_stripe_time(root, "created", &ev->created) || !json_is_object(ev->object))
        return fail(err, "invalid_payload",
                    "The event needs a string id and type, an integer created and data.object.");
    return INK_OK;
}

static bool handled(struct event *ev)
{
    for (size_t i = 0; i < sizeof HANDLED / sizeof *HANDLED; i++)
        if (strcmp(ev->type, HANDLED[i].type) == 0) {
            ev->effect = HANDLED[i].effect;
            return true;
        }
    return false;
}

static void note_unknown_customer(const struct event *ev, const char *customer)
{
    ink_warn("billing: %s %s is for customer %s, who is not one of ours; acknowledged", ev->type,
             ev->id, customer ? customer : "(none)");
}

static enum ink_status apply_subscription(struct ink_db *db, const struct event *ev)
{
    if (ev->effect == EFFECT_SUBSCRIPTION_DELETED)
        json_object_set_new(ev->object, "status", json_string("canceled"));
    struct ink_sub_change ch;
    enum ink_status st = ink_billing_apply_subscription(db, ev->object, ev->created, &ch);
    if (st != INK_OK)
        return st;
    if (!ch.known_customer)
        note_unknown_customer(ev, ink_stripe_ref(ev->object, "customer"));
    else if (!ch.applied)
        ink_info("billing: %s %s is older than the stored state of %s; ignored", ev->type, ev->id,
                 ink_stripe_str(ev->object, "id"));
    return INK_OK;
}

static enum ink_status apply_invoice(struct ink_db *db, const struct event *ev)
{
    /* API versions from 2025-03 move it to parent.subscription_details */
    const char *sub = ink_stripe_ref(ev->object, "subscription");
    if (!sub)
        sub = ink_stripe_ref(
            json_object_get(json_object_get(ev->object, "parent"), "subscription_details"),
            "subscription");
    if (!sub)
        return INK_OK; /* a one-off invoice: nothing of ours */
    char created[24];
    snprintf(created, sizeof created, "%lld", ev->created);
    bool paid = ev->effect == EFFECT_INVOICE_PAID;
    /* paid: a past_due subscription is active again (a trial's $0 invoice changes nothing);
     * failed: a live subscription is past_due */
    const char *params[] = {sub, paid ? "active" : "past_due", created,
                            paid ? "past_due,active" : "active,trialing,past_due"};
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_INVOICE_STATUS, 4, params, &r);
    if (st != INK_OK)
        return st;
    if (!*PQcmdTuples(r) || strcmp(PQcmdTuples(r), "0") == 0)
        ink_info("billing: %s %s changed nothing for %s", ev->type, ev->id, sub);
    PQclear(r);
    return INK_OK;
}

static enum ink_status apply_checkout(struct ink_db *db, const struct event *ev)
{
    json_t *o = ev->object;
    const char *mode = json_string_value(json_object_get(o, "mode"));
    const char *customer = ink_stripe_ref(o, "customer");
    const char *user = json_string_value(json_object_get(o, "client_reference_id"));
    const char *sub = ink_stripe_ref(o, "subscription");
    const char *paid = json_string_value(json_object_get(o, "payment_status"));
    if (!mode || strcmp(mode, "subscription") != 0 || !customer)
        return INK_OK;
    enum ink_status st;
    /* customers are ours already (we create them); this covers one whose row was lost */
    if (user && ink_uuid_valid(user) &&
        (st = ink_db_exec(db, &SQL_LINK_CUSTOMER, 2, (const char *[]){user, customer}, NULL)) !=
            INK_OK)
        return st;
    PGresult *r;
    if ((st = ink_db_exec(db, &SQL_CUSTOMER_KNOWN, 1, (const char *[]){customer}, &r)) != INK_OK)
        return st;
    bool known = PQntuples(r) == 1;
    PQclear(r);
    if (!known) {
        note_unknown_customer(ev, customer);
        return INK_OK;
    }
    if (!sub || !paid || (strcmp(paid, "paid") != 0 && strcmp(paid, "no_payment_required") != 0))
        return INK_OK;
    char created[24];
    snprintf(created, sizeof created, "%lld", ev->created);
    return ink_db_exec(db, &SQL_CHECKOUT_PLACEHOLDER, 3, (const char *[]){sub, customer, created},
                       NULL);
}

static enum ink_status apply(struct ink_db *db, const struct event *ev)
{
    switch (ev->effect) {
    case EFFECT_SUBSCRIPTION:
    case EFFECT_SUBSCRIPTION_DELETED:
        return apply_subscription(db, ev);
    case EFFECT_INVOICE_PAID:
    case EFFECT_INVOICE_FAILED:
        return apply_invoice(db, ev);
    case EFFECT_CHECKOUT:
        return apply_checkout(db, ev);
    }
    return INK_INTERNAL;
}

/* The event id goes in first: a concurrent delivery of the same id waits on its unique index
 * entry until this transaction ends, then finds it taken. */
static enum ink_status store(const struct event *ev, bool *duplicate)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    char created[24];
    snprintf(created, sizeof created, "%lld", ev->created);
    PGresult *r = NULL;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK ||
        (st = ink_db_exec(db, &ink_billing_event_insert_sql, 3,
                          (const char *[]){ev->id, ev->type, created}, &r)) != INK_OK)
        goto out;
    *duplicate = strcmp(PQcmdTuples(r), "1") != 0;
    if (!*duplicate && (st = apply(db, ev)) != INK_OK)
        goto out;
    st = ink_db_simple(db, "COMMIT");
out:
    PQclear(r);
    ink_db_release(db); /* rolls back what did not commit */
    return st;
}

static enum ink_status webhook(const char *signature, const char *body, size_t len,
                               struct ink_err *err)
{
    const char *secret = ink_app.cfg.stripe_webhook_secret;
    if (!secret || !*secret) {
        *err = (struct ink_err){"billing_not_configured", "Billing is not configured."};
        return INK_UNAVAILABLE;
    }
    switch (ink_stripe_verify_signature(signature, body, len, secret, time(NULL),
                                        INK_STRIPE_SIG_TOLERANCE)) {
    case INK_SIG_OK:
        break;
    case INK_SIG_STALE:
        return fail(err, "invalid_signature",
                    "The Stripe-Signature timestamp is more than 300 s away from now.");
    case INK_SIG_MISSING:
        return fail(err, "invalid_signature",
                    "A Stripe-Signature header with t and v1 is required.");
    case INK_SIG_MALFORMED:
    case INK_SIG_MISMATCH:
        return fail(err, "invalid_signature", "The Stripe-Signature does not match the payload.");
    }
    json_t *root = NULL;
    const char *why = NULL;
    if (!body || ink_json_parse_object(body, len, &root, &why) != INK_OK)
        return fail(err, "invalid_payload", "The payload is not a JSON object.");
    struct event ev;
    enum ink_status st = parse_event(root, &ev, err);
    if (st == INK_OK && !handled(&ev)) {
        ink_debug("billing: %s %s is not a type we handle; acknowledged", ev.type, ev.id);
        count(&n_ignored);
    } else if (st == INK_OK) {
        bool duplicate = false;
        st = store(&ev, &duplicate);
        if (st == INK_INVALID) {
            fail(err, "invalid_payload", "The event's object lacks fields it must have.");
        } else if (st == INK_OK && duplicate) {
            ink_info("billing: %s %s was already applied; acknowledged", ev.type, ev.id);
            count(&n_duplicate);
        } else if (st == INK_OK) {
            count(&n_applied);
        } else {
            st = INK_UNAVAILABLE; /* 5xx either way: Stripe retries */
        }
    }
    json_decref(root);
    return st;
}

enum ink_status ink_billing_webhook(const char *signature, const char *body, size_t len,
                                    struct ink_err *err)
{
    enum ink_status st = webhook(signature, body, len, err);
    if (st == INK_INVALID)
        count(&n_rejected);
    else if (st != INK_OK && err->code == NULL)
        count(&n_failed);
    return st;
}
