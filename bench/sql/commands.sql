-- POST /api/devices/{id}/commands: device_by_id (src/devices/device_row.c), then cmd_insert
-- (src/devices/commands.c) with the display online. The server's $1 is a client-side UUIDv7;
-- gen_random_uuid() here. (The publisher's batched cmd_sent_batch, on its own connection with
-- synchronous_commit = off, is not part of the request.)
-- Statement text copied verbatim from the server source (what log_statement=all shows); only the
-- parameters are pgbench variables. Run by bench/limits.sh with pgbench -M prepared.
-- tests/unit/test_bench_sql.c fails when this text and the server's differ.
\set d random(0, :devices - 1)
SELECT d.id, d.hw_id, d.thing_name, d.firmware, d.battery, extract(epoch FROM d.last_seen_at)::bigint, d.owner_id, extract(epoch FROM d.bound_at)::bigint, d.claim_code, d.state, extract(epoch FROM d.state_updated_at)::bigint, d.nickname, COALESCE(d.last_seen_at > now() - interval '90 seconds', false) FROM devices d WHERE d.id = md5(:thing::text || :d::text)::uuid;
INSERT INTO device_commands AS c (id, device_id, kind, payload, status, expires_at, last_published_at, publish_count, published_seen_at) VALUES (gen_random_uuid(), md5(:thing::text || :d::text)::uuid, 'text', :payload, 'queued', now() + make_interval(secs => :cmd_ttl::int),  CASE WHEN 't'::bool THEN now() END, CASE WHEN 't'::bool THEN 1 ELSE 0 END,  CASE WHEN 't'::bool THEN (SELECT last_seen_at FROM devices WHERE id = md5(:thing::text || :d::text)::uuid::uuid) END) RETURNING c.id, c.kind, c.payload, CASE WHEN c.status IN ('queued', 'sent') AND c.expires_at <= now() THEN 'expired' ELSE c.status END, extract(epoch FROM c.created_at)::bigint, extract(epoch FROM c.sent_at)::bigint, extract(epoch FROM c.delivered_at)::bigint, extract(epoch FROM c.expires_at)::bigint;
