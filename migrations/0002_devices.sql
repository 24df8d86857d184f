-- Displays, their pairing state and their command log.

CREATE TABLE devices (
    id               uuid PRIMARY KEY,
    hw_id            uuid NOT NULL,
    thing_name       text NOT NULL,
    firmware         text,
    battery          integer CHECK (battery BETWEEN 0 AND 100),
    last_seen_at     timestamptz,
    owner_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    bound_at         timestamptz,
    nickname         text,
    claim_code       text,            -- only ever set while owner_id IS NULL
    claim_expires_at timestamptz,
    state            text,            -- the device's last state object, as JSON text
    state_updated_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (owner_id IS NULL OR claim_code IS NULL)
);
CREATE UNIQUE INDEX devices_hw_id_key ON devices (hw_id);
CREATE UNIQUE INDEX devices_thing_name_key ON devices (thing_name);
-- an expired code keeps its row until replaced (so a late attempt gets 410, not 404); a
-- collision with it when issuing is retried with a new code
CREATE UNIQUE INDEX devices_claim_code_key ON devices (claim_code) WHERE claim_code IS NOT NULL;
CREATE INDEX devices_owner_idx ON devices (owner_id, bound_at DESC) WHERE owner_id IS NOT NULL;

CREATE TABLE device_commands (
    id           uuid PRIMARY KEY,
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    payload      text NOT NULL,       -- the kind-specific fields as JSON text
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'sent', 'delivered', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    delivered_at timestamptz
);
CREATE INDEX device_commands_device_idx ON device_commands (device_id, created_at DESC, id DESC);
