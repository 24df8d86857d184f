-- MQTT heartbeat of a known device: device_heartbeat (src/devices/link.c), on an ingest
-- worker connection with synchronous_commit = off (src/iot/ingest.c; limits.sh sets it via PGOPTIONS).
-- The server's $1 (a fresh id used only when the device is new) is a constant here.
-- Statement text copied verbatim from the server source (what log_statement=all shows); only the
-- parameters are pgbench variables. Run by bench/limits.sh with pgbench -M prepared.
-- tests/unit/test_bench_sql.c fails when this text and the server's differ.
-- Each client keeps to its own devices (client_id + clients * k), as the server sends each
-- device's messages to one ingest worker (src/iot/ingest.c, pick): two clients upserting one
-- device at once hit PostgreSQL's ON CONFLICT race on the other unique index (devices_hw_id_key),
-- which aborted this ceiling now and then.
\set d :client_id + :clients * random(0, :devices / :clients - 1)
INSERT INTO devices (id, hw_id, thing_name, firmware, battery, last_seen_at) VALUES (:newid, md5(:thing::text || :d::text)::uuid, :thing::text || :d::text, :fw, :d, now()) ON CONFLICT (thing_name) DO UPDATE SET  firmware = COALESCE(EXCLUDED.firmware, devices.firmware),  battery = COALESCE(EXCLUDED.battery, devices.battery), last_seen_at = now()  WHERE devices.hw_id = EXCLUDED.hw_id RETURNING id, owner_id IS NOT NULL,  claim_code IS NOT NULL AND claim_expires_at > now(), claim_code,  extract(epoch FROM claim_expires_at)::bigint,  (SELECT true FROM device_commands c WHERE c.device_id = devices.id   AND c.status IN ('queued', 'sent') AND c.expires_at > now()   AND (c.last_published_at IS NULL OR c.last_published_at <= now() - interval '5 seconds')   ORDER BY c.created_at, c.id LIMIT 1) IS NOT NULL;
