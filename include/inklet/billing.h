/** Billing (contract §3): Stripe customers created lazily, Checkout and Billing Portal sessions,
 *  webhook events applied once and in order, cancellations owed for deleted accounts, and the
 *  reconciliation run. The state machine is described in docs/billing.md. */
#ifndef INKLET_BILLING_H
#define INKLET_BILLING_H
#include "inklet/auth.h"
#include "inklet/db.h"

#include <jansson.h>
#include <stdio.h>

/** GET /auth/subscription (new reference). INK_UNAUTHORIZED when the user is gone. */
enum ink_status ink_billing_subscription(const char *user_id, json_t **out);
/** POST /auth/subscription/checkout: *url (malloc'd) is the Checkout Session's URL. */
enum ink_status ink_billing_checkout(const char *user_id, const char *interval, char **url,
                                     struct ink_err *err);
/** POST /auth/subscription/portal: *url (malloc'd) is the Billing Portal session's URL. */
enum ink_status ink_billing_portal(const char *user_id, char **url, struct ink_err *err);

/** POST /billing/webhook: verifies `signature` on the raw body, then stores the event and its
 *  effect in one transaction. INK_OK also for duplicates, ignored types and unknown customers;
 *  INK_INVALID (err filled) for a bad signature or payload; INK_UNAVAILABLE when it could not be
 *  stored. */
enum ink_status ink_billing_webhook(const char *signature, const char *body, size_t len,
                                    struct ink_err *err);

/** What applying one Stripe subscription object did (for billing-sync's report). */
struct ink_sub_change {
    bool known_customer; /* the customer is one of ours */
    bool applied;        /* the row now holds this snapshot */
    bool changed;        /* ... and that changed status, interval, period end or cancellation */
    char before[16], after[16]; /* statuses ("none" when the row did not exist) */
};
/** Stores the state of Stripe subscription object `sub` as of `state_at` (unix seconds) unless
 *  the row holds a newer snapshot or the subscription is already canceled. INK_INVALID when the
 *  object lacks id, customer or status. */
enum ink_status ink_billing_apply_subscription(struct ink_db *db, json_t *sub, long long state_at,
                                               struct ink_sub_change *change);

/** Account deletion, inside its transaction: records that the user's Stripe subscriptions must
 *  be cancelled. After the commit: wakes the canceller. */
enum ink_status ink_billing_on_account_delete(struct ink_db *db, const char *user_id);
void ink_billing_after_account_delete(const char *user_id);

/** The canceller: a thread that lists and cancels the subscriptions of deleted accounts at
 *  Stripe, retrying with back-off (5 s doubling to 1 h) until it succeeds. Several instances
 *  share the work (rows are leased with SKIP LOCKED). No-op without STRIPE_SECRET_KEY. */
bool ink_billing_canceller_start(void);
void ink_billing_canceller_stop(void);
/** Works off every cancellation that is due now; counts what it did (either may be NULL). */
void ink_billing_cancel_due(unsigned *done, unsigned *failed);

/** `inkletd billing-sync`: lists every subscription at Stripe and applies those of known
 *  customers; prints one line per change and a summary to `out`. 0 on success, 1 on failure. */
int ink_billing_sync(FILE *out);

/** Counters for /metrics. */
struct ink_histogram;
struct ink_billing_stats {
    unsigned long long webhook_applied;   /* stored with their effect (or none: unknown customer,
                                             older than the stored state) */
    unsigned long long webhook_duplicate; /* an id already stored */
    unsigned long long webhook_ignored;   /* a type we do not handle */
    unsigned long long webhook_rejected;  /* 400: signature or payload */
    unsigned long long webhook_failed;    /* 5xx: could not be stored, Stripe retries */
    unsigned long long stripe_ok, stripe_failed; /* API calls (after their retries) */
    const struct ink_histogram *stripe_latency;  /* seconds per call, retries included */
};
void ink_billing_get_stats(struct ink_billing_stats *out);

/** Deletes applied-event records older than 30 days. */
enum ink_status ink_billing_prune(long long *count);

/* The statements bench/limits.sh measures as this route's database ceiling (bench/sql/webhook.sql);
 * tests/unit/test_bench_sql.c checks the file still holds this text. */
/** A new event id ($1 id, $2 type, $3 created), ON CONFLICT DO NOTHING: the webhook's dedupe. */
extern const struct ink_sql ink_billing_event_insert_sql;
/** The subscription upsert of ink_billing_apply_subscription (11 parameters). */
extern const struct ink_sql ink_billing_apply_sql;

#endif
