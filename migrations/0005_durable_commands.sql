-- Durable command delivery (contract §4, "Command delivery is durable"): a command is stored
-- first and published whenever its display is reachable, until it is delivered, canceled or
-- expires.

-- 'failed' (the broker was down, the old rule) no longer exists: such a command is now simply
-- not yet delivered. Old failed rows were never delivered; they count as expired.
ALTER TABLE device_commands DROP CONSTRAINT device_commands_status_check;
UPDATE device_commands SET status = 'expired' WHERE status = 'failed';
ALTER TABLE device_commands ADD CONSTRAINT device_commands_status_check
    CHECK (status IN ('queued', 'sent', 'delivered', 'expired', 'canceled'));

ALTER TABLE device_commands
    ADD COLUMN expires_at        timestamptz,  -- undelivered by then: expired (COMMAND_TTL)
    ADD COLUMN last_published_at timestamptz,  -- NULL: never handed to the broker yet
    ADD COLUMN publish_count     integer NOT NULL DEFAULT 0,
    -- the display's last sign of life (heartbeat or claim request) when this command was last
    -- published: a report of this command proves delivery of earlier ones only if they were
    -- published after it (a display that was offline missed what went out meanwhile)
    ADD COLUMN published_seen_at timestamptz;
UPDATE device_commands SET expires_at = created_at + interval '1 day';
ALTER TABLE device_commands ALTER COLUMN expires_at SET NOT NULL;

-- what a heartbeat redelivers, oldest first
CREATE INDEX device_commands_undelivered_idx ON device_commands (device_id, created_at, id)
    WHERE status IN ('queued', 'sent');

-- the per-thing limit on answering request_claim (shared by every instance)
ALTER TABLE devices ADD COLUMN claim_answered_at timestamptz;
