-- Email verification, password reset and security notices (contract §2.2, docs/email.md).

-- NULL: nobody has shown they read mail at this address. Set by a verification link, a password
-- reset (the link reached the inbox) or a provider that vouches for the address; cleared by an
-- email change.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
-- Accounts created through Google or Apple came with a provider-verified address.
UPDATE users SET email_verified_at = created_at WHERE created_via <> 'password';

-- Reset and verification links. Only the SHA-256 of the token is stored; a token is spent by
-- one DELETE ... RETURNING, so two requests with one token never both succeed.
CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('reset', 'verify')),
    email       text NOT NULL,            -- the address the link was sent to
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_expires_idx ON email_tokens (expires_at);

-- Every mail, written in the same transaction as the change that causes it, and sent by
-- whichever instance claims the row first (FOR UPDATE SKIP LOCKED). The payload holds the
-- template's variables, a link token included, and is erased once the row is finished.
CREATE TABLE mail_outbox (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    to_address      text NOT NULL,
    payload         jsonb,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'given_up')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    not_after       timestamptz NOT NULL,  -- still undelivered then: given up
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    finished_at     timestamptz
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX mail_outbox_finished_idx ON mail_outbox (finished_at) WHERE state <> 'queued';

-- Mail requests per recipient address in a fixed one-hour window, shared by every instance.
-- Keyed by a hash, counted for unknown addresses too, so a refusal says nothing about accounts.
CREATE TABLE mail_throttle (
    key          bytea PRIMARY KEY,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL
);
