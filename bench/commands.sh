#!/usr/bin/env bash
# bench/commands.sh — command delivery benchmarks against a running bench/serve.sh (see
# bench/README.md), with real simulated displays (build/inklet-sim), each paired by NFC to a
# user the script registers:
#   commands    COMMAND_DEVICES (50) online displays; wrk posts COMMANDS (5000) text commands
#               round-robin over them (THREADS x COMMAND_CONNECTIONS (16)); from the database:
#               the POST rate, the rate at which they reach `sent`, and POST->sent and
#               POST->delivered p50/p99. Every command must end `delivered`.
#   redelivery  REDELIVERY_DEVICES (100) displays started with --sleep/--wake; while all of them
#               sleep, REDELIVERY_PER_DEVICE (10) commands each are posted (1,000); then they
#               wake at once: the time from the first wake-up heartbeat until all are
#               `delivered`, and whether each display showed its commands in the stored order.
#
#   bench/serve.sh &  bench/commands.sh             # both; or: bench/commands.sh redelivery
#   bench/run.sh commands redelivery                # the same through bench/run.sh
#
# Environment: BASE_URL (http://127.0.0.1:4000), THREADS (2), COMMAND_DEVICES, COMMANDS,
#   COMMAND_CONNECTIONS, COMMAND_WAIT (60 s for the last deliveries), REDELIVERY_DEVICES,
#   REDELIVERY_PER_DEVICE, REDELIVERY_WAKE (20 s), REDELIVERY_SLEEP (40 s),
#   INKLET_SIM (else $BUILD_DIR/inklet-sim, BUILD_DIR default build),
#   INKLET_RUN_DIR (.run/bench: where serve.sh keeps PostgreSQL and the broker),
#   FACTORY_SECRET (the development value), MQTT_URL / DATABASE_URL (else read from the run dir),
#   BENCH_OUT (results folder: the simulators' logs go to BENCH_OUT/<scenario>-sims/).
# Only loopback or your own test hosts.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

BASE_URL="${BASE_URL:-http://127.0.0.1:4000}"
BASE_URL="${BASE_URL%/}"
THREADS="${THREADS:-2}"
COMMAND_DEVICES="${COMMAND_DEVICES:-50}"
COMMANDS="${COMMANDS:-5000}"
COMMAND_CONNECTIONS="${COMMAND_CONNECTIONS:-16}"
COMMAND_WAIT="${COMMAND_WAIT:-60}"
REDELIVERY_DEVICES="${REDELIVERY_DEVICES:-100}"
REDELIVERY_PER_DEVICE="${REDELIVERY_PER_DEVICE:-10}"
REDELIVERY_WAKE="${REDELIVERY_WAKE:-20}"
REDELIVERY_SLEEP="${REDELIVERY_SLEEP:-40}"
RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run/bench}"
SIM="${INKLET_SIM:-${BUILD_DIR:-$ROOT/build}/inklet-sim}"
FACTORY_SECRET="${FACTORY_SECRET:-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}"
MQTT_URL="${MQTT_URL:-$(svc_mqtt_url "$RUN_DIR/mqtt")}"
DATABASE_URL="${DATABASE_URL:-$(svc_pg_url "$RUN_DIR/pg" "${INKLET_DB_NAME:-inklet_bench}")}"
OUT="${BENCH_OUT:-$ROOT/.run/bench-results/$(date +%Y%m%d-%H%M%S)}"
LUA="$ROOT/bench/lua"
if (($#)); then SCENARIOS=("$@"); else SCENARIOS=(commands redelivery); fi

die() { printf 'bench/commands: %s\n' "$*" >&2; exit 1; }
hdr() { printf '\n########## %s\n' "$*"; }
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p"; }
post() { curl -sS --max-time 30 -X POST "$BASE_URL$1" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
uuid() { cat /proc/sys/kernel/random/uuid; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$FACTORY_SECRET" | awk '{ print substr($NF, 1, 16) }'; }
sql() { psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -Atq -F $'\t' -c "$1"; }
now() { date +%s.%N; }
# sleep_until EPOCH: sleeps until that wall-clock time (returns at once if it is past)
sleep_until() { local d; d="$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; print (d > 0 ? d : 0) }')"; sleep "$d"; }

for s in "${SCENARIOS[@]}"; do
  [[ "$s" == commands || "$s" == redelivery ]] || die "unknown scenario '$s' (commands redelivery)"
done
curl -fsS -o /dev/null --max-time 5 "$BASE_URL/health" || die "no server at $BASE_URL (start bench/serve.sh)"
[[ -x "$SIM" ]] || die "no simulator at $SIM (build it, or set INKLET_SIM)"
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk; bench/run.sh installs it)"
command -v psql >/dev/null || die "psql missing"
sql 'SELECT 1' >/dev/null || die "cannot reach the database at $DATABASE_URL"
mkdir -p "$OUT"

# ------------------------------------------------------------------ the fleet
FLEET_PIDS=() FLEET_HW=() FLEET_THING=() FLEET_ID=()
FLEET_LOGS="" FLEET_FIRST=0 FLEET_LAST=0
fleet_stop() {
  local p
  for p in "${FLEET_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${FLEET_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  FLEET_PIDS=()
}
WRK_PID=""
cleanup() {
  [[ -z "$WRK_PID" ]] || kill -INT "$WRK_PID" 2>/dev/null || true
  fleet_stop
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fleet_start NAME N [SIM ARGS...]: N simulators with fresh hwIds, thing names NAME-<tag>-<i>,
# logs in $OUT/NAME-sims/. FLEET_FIRST / FLEET_LAST: wall-clock time of the first / last launch.
fleet_start() {
  local name="$1" n="$2" i hw thing tag
  shift 2
  tag="$(date +%s)$RANDOM"
  FLEET_LOGS="$OUT/$name-sims"
  mkdir -p "$FLEET_LOGS"
  FLEET_PIDS=() FLEET_HW=() FLEET_THING=() FLEET_ID=()
  FLEET_FIRST="$(now)"
  for ((i = 0; i < n; i++)); do
    hw="$(uuid)"
    thing="$name-$tag-$i"
    "$SIM" --broker "$MQTT_URL" --hw-id "$hw" --thing-name "$thing" --factory-secret "$FACTORY_SECRET" \
      "$@" >"$FLEET_LOGS/$thing.log" 2>&1 &
    FLEET_PIDS+=($!)
    FLEET_HW+=("$hw")
    FLEET_THING+=("$thing")
  done
  FLEET_LAST="$(now)"
  awk -v n="$n" -v a="$FLEET_FIRST" -v b="$FLEET_LAST" 'BEGIN { printf "started %d simulators in %.2f s\n", n, b - a }'
}

# new_user: registers a user of its own; sets TOKEN.
TOKEN="" USER_ID=""
new_user() {
  local tag r user
  tag="$(date +%s)$RANDOM"
  user="cmdbench_$tag"
  r="$(post /auth/register "{\"email\":\"$user@bench.invalid\",\"username\":\"$user\",\"password\":\"BenchPass_$tag\"}")"
  TOKEN="$(printf '%s' "$r" | json_field accessToken)"
  [[ -n "$TOKEN" ]] || die "register failed: $r"
}

# fleet_pair: binds every simulator to the user by NFC, once its first heartbeat made the device
# known (404 device_not_found until then); sets FLEET_ID and USER_ID.
fleet_pair() {
  local i r id hw t0
  t0="$(now)"
  for i in "${!FLEET_HW[@]}"; do
    hw="${FLEET_HW[$i]}"
    id=""
    for _ in $(seq 100); do
      r="$(post /api/devices/bind/nfc "{\"payload\":\"inklet:1:$hw:$(sign "$hw")\"}" "$TOKEN")"
      if [[ "$r" == *'"ownerId"'* ]]; then id="$(printf '%s' "$r" | json_field id)"; break; fi
      [[ "$r" == *device_not_found* ]] || die "binding ${FLEET_THING[$i]} failed: $r"
      sleep 0.1
    done
    [[ -n "$id" ]] || die "${FLEET_THING[$i]} never became known to the server: $r"
    FLEET_ID+=("$id")
    [[ -n "$USER_ID" ]] || USER_ID="$(printf '%s' "$r" | json_field ownerId)"
  done
  [[ -n "$USER_ID" ]] || die "no ownerId in the bind responses"
  awk -v n="${#FLEET_ID[@]}" -v a="$t0" -v b="$(now)" 'BEGIN { printf "paired %d displays by NFC in %.2f s\n", n, b - a }'
}

FROM_FLEET="FROM device_commands c JOIN devices d ON d.id = c.device_id"
count_cmds() { # count_cmds KIND [CONDITION]: how many of the user's commands of KIND (match)
  sql "SELECT count(*) $FROM_FLEET WHERE d.owner_id = '$USER_ID' AND c.kind = '$1' ${2:+AND $2}"
}
status_counts() {
  sql "SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT c.status, count(*) n
       $FROM_FLEET WHERE d.owner_id = '$USER_ID' AND c.kind = 'text' GROUP BY c.status) s"
}

# post_commands NAME TOTAL CONNECTIONS TAG: wrk posts TOTAL text commands round-robin over the fleet.
post_commands() {
  local name="$1" total="$2" conns="$3" tag="$4" done_prefix="$OUT/$1-done" i f n stored ticks still
  printf '%s\n' "${FLEET_ID[@]}" >"$OUT/$name-ids.txt"
  rm -f "$done_prefix".*
  ((conns >= THREADS)) || conns="$THREADS"
  echo "\$ wrk -t$THREADS -c$conns --latency -s commands.lua $BASE_URL -- TOKEN ids $total" >"$OUT/$name.txt"
  wrk -t"$THREADS" -c"$conns" -d600s --latency -s "$LUA/commands.lua" "$BASE_URL" \
    -- "$TOKEN" "$OUT/$name-ids.txt" "$total" "$THREADS" "$done_prefix" "$tag" >>"$OUT/$name.txt" 2>&1 &
  WRK_PID=$!
  stored=-1 ticks=0 still=0
  while kill -0 "$WRK_PID" 2>/dev/null; do
    i=0
    for f in "$done_prefix".*; do [[ -e "$f" ]] && i=$((i + 1)); done
    if ((i >= THREADS)); then kill -INT "$WRK_PID" 2>/dev/null || true; break; fi
    sleep 0.05
    # a request wrk lost (a socket error) is never answered: stop once nothing moves for 10 s
    if ((++ticks % 20 == 0)); then
      n="$(count_cmds text)"
      if [[ "$n" == "$stored" ]]; then still=$((still + 1)); else still=0 stored="$n"; fi
      if ((still >= 10)); then
        echo "wrk: no new command stored for 10 s ($n stored); stopping it"
        kill -INT "$WRK_PID" 2>/dev/null || true
        break
      fi
    fi
  done
  wait "$WRK_PID" || true
  WRK_PID=""
  rm -f "$done_prefix".*
  sed 's/^/    /' "$OUT/$name.txt"
}

# shown_in_order: for each display, are the texts it showed exactly its stored commands in the
# stored order (created_at, id)? Prints "in order: K/N displays".
shown_in_order() {
  local i ok=0 thing
  sql "SELECT d.thing_name, c.payload::json->>'text' $FROM_FLEET
       WHERE d.owner_id = '$USER_ID' AND c.kind = 'text' ORDER BY d.thing_name, c.created_at, c.id" \
    >"$OUT/stored-order.tsv"
  for i in "${!FLEET_THING[@]}"; do
    thing="${FLEET_THING[$i]}"
    if cmp -s <(awk -F'\t' -v t="$thing" '$1 == t { print $2 }' "$OUT/stored-order.tsv") \
      <(sed -n 's/^\[sim\] TEXT: //p' "$FLEET_LOGS/$thing.log"); then
      ok=$((ok + 1))
    else
      echo "  $thing did not show its commands in the stored order (see $FLEET_LOGS/$thing.log)"
    fi
  done
  echo "in order: $ok/${#FLEET_THING[@]} displays showed exactly their commands, in the stored order"
}

# wait_delivered TOTAL SECONDS INTERVAL: polls until TOTAL text commands are delivered or SECONDS
# pass; sets `delivered`
wait_delivered() {
  local t_end=$((SECONDS + $2))
  while :; do
    delivered="$(count_cmds text "c.status = 'delivered'")"
    ((delivered < $1 && SECONDS < t_end)) || break
    sleep "$3"
  done
}

repeats() { cat "$FLEET_LOGS"/*.log | grep -c '^\[sim\] already have command' || true; }

# ------------------------------------------------------------------ scenarios
scenario_commands() {
  local tag total delivered stats line
  hdr "commands: $COMMANDS text commands to $COMMAND_DEVICES online displays, $THREADS threads, $COMMAND_CONNECTIONS connections"
  new_user
  fleet_start commands "$COMMAND_DEVICES"
  fleet_pair
  tag="c$(date +%s)"
  post_commands commands "$COMMANDS" "$COMMAND_CONNECTIONS" "$tag"
  total="$(count_cmds text)"
  wait_delivered "$total" "$COMMAND_WAIT" 0.2
  echo "stored $total; by status: $(status_counts); repeats the displays acknowledged again: $(repeats)"
  stats="$(sql "SELECT count(*),
      round(extract(epoch FROM max(c.created_at) - min(c.created_at))::numeric, 2),
      count(c.sent_at), round(extract(epoch FROM max(c.sent_at) - min(c.created_at))::numeric, 2),
      round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.sent_at - c.created_at))::numeric * 1000, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM c.sent_at - c.created_at))::numeric * 1000, 1),
      count(c.delivered_at),
      round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.delivered_at - c.created_at))::numeric * 1000, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM c.delivered_at - c.created_at))::numeric * 1000, 1),
      round(extract(epoch FROM max(c.delivered_at - c.created_at))::numeric * 1000, 1)
    $FROM_FLEET WHERE d.owner_id = '$USER_ID' AND c.kind = 'text'")"
  line="$(awk -F'\t' '{
    printf "commands: %d posted in %.2f s (%.0f/s); sent %d (%.0f/s), POST->sent p50 %s ms p99 %s ms; delivered %d, POST->delivered p50 %s ms p99 %s ms max %s ms",
      $1, $2, ($2 > 0 ? $1 / $2 : 0), $3, ($4 > 0 ? $3 / $4 : 0), $5, $6, $7, $8, $9, $10 }' <<<"$stats")"
  echo "$line" | tee -a "$OUT/commands.txt"
  echo ">>> $line"
  fleet_stop
  ((delivered == total && total >= COMMANDS)) || die "only $delivered of $total commands were delivered within ${COMMAND_WAIT}s"
}

scenario_redelivery() {
  local n="$REDELIVERY_DEVICES" total bound t_sleep t_wake t_posted delivered tag stats line
  total=$((REDELIVERY_DEVICES * REDELIVERY_PER_DEVICE))
  hdr "redelivery: $total commands queued for $n sleeping displays (--sleep $REDELIVERY_SLEEP --wake $REDELIVERY_WAKE), all waking at once"
  new_user
  fleet_start redelivery "$n" --heartbeat-seconds 86400 --sleep "$REDELIVERY_SLEEP" --wake "$REDELIVERY_WAKE"
  # a simulator sleeps REDELIVERY_WAKE s after its launch and wakes REDELIVERY_SLEEP s later
  t_sleep="$(awk -v t="$FLEET_LAST" -v w="$REDELIVERY_WAKE" 'BEGIN { printf "%.3f", t + w + 0.5 }')"
  t_wake="$(awk -v t="$FLEET_FIRST" -v w="$REDELIVERY_WAKE" -v s="$REDELIVERY_SLEEP" 'BEGIN { printf "%.3f", t + w + s }')"
  fleet_pair
  # every display must have its `bound` before it sleeps, so the wake carries only the texts
  while :; do
    bound="$(count_cmds bound "c.status = 'delivered'")"
    ((bound < n)) || break
    awk -v t="$t_sleep" -v n="$(now)" 'BEGIN { exit !(n < t - 1.5) }' ||
      die "only $bound/$n displays acknowledged their pairing before sleeping: raise REDELIVERY_WAKE"
    sleep 0.2
  done
  echo "all $n displays acknowledged their pairing; waiting for them to sleep"
  sleep_until "$t_sleep"
  tag="r$(date +%s)"
  post_commands redelivery "$total" 10 "$tag"
  t_posted="$(now)"
  # the server publishes again only on a heartbeat more than 5 s after the last publish
  awk -v p="$t_posted" -v w="$t_wake" 'BEGIN { exit !(p < w - 6) }' ||
    die "posting ended less than 6 s before the wake-up: raise REDELIVERY_SLEEP"
  echo "queued while asleep: $(count_cmds text) commands; by status: $(status_counts)"
  sleep_until "$t_wake"
  echo "waking up"
  wait_delivered "$total" "$REDELIVERY_WAKE" 0.1
  echo "by status: $(status_counts); repeats the displays acknowledged again: $(repeats)"
  # d.last_seen_at: each display's wake-up heartbeat (its only one per wake at --heartbeat-seconds 86400)
  stats="$(sql "WITH w AS (SELECT min(last_seen_at) AS first, max(last_seen_at) AS last FROM devices
                           WHERE owner_id = '$USER_ID')
    SELECT count(c.delivered_at),
      round(extract(epoch FROM (SELECT last - first FROM w))::numeric * 1000, 0),
      round(extract(epoch FROM max(c.delivered_at) - (SELECT first FROM w))::numeric, 2),
      round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.delivered_at - d.last_seen_at))::numeric * 1000, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM c.delivered_at - d.last_seen_at))::numeric * 1000, 1)
    $FROM_FLEET WHERE d.owner_id = '$USER_ID' AND c.kind = 'text'")"
  line="$(awk -F'\t' -v t="$total" -v n="$n" '{
    printf "redelivery: %d/%d delivered to %d waking displays (wake-up heartbeats within %s ms); all delivered %s s after the first wake-up heartbeat; per command, own wake-up->delivered p50 %s ms p99 %s ms",
      $1, t, n, $2, ($1 == t ? $3 : "(not all)"), $4, $5 }' <<<"$stats")"
  echo "$line" | tee -a "$OUT/redelivery.txt"
  shown_in_order | tee -a "$OUT/redelivery.txt"
  echo ">>> $line"
  fleet_stop
  ((delivered == total)) || die "only $delivered of $total commands were delivered during the wake-up (${REDELIVERY_WAKE}s)"
}

for s in "${SCENARIOS[@]}"; do
  "scenario_$s"
done
echo "simulator logs and raw output: $OUT"
