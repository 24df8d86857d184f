#!/usr/bin/env bash
# bench/limits.sh — the machine's ceilings that bound inkletd's figures (see bench/README.md):
#   http       nginx-light answering a static {"status":"ok"} (bench/nginx/limits.conf.in), one
#              worker per core, measured with the health scenario's wrk settings
#   me devices refresh webhook commands heartbeat
#              pgbench -M prepared with bench/sql/<name>.sql (exactly the statements the server
#              runs for that route), against the database of bench/serve.sh, with ids of rows
#              this script creates with psql first
#   argon2     argon2id hashes/s with the server's parameters on all cores (bench/argon2_ceiling.c)
#
#   bench/serve.sh &  bench/limits.sh            # all ceilings; or name some: bench/limits.sh http argon2
#
# Writes key=value lines to $BENCH_OUT/ceilings.txt (and prints them): for each ceiling
# <name>_ceiling (req/s, transactions/s or hashes/s), and details (latencies, connections).
# Environment: DURATION (12 s each), THREADS (2, wrk threads and pgbench -j), HEALTH_CONNECTIONS
#   (64, as the health scenario), LIMITS_PORT (18090, or the next free), DB_POOL_SIZE /
#   HTTP_THREADS (as the server reads them: pgbench -c = DB_POOL_SIZE, default 2 x HTTP_THREADS,
#   HTTP_THREADS default max(2, cores)), INGEST_CONNECTIONS (2: the server's ingest workers),
#   ARGON2_MEMORY_KIB / ARGON2_ITERATIONS / ARGON2_PARALLELISM (the server's defaults),
#   INKLET_RUN_DIR (.run/bench), DATABASE_URL (else bench/serve.sh's), BENCH_OUT.
# Only loopback: it starts its own nginx on 127.0.0.1 and writes to the bench database only.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

DURATION="${DURATION:-12}"
THREADS="${THREADS:-2}"
HEALTH_CONNECTIONS="${HEALTH_CONNECTIONS:-64}"
CORES="$(nproc)"
HTTP_THREADS_EFF="${HTTP_THREADS:-$((CORES < 2 ? 2 : CORES))}"
POOL="${DB_POOL_SIZE:-$((2 * HTTP_THREADS_EFF))}"
INGEST_CONNECTIONS="${INGEST_CONNECTIONS:-2}" # src/main.c INGEST_WORKERS, one connection each
RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run/bench}"
LIMITS_DIR="$ROOT/.run/bench/limits"
DATABASE_URL="${DATABASE_URL:-$(svc_pg_url "$RUN_DIR/pg" "${INKLET_DB_NAME:-inklet_bench}")}"
OUT="${BENCH_OUT:-$ROOT/.run/bench-results/$(date +%Y%m%d-%H%M%S)}"
SQL_DIR="$ROOT/bench/sql"
ALL=(http me devices refresh webhook commands heartbeat argon2)
if (($#)); then CEILINGS=("$@"); else CEILINGS=("${ALL[@]}"); fi
FLEET=50 # devices for heartbeat and commands, as bench/devices.sh ingest and bench/commands.sh

die() { printf 'bench/limits: %s\n' "$*" >&2; exit 1; }
hdr() { printf '\n########## limits: %s\n' "$*"; }
for c in "${CEILINGS[@]}"; do
  [[ " ${ALL[*]} " == *" $c "* ]] || die "unknown ceiling '$c' (${ALL[*]})"
done
mkdir -p "$OUT" "$LIMITS_DIR"
RESULTS="$OUT/ceilings.txt"
touch "$RESULTS"
put() { # put KEY VALUE: one key=value line in ceilings.txt (a key set again replaces the old)
  local tmp="$RESULTS.tmp"
  grep -v "^$1=" "$RESULTS" >"$tmp" || true
  echo "$1=$2" >>"$tmp"
  mv "$tmp" "$RESULTS"
  echo "  $1=$2"
}

NGINX_PID=""
stop_nginx() {
  if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  fi
}
cleanup() {
  stop_nginx
  db_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wrk_keys PREFIX FILE: req/s and latency percentiles of a wrk --latency output
wrk_keys() {
  local rps p50 p99
  rps="$(awk '/^Requests\/sec:/ { print $2 }' "$2")"
  p50="$(awk '/^ +50%/ { print $2 }' "$2")"
  p99="$(awk '/^ +99%/ { print $2 }' "$2")"
  [[ -n "$rps" ]] || die "no result in $2"
  put "$1_ceiling" "$rps"
  put "$1_p50" "$p50"
  put "$1_p99" "$p99"
}

# ------------------------------------------------------------------ HTTP: nginx-light
ceiling_http() {
  local port prefix="$LIMITS_DIR/nginx" conf
  [[ "${INKLET_SKIP_PACKAGES:-0}" == 1 ]] || svc_ensure_packages nginx-light wrk
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || die "nginx missing (apt-get install nginx-light)"
  port="$(svc_free_port "${LIMITS_PORT:-18090}" 50)"
  mkdir -p "$prefix/tmp"
  conf="$prefix/nginx.conf"
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$CORES|g" \
    "$ROOT/bench/nginx/limits.conf.in" >"$conf"
  rm -f "$prefix/nginx.pid"
  /usr/sbin/nginx -p "$prefix" -c "$conf" || die "nginx did not start (see $prefix/error.log)"
  for _ in $(seq 50); do [[ -s "$prefix/nginx.pid" ]] && break; sleep 0.1; done
  NGINX_PID="$(cat "$prefix/nginx.pid")"
  svc_wait_tcp "$port" 10 || die "nginx does not listen on $port"
  [[ "$(curl -fsS "http://127.0.0.1:$port/health")" == '{"status":"ok"}' ]] || die "nginx answers something else"
  hdr "http: nginx-light ($CORES workers) GET /health, $THREADS threads, $HEALTH_CONNECTIONS connections, ${DURATION}s"
  wrk -t"$THREADS" -c"$HEALTH_CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/health" \
    2>&1 | tee "$OUT/limits-http.txt"
  stop_nginx
  NGINX_PID=""
  wrk_keys http "$OUT/limits-http.txt"
}

# ------------------------------------------------------------------ database: pgbench
sql() { psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -Atq -c "$1"; }
DB_READY=0
TAG="" RUN="" USER_ID="" FLEET_USER=""
# The rows the scripts need, made once per run of this script: a user with 5 bound devices (as
# bench/devices.sh list), a fleet of $FLEET devices (hw_id = md5(thing name)), one session and
# first refresh token per pgbench client, a billing customer for the webhook events.
db_prepare() {
  ((DB_READY)) && return 0
  command -v pgbench >/dev/null || die "pgbench missing (it is in postgresql-client-15)"
  sql 'SELECT 1' >/dev/null || die "cannot reach the database at $DATABASE_URL (start bench/serve.sh)"
  TAG="limits_$(date +%s)$RANDOM"
  RUN="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" # 16 hex: this run's refresh token prefix
  USER_ID="$(sql "INSERT INTO users (id, email, username, password_hash)
    VALUES (gen_random_uuid(), '$TAG@bench.invalid', '$TAG', NULL) RETURNING id")"
  FLEET_USER="$(sql "INSERT INTO users (id, email, username, password_hash)
    VALUES (gen_random_uuid(), '${TAG}_fleet@bench.invalid', '${TAG}_fleet', NULL) RETURNING id")"
  sql "INSERT INTO devices (id, hw_id, thing_name, firmware, battery, last_seen_at, owner_id, bound_at)
    SELECT gen_random_uuid(), gen_random_uuid(), '$TAG-own-' || i, '1.0.0', 80, now(), '$USER_ID', now()
    FROM generate_series(1, 5) i"
  sql "INSERT INTO devices (id, hw_id, thing_name, firmware, battery, last_seen_at, owner_id, bound_at)
    SELECT md5('$TAG-' || i)::uuid, md5('$TAG-' || i)::uuid, '$TAG-' || i, '1.0.0', 80, now(),
      '$FLEET_USER', now() FROM generate_series(0, $FLEET - 1) i"
  sql "WITH s AS (INSERT INTO sessions (id, user_id, user_agent, ip, expires_at)
      SELECT gen_random_uuid(), '$USER_ID', 'bench/limits.sh', '127.0.0.1', now() + interval '1 day'
      FROM generate_series(0, $POOL - 1) RETURNING id),
    n AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS c FROM s)
    INSERT INTO refresh_tokens (token_hash, session_id, user_id, idle_expires_at)
    SELECT decode('$RUN' || lpad(to_hex(c), 8, '0') || lpad(to_hex(1), 40, '0'), 'hex'), id,
      '$USER_ID', now() + interval '1 day' FROM n"
  sql "INSERT INTO billing_customers (user_id, customer_id) VALUES ('$USER_ID', 'cus_$TAG')"
  DB_READY=1
}

# Removes the fleet devices and their commands: the commands ceiling alone leaves ~60k queued
# commands on the $FLEET fleet devices, and such a skew misleads the planner for the scenarios
# that run after this script on the same database (a heartbeat once became a sequential scan of
# device_commands). Vacuumed now, not under the next scenario. The users, sessions and refresh
# tokens stay: emptying and vacuuming those tables made the planner trust an empty
# refresh_tokens, and the refresh scenario after it ran at a third of its rate.
db_cleanup() {
  ((DB_READY)) || return 0
  DB_READY=0
  sql "DELETE FROM devices WHERE thing_name LIKE '$TAG-%'" || true
  sql "VACUUM (ANALYZE) devices, device_commands" || true
  sql "CHECKPOINT" 2>/dev/null || true
}

# pgbench_run NAME CONNECTIONS [PGOPTIONS]: runs bench/sql/NAME.sql, puts NAME_ceiling (tps)
pgbench_run() {
  local name="$1" conns="$2" opts="${3:-}" f="$OUT/limits-$1.txt" tps lat now
  db_prepare
  now="$(date +%s)"
  hdr "$name: pgbench -M prepared -c $conns -j $THREADS -T $DURATION -f bench/sql/$name.sql${opts:+ (PGOPTIONS=$opts)}"
  PGOPTIONS="$opts" pgbench -n -M prepared -c "$conns" -j "$THREADS" -T "$DURATION" \
    -f "$SQL_DIR/$name.sql" -D uid="$USER_ID" -D run="$RUN" -D k=0 -D idle_ttl=2592000 \
    -D thing="$TAG-" -D devices="$FLEET" -D clients="$conns" -D newid="$(cat /proc/sys/kernel/random/uuid)" \
    -D fw=1.0.1 -D cmd_ttl=86400 -D payload='{"text":"limits"}' -D cus="cus_$TAG" \
    -D created="$now" -D screated="$((now - 86400))" -D pstart="$((now - 86400))" \
    -D pend="$((now + 29 * 86400))" "$DATABASE_URL" 2>&1 | tee "$f"
  grep -qiE 'aborted|error:' "$f" && die "pgbench $name failed (see $f)"
  tps="$(awk '/^tps = / { print $3; exit }' "$f")"
  lat="$(awk '/^latency average = / { print $4; exit }' "$f")"
  [[ -n "$tps" ]] || die "no tps in $f"
  put "${name}_ceiling" "$tps"
  put "${name}_latency_ms" "$lat"
  put "${name}_connections" "$conns"
}

ceiling_me() { pgbench_run me "$POOL"; }
ceiling_devices() { pgbench_run devices "$POOL"; }
ceiling_refresh() {
  local rotated
  pgbench_run refresh "$POOL"
  # every transaction must have rotated a live token (a broken chain would measure a no-op)
  rotated="$(sql "SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL
    AND substr(encode(token_hash, 'hex'), 1, 16) = '$RUN'")"
  put refresh_rotated "$rotated"
  local n
  n="$(awk '/^number of transactions actually processed:/ { print $NF }' "$OUT/limits-refresh.txt")"
  [[ "$rotated" == "$n" ]] || die "refresh: $n transactions but $rotated tokens rotated"
}
ceiling_webhook() {
  local applied n
  pgbench_run webhook "$POOL"
  # every event must have inserted its subscription (an unknown customer would measure less)
  applied="$(sql "SELECT count(*) FROM subscriptions WHERE subscription_id LIKE 'sub\\_${RUN}\\_%'")"
  n="$(awk '/^number of transactions actually processed:/ { print $NF }' "$OUT/limits-webhook.txt")"
  put webhook_applied "$applied"
  [[ "$applied" == "$n" ]] || die "webhook: $n transactions but $applied subscriptions stored"
}
ceiling_commands() { pgbench_run commands "$POOL"; }
# The commands ceiling just wrote tens of thousands of rows to device_commands, which the
# heartbeat's statement reads: on a fresh database the statistics still describe a near-empty
# table (autoanalyze runs up to a minute later), and that plan measured 2,200 tps instead of
# ~30,000. A ceiling is PostgreSQL on current statistics, so analyze first.
ceiling_heartbeat() {
  db_prepare
  sql "ANALYZE device_commands"
  pgbench_run heartbeat "$INGEST_CONNECTIONS" "-c synchronous_commit=off"
}

# ------------------------------------------------------------------ hashing
ceiling_argon2() {
  local bin="$LIMITS_DIR/argon2_ceiling"
  if [[ ! -x "$bin" || "$ROOT/bench/argon2_ceiling.c" -nt "$bin" ]]; then
    cc -O2 -Wall -Wextra -Werror -pthread -o "$bin" "$ROOT/bench/argon2_ceiling.c" -largon2 ||
      die "cannot build bench/argon2_ceiling.c (libargon2-dev)"
  fi
  hdr "argon2: argon2id with the server's parameters, $CORES threads, ${DURATION}s"
  "$bin" "$DURATION" "$CORES" | tee "$OUT/limits-argon2.txt"
  put argon2_ceiling "$(awk -F= '$1 == "argon2_hashes_per_s" { print $2 }' "$OUT/limits-argon2.txt")"
  put argon2_params "m=$(awk -F= '$1 == "argon2_m_kib" { print $2 }' "$OUT/limits-argon2.txt"),t=$(awk -F= '$1 == "argon2_t" { print $2 }' "$OUT/limits-argon2.txt"),p=$(awk -F= '$1 == "argon2_p" { print $2 }' "$OUT/limits-argon2.txt")"
  put argon2_threads "$CORES"
}

put cores "$CORES"
put limits_duration "$DURATION"
for c in "${CEILINGS[@]}"; do "ceiling_$c"; done
hdr "ceilings ($RESULTS)"
cat "$RESULTS"
