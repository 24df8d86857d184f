-- GET /api/devices: devices_of (src/devices/registry.c); session_live as for /auth/me.
-- Statement text copied verbatim from the server source (what log_statement=all shows); only the
-- parameters are pgbench variables. Run by bench/limits.sh with pgbench -M prepared.
SELECT d.id, d.hw_id, d.thing_name, d.firmware, d.battery, extract(epoch FROM d.last_seen_at)::bigint, d.owner_id, extract(epoch FROM d.bound_at)::bigint, d.claim_code, d.state, extract(epoch FROM d.state_updated_at)::bigint, d.nickname, COALESCE(d.last_seen_at > now() - interval '90 seconds', false) FROM devices d WHERE d.owner_id = :uid ORDER BY d.bound_at DESC, d.id DESC;
