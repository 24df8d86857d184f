#include "inklet/plan.h"

#include "inklet/json.h"

#include <string.h>

/* Stripe's subscription statuses (https://docs.stripe.com/billing/subscriptions/overview) onto
 * the contract's five. The four it shares map to themselves. The rest:
 *  - unpaid: Stripe gave up retrying but the subscription is still open and owes money; the
 *    customer fixes it in the billing portal. past_due keeps it visible and blocks a second
 *    checkout (which would bill twice).
 *  - paused: a trial ended without a payment method; the same reasoning.
 *  - incomplete: the first payment has not succeeded (nothing was ever paid), and
 *    incomplete_expired: it never will (terminal). Neither is a subscription the user has: none.
 *  - anything Stripe adds later: none, until someone decides otherwise. */
static const struct {
    const char *stripe, *ours;
} STATUS_MAP[] = {
    {"active", "active"},     {"trialing", "trialing"},       {"past_due", "past_due"},
    {"canceled", "canceled"}, {"unpaid", "past_due"},         {"paused", "past_due"},
    {"incomplete", "none"},   {"incomplete_expired", "none"},
};

const char *ink_plan_status_from_stripe(const char *stripe_status)
{
    for (size_t i = 0; stripe_status && i < sizeof STATUS_MAP / sizeof *STATUS_MAP; i++)
        if (strcmp(stripe_status, STATUS_MAP[i].stripe) == 0)
            return STATUS_MAP[i].ours;
    return "none";
}

bool ink_plan_status_is_live(const char *status)
{
    return status && (strcmp(status, "active") == 0 || strcmp(status, "trialing") == 0 ||
                      strcmp(status, "past_due") == 0);
}

const char *ink_plan_interval_from_stripe(const char *interval)
{
    if (!interval)
        return NULL;
    if (strcmp(interval, "month") == 0)
        return "monthly";
    if (strcmp(interval, "year") == 0)
        return "yearly";
    return NULL;
}

const char *ink_plan_name(const char *status)
{
    return ink_plan_status_is_live(status) ? INK_PLAN_PRO : INK_PLAN_FREE;
}

json_t *ink_plan_me_subscription(const char *status, const char *interval, long long period_end,
                                 bool cancel_at_period_end)
{
    if (!status || strcmp(status, "none") == 0)
        return json_null();
    return json_pack("{s:s,s:s,s:o,s:o,s:b}", "status", status, "plan", INK_PLAN_PRO, "interval",
                     ink_json_str_or_null(interval), "currentPeriodEnd", ink_json_time(period_end),
                     "cancelAtPeriodEnd", cancel_at_period_end);
}
