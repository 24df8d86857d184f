-- POST /auth/refresh: session_rotate (src/auth/sessions.c), one statement = one implicit
-- transaction, synchronous_commit as the pool connection has it (on). Token k of client c is
-- :run|c|k in hex; rotating it inserts k+1, so each client walks its own chain (limits.sh seeds k=1).
-- Statement text copied verbatim from the server source (what log_statement=all shows); only the
-- parameters are pgbench variables. Run by bench/limits.sh with pgbench -M prepared.
\set k :k + 1
WITH used AS (  UPDATE refresh_tokens SET used_at = now()  WHERE token_hash = decode(:run::text || lpad(to_hex(:client_id::bigint), 8, '0') || lpad(to_hex(:k::bigint), 40, '0'), 'hex') AND used_at IS NULL AND idle_expires_at > now()  RETURNING session_id), sess AS (  UPDATE sessions s SET last_active_at = now() FROM used  WHERE s.id = used.session_id AND s.revoked_at IS NULL AND s.expires_at > now()  RETURNING s.id, s.user_id, s.expires_at), ins AS (  INSERT INTO refresh_tokens (token_hash, session_id, user_id, idle_expires_at)  SELECT decode(:run::text || lpad(to_hex(:client_id::bigint), 8, '0') || lpad(to_hex(:k::bigint + 1), 40, '0'), 'hex'), id, user_id,   LEAST(now() + make_interval(secs => :idle_ttl::int), expires_at) FROM sess) SELECT id, user_id FROM sess;
