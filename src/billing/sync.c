/* `inkletd billing-sync`: the repair for lost webhooks. Stripe stops retrying a delivery after
 * three days, and a wrong STRIPE_WEBHOOK_SECRET loses every event with a 400; this walks every
 * subscription Stripe has (newest first, 100 per page, `starting_after`) and applies each one
 * through the same ordered upsert as the webhook, stamped with the time of the run, so a
 * webhook that is newer still wins and one that is older cannot undo the repair. Safe while the
 * daemon serves. Then it works off the cancellations owed for deleted accounts. */
#include "inklet/billing.h"

#include "inklet/billing_internal.h"
#include "inklet/stripe.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* 100 per page: a million subscriptions is 10,000 pages; stop well before a runaway loop */
#define MAX_PAGES 100000

struct tally {
    unsigned checked, changed, unknown;
};

static enum ink_status apply_page(json_t *data, long long now, struct tally *t, FILE *out)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    size_t i;
    json_t *sub;
    json_array_foreach(data, i, sub)
    {
        struct ink_sub_change ch;
        st = ink_billing_apply_subscription(db, sub, now, &ch);
        if (st == INK_INVALID) {
            fprintf(out, "skipped: a subscription object without id, customer or status\n");
            st = INK_OK; /* one odd object is not a failed run */
            continue;
        }
        if (st != INK_OK)
            break;
        t->checked++;
        if (!ch.known_customer) {
            t->unknown++;
        } else if (ch.changed) {
            t->changed++;
            fprintf(out, "%s (customer %s): %s -> %s\n", ink_stripe_str(sub, "id"),
                    ink_stripe_ref(sub, "customer"), ch.before, ch.after);
        }
    }
    ink_db_release(db);
    return st;
}

int ink_billing_sync(FILE *out)
{
    if (!ink_stripe_configured()) {
        fprintf(stderr, "billing-sync: STRIPE_SECRET_KEY is not set\n");
        return 1;
    }
    struct tally t = {0};
    char after[INK_STRIPE_ID_MAX + 1] = "";
    long long now = (long long)time(NULL);
    enum ink_status st = INK_OK;
    for (int page = 0; page < MAX_PAGES; page++) {
        struct ink_form q;
        ink_form_init(&q);
        ink_form_add(&q, "status", "all");
        ink_form_add(&q, "limit", "100");
        if (*after)
            ink_form_add(&q, "starting_after", after);
        json_t *list;
        st = ink_stripe_call("GET", "/v1/subscriptions", &q, NULL, ink_stripe_budget(), &list);
        ink_form_free(&q);
        if (st != INK_OK)
            break;
        json_t *data = json_object_get(list, "data");
        st = json_is_array(data) ? apply_page(data, now, &t, out) : INK_UPSTREAM;
        size_t n = json_array_size(data);
        const char *last = n ? ink_stripe_str(json_array_get(data, n - 1), "id") : NULL;
        bool more = st == INK_OK && json_is_true(json_object_get(list, "has_more")) && last;
        if (more)
            snprintf(after, sizeof after, "%s", last);
        json_decref(list);
        if (!more)
            break;
    }
    unsigned done = 0, failed = 0;
    if (st == INK_OK)
        ink_billing_cancel_due(&done, &failed);
    fprintf(out,
            "billing-sync: %u subscriptions checked, %u changed, %u of unknown customers; "
            "%u deleted accounts' cancellations done, %u failed\n",
            t.checked, t.changed, t.unknown, done, failed);
    if (st != INK_OK) {
        fprintf(stderr, "billing-sync: stopped early: %s\n",
                st == INK_UPSTREAM ? "Stripe failed (see the log)" : "the database failed");
        return 1;
    }
    return failed ? 1 : 0;
}
