/* The customer-facing billing service: subscription state, Checkout, Billing Portal. Every
 * Stripe call is made with no database connection held. */
#include "inklet/billing.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/billing_internal.h"
#include "inklet/ids.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/plan.h"
#include "inklet/stripe.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ink_err NOT_CONFIGURED = {"billing_not_configured",
                                              "Billing is not configured on this server."};
static const struct ink_err STRIPE_FAILED = {
    "stripe_error", "The payment provider did not answer as expected; please try again shortly."};

/* ---- GET /auth/subscription --------------------------------------------------------------- */

static const struct ink_sql SQL_SUBSCRIPTION = {
    "billing_subscription",
    "SELECT c.customer_id, sub.subscription_id, sub.status, sub.interval,"
    " extract(epoch FROM sub.current_period_start)::bigint,"
    " extract(epoch FROM sub.current_period_end)::bigint, sub.cancel_at_period_end"
    " FROM users u LEFT JOIN billing_customers c ON c.user_id = "
    "u.id" INK_SQL_JOIN_CURRENT_SUBSCRIPTION("u.id") " WHERE u.id = $1"};

enum ink_status ink_billing_subscription(const char *user_id, json_t **out)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_SUBSCRIPTION, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return INK_UNAUTHORIZED;
    }
    const char *status = ink_db_str(r, 0, 2);
    bool has = status != NULL;
    *out = json_pack("{s:s,s:o,s:o,s:o,s:o,s:b,s:o,s:o}", "status", has ? status : "none", "plan",
                     has ? json_string(INK_PLAN_PRO) : json_null(), "interval",
                     ink_json_str_or_null(ink_db_str(r, 0, 3)), "currentPeriodStart",
                     has && ink_db_str(r, 0, 4) ? ink_json_time(ink_db_ll(r, 0, 4)) : json_null(),
                     "currentPeriodEnd",
                     has && ink_db_str(r, 0, 5) ? ink_json_time(ink_db_ll(r, 0, 5)) : json_null(),
                     "cancelAtPeriodEnd", has && PQgetvalue(r, 0, 6)[0] == 't', "stripeCustomerId",
                     ink_json_str_or_null(ink_db_str(r, 0, 0)), "stripeSubscriptionId",
                     ink_json_str_or_null(ink_db_str(r, 0, 1)));
    PQclear(r);
    return INK_OK;
}

/* ---- customers ---------------------------------------------------------------------------- */

static const struct ink_sql SQL_ACCOUNT = {
    "billing_account",
    "SELECT u.email, c.customer_id, EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id"
    "  AND s.status IN ('active', 'trialing', 'past_due'))"
    " FROM users u LEFT JOIN billing_customers c ON c.user_id = u.id WHERE u.id = $1"};

/* DO UPDATE (not DO NOTHING) so RETURNING gives the row that won a race */
static const struct ink_sql SQL_SAVE_CUSTOMER = {
    "billing_save_customer",
    "INSERT INTO billing_customers (user_id, customer_id) VALUES ($1, $2)"
    " ON CONFLICT (user_id) DO UPDATE SET customer_id = billing_customers.customer_id"
    " RETURNING customer_id"};

struct account {
    char *email;
    char *customer; /* NULL until one exists */
    bool live;      /* an active, trialing or past_due subscription */
};

static void account_free(struct account *a)
{
    free(a->email);
    free(a->customer);
}

static enum ink_status load_account(const char *user_id, struct account *a)
{
    memset(a, 0, sizeof *a);
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_ACCOUNT, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) == 1) {
        a->email = ink_strdup(PQgetvalue(r, 0, 0));
        a->customer = ink_db_str(r, 0, 1) ? ink_strdup(ink_db_str(r, 0, 1)) : NULL;
        a->live = PQgetvalue(r, 0, 2)[0] == 't';
    } else {
        st = INK_UNAUTHORIZED;
    }
    PQclear(r);
    return st;
}

/* The key of a user's customer creation: the same for every request of that user (and email),
 * so two racing first checkouts get one customer from Stripe, which replays the first answer. */
static void customer_idempotency_key(const char *user_id, const char *email, char out[80])
{
    unsigned char md[32];
    unsigned n = 0;
    EVP_Digest(email, strlen(email), md, &n, EVP_sha256(), NULL);
    char hex[17];
    ink_hex_encode(md, 8, hex);
    snprintf(out, 80, "inklet-customer-%s-%s", user_id, hex);
}

static enum ink_status ensure_customer(const char *user_id, struct account *a, int64_t deadline)
{
    if (a->customer)
        return INK_OK;
    struct ink_form f;
    ink_form_init(&f);
    ink_form_add(&f, "email", a->email);
    ink_form_add(&f, "metadata[userId]", user_id);
    char key[80];
    customer_idempotency_key(user_id, a->email, key);
    json_t *cus;
    enum ink_status st = ink_stripe_call("POST", "/v1/customers", &f, key, deadline, &cus);
    ink_form_free(&f);
    if (st != INK_OK)
        return INK_UPSTREAM;
    const char *id = ink_stripe_str(cus, "id");
    if (!id) {
        ink_warn("stripe: a created customer has no id");
        json_decref(cus);
        return INK_UPSTREAM;
    }
    PGresult *r;
    st = ink_db_query(&SQL_SAVE_CUSTOMER, 2, (const char *[]){user_id, id}, &r);
    if (st == INK_OK) {
        a->customer = ink_strdup(PQgetvalue(r, 0, 0));
        if (strcmp(a->customer, id) != 0) /* the idempotency key had expired (24 h) */
            ink_warn("billing: user %s already has customer %s; Stripe customer %s is unused",
                     user_id, a->customer, id);
        PQclear(r);
    }
    json_decref(cus);
    return st;
}

/* ---- Checkout and Billing Portal ---------------------------------------------------------- */

/* Creates a Checkout or Billing Portal session from the parameters in `f` (freed here) under a
 * fresh idempotency key (its retries reuse it) and takes the URL the browser is sent to. */
static enum ink_status create_session(const char *path, const char *kind, struct ink_form *f,
                                      int64_t deadline, char **url)
{
    char key[64];
    snprintf(key, sizeof key, "inklet-%s-", kind);
    ink_uuid_v7(key + strlen(key));
    json_t *session = NULL;
    enum ink_status st = ink_stripe_call("POST", path, f, key, deadline, &session);
    ink_form_free(f);
    const char *u = st == INK_OK ? json_string_value(json_object_get(session, "url")) : NULL;
    if (st == INK_OK && (!u || strlen(u) > 4096 ||
                         (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0))) {
        ink_warn("stripe: a %s session came back without a usable url", kind);
        st = INK_UPSTREAM;
    }
    if (st == INK_OK)
        *url = ink_strdup(u);
    json_decref(session);
    return st;
}

static enum ink_status upstream_failed(enum ink_status st, struct ink_err *err)
{
    if (st == INK_UPSTREAM || st == INK_NOT_FOUND) {
        *err = STRIPE_FAILED;
        return INK_UPSTREAM;
    }
    return st;
}

enum ink_status ink_billing_checkout(const char *user_id, const char *interval, char **url,
                                     struct ink_err *err)
{
    *url = NULL;
    const struct ink_config *cfg = &ink_app.cfg;
    bool yearly = interval && strcmp(interval, "yearly") == 0;
    if (!interval || (!yearly && strcmp(interval, "monthly") != 0)) {
        *err = (struct ink_err){"invalid_interval", "interval must be \"monthly\" or \"yearly\"."};
        return INK_INVALID;
    }
    if (!ink_stripe_configured()) {
        *err = NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    struct account a;
    enum ink_status st = load_account(user_id, &a);
    if (st == INK_OK && a.live) {
        *err =
            (struct ink_err){"subscription_active",
                             "You already have a subscription; manage it in the billing portal."};
        st = INK_CONFLICT;
    }
    int64_t deadline = ink_stripe_budget();
    if (st == INK_OK)
        st = ensure_customer(user_id, &a, deadline);
    if (st == INK_OK) {
        struct ink_form f;
        ink_form_init(&f);
        ink_form_add(&f, "mode", "subscription");
        ink_form_add(&f, "customer", a.customer);
        ink_form_add(&f, "client_reference_id", user_id);
        ink_form_add(&f, "line_items[0][price]",
                     yearly ? cfg->stripe_price_yearly : cfg->stripe_price_monthly);
        ink_form_add(&f, "line_items[0][quantity]", "1");
        ink_form_add(&f, "success_url", cfg->billing_success_url);
        ink_form_add(&f, "cancel_url", cfg->billing_cancel_url);
        ink_form_add(&f, "subscription_data[metadata][userId]", user_id);
        st = create_session("/v1/checkout/sessions", "checkout", &f, deadline, url);
    }
    account_free(&a);
    return upstream_failed(st, err);
}

enum ink_status ink_billing_portal(const char *user_id, char **url, struct ink_err *err)
{
    *url = NULL;
    if (!ink_stripe_configured()) {
        *err = NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    struct account a;
    enum ink_status st = load_account(user_id, &a);
    int64_t deadline = ink_stripe_budget();
    if (st == INK_OK)
        st = ensure_customer(user_id, &a, deadline);
    if (st == INK_OK) {
        struct ink_form f;
        ink_form_init(&f);
        ink_form_add(&f, "customer", a.customer);
        ink_form_add(&f, "return_url", ink_app.cfg.billing_portal_return_url);
        st = create_session("/v1/billing_portal/sessions", "portal", &f, deadline, url);
    }
    account_free(&a);
    return upstream_failed(st, err);
}

/* ---- account deletion and housekeeping ---------------------------------------------------- */

static const struct ink_sql SQL_OWE_CANCELLATION = {
    "billing_owe_cancellation",
    "INSERT INTO billing_cancellations (customer_id, user_id)"
    " SELECT customer_id, user_id FROM billing_customers WHERE user_id = $1"
    " ON CONFLICT (customer_id) DO NOTHING"};

enum ink_status ink_billing_on_account_delete(struct ink_db *db, const char *user_id)
{
    return ink_db_exec(db, &SQL_OWE_CANCELLATION, 1, (const char *[]){user_id}, NULL);
}

void ink_billing_after_account_delete(const char *user_id)
{
    (void)user_id;
    ink_billing_canceller_kick();
}

static const struct ink_sql SQL_PRUNE_EVENTS = {
    "billing_prune_events",
    "DELETE FROM billing_events WHERE received_at < now() - interval '30 days'"};

enum ink_status ink_billing_prune(long long *count)
{
    return ink_db_affected(&SQL_PRUNE_EVENTS, count);
}
