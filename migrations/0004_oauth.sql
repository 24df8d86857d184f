-- Google and Apple sign-in (contract §2.1): the browser flow's single-use states, the Apple
-- refresh token kept for revocation, and the revocations owed for deleted accounts.

-- One row per started browser sign-in. Only the SHA-256 of `state` is stored (it travels in
-- URLs); the row is consumed with DELETE … RETURNING, so a state works once, also across
-- instances. `code_verifier` is the PKCE secret (Google); `nonce` binds the ID token to this
-- sign-in.
CREATE TABLE oauth_states (
    state_hash     bytea PRIMARY KEY,
    provider       text NOT NULL CHECK (provider IN ('google', 'apple')),
    client         text NOT NULL CHECK (client IN ('web', 'desktop')),
    code_verifier  text,
    nonce          text NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);

-- Apple's refresh token of an identity, sealed with TOKEN_ENCRYPTION_KEY (src/core/secretbox.c),
-- and the client id it was issued to; needed to revoke it when the account is deleted.
ALTER TABLE oauth_identities
    ADD COLUMN refresh_token_sealed bytea,
    ADD COLUMN client_id text;

-- Revocations owed at the provider for deleted accounts: written in the deletion's transaction
-- (the identity rows go with the user), worked off by a background job, given up after a day.
CREATE TABLE oauth_revocations (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider             text NOT NULL,
    subject              text NOT NULL,
    client_id            text NOT NULL,
    refresh_token_sealed bytea NOT NULL,
    requested_at         timestamptz NOT NULL DEFAULT now(),
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_revocations_due_idx ON oauth_revocations (next_attempt_at);
