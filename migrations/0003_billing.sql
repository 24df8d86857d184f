-- Stripe billing: customers we created, the subscriptions Stripe told us about, the webhook
-- events already applied, and the cancellations owed for deleted accounts.

-- One Stripe customer per user, created lazily on the first checkout or portal call.
CREATE TABLE billing_customers (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    customer_id  text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Every subscription of a known customer, as last reported by Stripe. `status` is one of the
-- contract's five (src/billing/plan.c maps Stripe's statuses); `stripe_status` is Stripe's own.
-- `state_at` is the `created` time of the event (or the time of the billing-sync) whose snapshot
-- the row holds: an older snapshot never replaces a newer one, and a canceled subscription never
-- comes back (Stripe cannot reactivate one either).
CREATE TABLE subscriptions (
    subscription_id      text PRIMARY KEY,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    customer_id          text NOT NULL,
    status               text NOT NULL
                         CHECK (status IN ('none', 'active', 'trialing', 'past_due', 'canceled')),
    stripe_status        text NOT NULL,
    price_id             text,
    interval             text CHECK (interval IN ('monthly', 'yearly')),
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    started_at           timestamptz NOT NULL,
    state_at             bigint NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_user_idx ON subscriptions (user_id);
-- The subscription an account shows (INK_SQL_JOIN_CURRENT_SUBSCRIPTION in include/inklet/plan.h)
-- in index order, so GET /auth/me reads one index entry whatever the planner thinks of the
-- table: without it a skewed table (one customer with many subscriptions) turned the lateral
-- join into a sequential scan and sort on every request (13 ms instead of 0.2 ms).
CREATE INDEX subscriptions_current_idx ON subscriptions
    (user_id, (status IN ('active', 'trialing', 'past_due')) DESC, started_at DESC,
     subscription_id DESC)
    WHERE status <> 'none';

-- Webhook events already applied, stored in the same transaction as their effect, so a
-- redelivery (or ten concurrent ones) has no second effect. Pruned after 30 days; Stripe retries
-- for three.
CREATE TABLE billing_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    created      bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_events_received_idx ON billing_events (received_at);

-- Subscriptions to cancel at Stripe for deleted accounts, written in the deletion's transaction
-- and worked off by the canceller (src/billing/canceller.c) with back-off. No foreign key: the
-- user is gone.
CREATE TABLE billing_cancellations (
    customer_id      text PRIMARY KEY,
    user_id          uuid NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text
);
CREATE INDEX billing_cancellations_due_idx ON billing_cancellations (next_attempt_at);
