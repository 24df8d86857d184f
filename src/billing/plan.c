#include "inklet/plan.h"

#include "inklet/json_text.h"

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

void ink_plan_write_me_subscription(struct ink_sb *sb, const char *status, const char *interval,
                                    long long period_end, bool cancel_at_period_end)
{
    if (!status || strcmp(status, "none") == 0) {
        ink_sb_puts(sb, "null");
        return;
    }
    ink_sb_puts(sb, "{");
    ink_jt_str(sb, "status", status);
    ink_jt_str(sb, "plan", INK_PLAN_PRO);
    ink_jt_str(sb, "interval", interval);
    ink_jt_time(sb, "currentPeriodEnd", period_end);
    ink_jt_bool(sb, "cancelAtPeriodEnd", cancel_at_period_end);
    ink_sb_puts(sb, "}");
}
