/* Cancels, at Stripe, the subscriptions of deleted accounts. A deletion writes a row into
 * billing_cancellations in its own transaction, so the debt survives a crash; this thread (and
 * `inkletd billing-sync`) works the rows off. A row is leased with FOR UPDATE SKIP LOCKED, so
 * several instances never work one customer at once; a failure pushes it back by 5 s, doubling
 * up to 1 h, and the thread sleeps until the earliest row is due (at most 30 s). It never gives up
 * (a deleted user must not go on paying), but it complains louder after a day. */
#include "inklet/billing.h"

#include "inklet/bgjob.h"
#include "inklet/billing_internal.h"
#include "inklet/deadline.h"
#include "inklet/log.h"
#include "inklet/plan.h"
#include "inklet/stripe.h"

#include <stdio.h>
#include <string.h>

#define POLL_SECONDS 30
#define LEASE "5 minutes"
#define MAX_PAGES 20

static const struct ink_sql SQL_CLAIM = {
    "billing_cancel_claim",
    "UPDATE billing_cancellations SET attempts = attempts + 1,"
    " next_attempt_at = now() + interval '" LEASE "'"
    " WHERE customer_id = (SELECT customer_id FROM billing_cancellations"
    "  WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING customer_id, user_id, attempts,"
    "  (now() - requested_at > interval '1 day')"};

/* seconds until the earliest row is due (0 when one is due now); NULL when there is none */
static const struct ink_sql SQL_NEXT_DUE = {
    "billing_cancel_next_due",
    "SELECT GREATEST(0, ceil(extract(epoch FROM min(next_attempt_at) - now())))::bigint"
    " FROM billing_cancellations"};

static const struct ink_sql SQL_DONE = {"billing_cancel_done",
                                        "DELETE FROM billing_cancellations WHERE customer_id = $1"};

static const struct ink_sql SQL_RETRY = {
    "billing_cancel_retry",
    "UPDATE billing_cancellations SET last_error = $2, next_attempt_at = now()"
    " + make_interval(secs => LEAST(3600, 5 * power(2, LEAST(attempts - 1, 12))))"
    " WHERE customer_id = $1"};

/* Stripe statuses of a subscription that still bills (or may): everything but the terminal
 * canceled and incomplete_expired. */
static bool still_billing(const char *stripe_status)
{
    return stripe_status && strcmp(stripe_status, "canceled") != 0 &&
           strcmp(stripe_status, "incomplete_expired") != 0;
}

/* Lists the customer's subscriptions and cancels every one that still bills. */
static enum ink_status cancel_customer(const char *customer, unsigned *cancelled)
{
    char after[INK_STRIPE_ID_MAX + 1] = "";
    for (int page = 0; page < MAX_PAGES; page++) {
        struct ink_form q;
        ink_form_init(&q);
        ink_form_add(&q, "customer", customer);
        ink_form_add(&q, "status", "all");
        ink_form_add(&q, "limit", "100");
        if (*after)
            ink_form_add(&q, "starting_after", after);
        json_t *list;
        enum ink_status st =
            ink_stripe_call("GET", "/v1/subscriptions", &q, NULL, ink_stripe_budget(), &list);
        ink_form_free(&q);
        if (st == INK_NOT_FOUND)
            return INK_OK; /* the customer is gone at Stripe: nothing bills */
        if (st != INK_OK)
            return st;
        json_t *data = json_object_get(list, "data"), *sub;
        size_t i;
        json_array_foreach(data, i, sub)
        {
            const char *id = ink_stripe_str(sub, "id");
            if (!id || !still_billing(ink_stripe_str(sub, "status")))
                continue;
            if (!ink_stripe_id_safe(id)) {
                ink_warn("billing: Stripe listed a subscription id that is not an id; skipped");
                continue;
            }
            char path[INK_STRIPE_ID_MAX + 32];
            snprintf(path, sizeof path, "/v1/subscriptions/%s", id);
            json_t *gone = NULL;
            st = ink_stripe_call("DELETE", path, NULL, NULL, ink_stripe_budget(), &gone);
            json_decref(gone);
            if (st != INK_OK && st != INK_NOT_FOUND) {
                json_decref(list);
                return st;
            }
            ink_info("billing: cancelled %s of deleted customer %s", id, customer);
            (*cancelled)++;
        }
        size_t n = json_array_size(data);
        const char *last = n ? ink_stripe_str(json_array_get(data, n - 1), "id") : NULL;
        bool more = json_is_true(json_object_get(list, "has_more")) && last;
        if (more)
            snprintf(after, sizeof after, "%s", last);
        json_decref(list);
        if (!more)
            return INK_OK;
    }
    return INK_OK; /* 2,000 subscriptions for one customer: the rest on the next round */
}

/* Claims one due row and works it. False when nothing was due (or the database failed). */
static bool work_one(unsigned *done, unsigned *failed)
{
    PGresult *r;
    if (ink_db_query(&SQL_CLAIM, 0, NULL, &r) != INK_OK)
        return false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return false;
    }
    char customer[INK_STRIPE_ID_MAX + 1], user[40];
    snprintf(customer, sizeof customer, "%s", PQgetvalue(r, 0, 0));
    snprintf(user, sizeof user, "%s", PQgetvalue(r, 0, 1));
    bool overdue = PQgetvalue(r, 0, 3)[0] == 't';
    PQclear(r);
    unsigned cancelled = 0;
    enum ink_status st = cancel_customer(customer, &cancelled);
    if (st == INK_OK) {
        ink_db_query(&SQL_DONE, 1, (const char *[]){customer}, NULL);
        ink_info("billing: deleted user %s: %u subscription(s) cancelled at Stripe", user,
                 cancelled);
        if (done)
            (*done)++;
    } else {
        ink_db_query(&SQL_RETRY, 2, (const char *[]){customer, "Stripe call failed"}, NULL);
        ink_log(overdue ? INK_LOG_ERROR : INK_LOG_WARN,
                "billing: could not cancel the subscriptions of deleted user %s (customer %s)"
                "%s; will retry",
                user, customer, overdue ? " for more than a day" : "");
        if (failed)
            (*failed)++;
    }
    return true;
}

void ink_billing_cancel_due(unsigned *done, unsigned *failed)
{
    if (!ink_stripe_configured())
        return;
    /* bounded per round, so one round cannot run away */
    for (int i = 0; i < 100 && work_one(done, failed); i++)
        ;
}

/* ---- the thread --------------------------------------------------------------------------- */

static struct ink_bgjob *job;

void ink_billing_canceller_kick(void)
{
    ink_bgjob_kick(job);
}

/* One round, then sleep until the earliest retry is due (back-off starts at 5 s), at most
 * POLL_SECONDS, which also picks up rows another instance left behind. */
static long canceller_round(void)
{
    ink_billing_cancel_due(NULL, NULL);
    return ink_db_seconds_until(&SQL_NEXT_DUE, POLL_SECONDS) * 1000;
}

bool ink_billing_canceller_start(void)
{
    if (!ink_stripe_configured())
        return true;
    job = ink_bgjob_start("billing canceller", canceller_round);
    return job != NULL;
}

void ink_billing_canceller_stop(void)
{
    ink_bgjob_stop(job);
    job = NULL;
}
