/** The billing vocabulary every area shares: the contract's five subscription statuses, how
 *  Stripe's statuses map onto them, and which of them make an account Pro. A leaf module (no
 *  database, no Stripe), so the account service can render `plan` without depending on billing. */
#ifndef INKLET_PLAN_H
#define INKLET_PLAN_H
#include "inklet/strbuf.h"

#include <stdbool.h>

/** The one paid plan's name, as `plan` shows it. */
#define INK_PLAN_PRO "pro"
#define INK_PLAN_FREE "free"

/** The contract's status for a Stripe subscription status (never NULL): "active", "trialing",
 *  "past_due", "canceled" or "none". */
const char *ink_plan_status_from_stripe(const char *stripe_status);
/** True for the statuses that make an account Pro and block a second checkout: active,
 *  trialing, past_due. */
bool ink_plan_status_is_live(const char *status);
/** "monthly" / "yearly" for a Stripe price interval ("month" / "year"); NULL otherwise. */
const char *ink_plan_interval_from_stripe(const char *interval);
/** Writes the `subscription` value of GET /auth/me ({status, plan, interval, currentPeriodEnd,
 *  cancelAtPeriodEnd}), or null when status is NULL or "none" (inklet/json_text.h; the caller
 *  sized the buffer for status and interval). */
void ink_plan_write_me_subscription(struct ink_sb *sb, const char *status, const char *interval,
                                    long long period_end, bool cancel_at_period_end);
/** The `plan` of GET /auth/me for a status (NULL: no subscription). */
const char *ink_plan_name(const char *status);

/** The subscription an account shows, as a LATERAL join on `user_expr` (a users.id column):
 *  a live one (active, trialing, past_due) before any other, then the newest; rows whose status
 *  is none (incomplete) are never shown. Used by GET /auth/me and GET /auth/subscription, so the
 *  two always agree. Columns: sub.subscription_id, sub.status, sub.interval,
 *  sub.current_period_start, sub.current_period_end, sub.cancel_at_period_end. */
#define INK_SQL_JOIN_CURRENT_SUBSCRIPTION(user_expr)                                               \
    " LEFT JOIN LATERAL (SELECT subscription_id, status, interval, current_period_start,"          \
    " current_period_end, cancel_at_period_end FROM subscriptions"                                 \
    " WHERE user_id = " user_expr " AND status <> 'none'"                                          \
    " ORDER BY status IN ('active', 'trialing', 'past_due') DESC, started_at DESC,"                \
    " subscription_id DESC LIMIT 1) sub ON true"

#endif
