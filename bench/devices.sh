#!/usr/bin/env bash
# bench/devices.sh — device benchmarks against a running bench/serve.sh (see bench/README.md):
#   list     GET /api/devices for LIST_USERS users with 5 bound devices each, in turn, wrk -t2 -c64
#   ingest   heartbeats over MQTT from DEVICES publishers × MESSAGES each (QoS 1), paced at RATE
#            messages/s in total; timed until inkletd has processed every message (metric
#            inklet_mqtt_messages_processed_total), then every device's row is checked against
#            its last heartbeat (firmware "seq-N", battery N % 101).
#
#   bench/serve.sh &  bench/devices.sh            # both scenarios
#
# Environment: BASE_URL (http://127.0.0.1:4000), DURATION (12), LIST_USERS (16), DEVICES (50),
#   MESSAGES (500),
#   RATE (2500 messages/s),
#   INKLET_RUN_DIR (.run/bench: where serve.sh keeps PostgreSQL and the broker),
#   FACTORY_SECRET (the development value), MQTT_URL / DATABASE_URL (else read from the run dir).
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

BASE_URL="${BASE_URL:-http://127.0.0.1:4000}"
DURATION="${DURATION:-12}"
LIST_USERS="${LIST_USERS:-16}"
DEVICES="${DEVICES:-50}"
MESSAGES="${MESSAGES:-500}"
RATE="${RATE:-2500}"
NOW="$(date +%s)"
RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run/bench}"
FACTORY_SECRET="${FACTORY_SECRET:-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}"
MQTT_URL="${MQTT_URL:-$(svc_mqtt_url "$RUN_DIR/mqtt")}"
DATABASE_URL="${DATABASE_URL:-$(svc_pg_url "$RUN_DIR/pg" "${INKLET_DB_NAME:-inklet_bench}")}"
MQTT_HOST="$(printf '%s' "${MQTT_URL#mqtt://}" | cut -d: -f1)"
MQTT_PORT="$(printf '%s' "${MQTT_URL#mqtt://}" | cut -d: -f2)"
SCENARIOS=("${@:-list ingest}")
read -r -a SCENARIOS <<<"${SCENARIOS[*]}"

die() { printf 'bench/devices: %s\n' "$*" >&2; exit 1; }
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p"; }
post() { curl -sS --max-time 30 -X POST "$BASE_URL$1" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
metric() { curl -sS --max-time 5 "$BASE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
uuid() { cat /proc/sys/kernel/random/uuid; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$FACTORY_SECRET" | awk '{ print substr($NF, 1, 16) }'; }
heartbeat() { # heartbeat THING HWID SEQ -> one JSON line
  printf '{"hwId":"%s","ts":%s,"firmware":"seq-%s","battery":%s}\n' "$2" "$NOW" "$3" "$(($3 % 101))"
}

curl -fsS -o /dev/null --max-time 5 "$BASE_URL/health" || die "no server at $BASE_URL (start bench/serve.sh)"
command -v mosquitto_pub >/dev/null || die "mosquitto_pub missing (apt-get install mosquitto-clients)"

# LIST_USERS users with 5 bound devices each; every request another user's (lua/bearers.lua), as
# for GET /auth/me in bench/run.sh. LIST_USERS=1 measures the single-user shape.
scenario_list() {
  local tag user token i u hw thing r tokens="${BENCH_OUT:-${TMPDIR:-/tmp}}/devices_tokens.$$"
  tag="$(date +%s)$RANDOM"
  : >"$tokens"
  for ((u = 0; u < LIST_USERS; u++)); do
    user="devbench_${tag}_$u"
    r="$(post /auth/register "{\"email\":\"$user@bench.invalid\",\"username\":\"$user\",\"password\":\"BenchPass_$tag\"}")"
    token="$(printf '%s' "$r" | json_field accessToken)"
    [[ -n "$token" ]] || die "register failed: $r"
    echo "$token" >>"$tokens"
    for i in 1 2 3 4 5; do
      hw="$(uuid)"
      thing="bench-$tag-$u-$i"
      heartbeat "$thing" "$hw" 0 | mosquitto_pub -i "$thing" -h "$MQTT_HOST" -p "$MQTT_PORT" -q 1 -t "inklet/dev/$thing/up/heartbeat" -l
      for _ in $(seq 50); do
        r="$(post /api/devices/bind/nfc "{\"payload\":\"inklet:1:$hw:$(sign "$hw")\"}" "$token")"
        [[ "$r" == *'"ownerId"'* ]] && break
        sleep 0.1
      done
      [[ "$r" == *'"ownerId"'* ]] || die "binding device $i of user $u failed: $r"
    done
  done
  printf '\n### GET /api/devices (%s users with 5 devices each, in turn), 2 threads, 64 connections, %ss\n' \
    "$LIST_USERS" "$DURATION"
  wrk -t2 -c64 -d"${DURATION}s" --latency -s "$ROOT/bench/lua/bearers.lua" "$BASE_URL/api/devices" \
    -- "$tokens"
  rm -f "$tokens"
}

# One publisher per device, paced: every 100 ms it writes its share of lines to mosquitto_pub -l.
paced_publisher() { # paced_publisher THING HWID MESSAGES PER_TICK
  local seq=1 k
  while ((seq <= $3)); do
    for ((k = 0; k < $4 && seq <= $3; k++, seq++)); do heartbeat "$1" "$2" "$seq"; done
    sleep 0.1
  done | mosquitto_pub -i "$1" -h "$MQTT_HOST" -p "$MQTT_PORT" -q 1 -t "inklet/dev/$1/up/heartbeat" -l
}

scenario_ingest() {
  local tag before after start published end total i pids=() rows per_tick
  tag="$(date +%s)$RANDOM"
  total=$((DEVICES * MESSAGES))
  per_tick=$(((RATE + DEVICES * 10 - 1) / (DEVICES * 10)))
  before="$(metric inklet_mqtt_messages_processed_total)"
  printf '\n### heartbeat ingest: %s devices x %s messages = %s (QoS 1), paced at ~%s/s\n' \
    "$DEVICES" "$MESSAGES" "$total" "$((per_tick * DEVICES * 10))"
  start="$(date +%s.%N)"
  for ((i = 0; i < DEVICES; i++)); do
    paced_publisher "ingest-$tag-$i" "$(uuid)" "$MESSAGES" "$per_tick" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  published="$(date +%s.%N)"
  for _ in $(seq 1200); do
    after="$(metric inklet_mqtt_messages_processed_total)"
    ((after - before >= total)) && break
    sleep 0.05
  done
  end="$(date +%s.%N)"
  awk -v s="$start" -v p="$published" -v e="$end" -v n="$((after - before))" -v t="$total" 'BEGIN {
    printf "published %d in %.2f s (%.0f/s); processed %d/%d, the last %.2f s after publishing ended => %.0f messages/s sustained\n",
      t, p - s, t / (p - s), n, t, e - p, n / (e - s) }'
  rows="$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM devices WHERE thing_name LIKE 'ingest-$tag-%' AND firmware = 'seq-$MESSAGES' AND battery = $((MESSAGES % 101)) AND last_seen_at > now() - interval '5 minutes'")"
  echo "devices whose row shows their last heartbeat: $rows/$DEVICES"
  ((after - before >= total)) || die "only $((after - before)) of $total heartbeats were processed"
  ((rows == DEVICES)) || die "$((DEVICES - rows)) devices do not reflect their last heartbeat"
}

for s in "${SCENARIOS[@]}"; do
  case "$s" in
  list) scenario_list ;;
  ingest) scenario_ingest ;;
  *) die "unknown scenario $s (list ingest)" ;;
  esac
done
