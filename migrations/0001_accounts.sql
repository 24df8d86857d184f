-- Accounts, sessions and rotating refresh tokens.

CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL,
    username            text NOT NULL,
    password_hash       text,                 -- PHC string; NULL for OAuth-only accounts
    created_via         text NOT NULL DEFAULT 'password' CHECK (created_via IN ('password', 'google', 'apple')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- email is stored trimmed and lower-cased; usernames are unique case-insensitively
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent      text,
    ip              text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_active_at  timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,     -- absolute lifetime (SESSION_MAX_TTL)
    revoked_at      timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only the SHA-256 of a refresh token is stored. A row is single-use: rotation sets used_at
-- with a conditional UPDATE, and a second presentation of a used row is reuse.
CREATE TABLE refresh_tokens (
    token_hash      bytea PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    idle_expires_at timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE oauth_identities (
    provider    text NOT NULL CHECK (provider IN ('google', 'apple')),
    subject     text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_idx ON oauth_identities (user_id);

-- Consecutive failed logins per sign-in name: 'user:<id>' for an account (whichever of its
-- names was typed), 'name:<identifier>' for a name no account has. Unknown names get the same
-- counter, the same back-off and the same database work as real accounts, so neither the 429 nor
-- the timing of a failed login tells whether an account exists.
CREATE TABLE login_failures (
    key           text PRIMARY KEY,
    failures      integer NOT NULL,
    blocked_until timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
