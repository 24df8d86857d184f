#!/usr/bin/env bash
# bench/profile.sh — where inkletd's time goes, per route (see docs/performance.md):
#   callgrind (default)  a second inkletd under valgrind --tool=callgrind, instrumentation off
#                        until the load starts; for each route a fixed number of sequential
#                        requests on one keep-alive connection (a small python client), then a
#                        dump: instructions per request and the top functions (self and inclusive)
#   perf                 the same routes against a plain second inkletd, wrk -t1 -c16 for
#                        PERF_SECONDS each under `perf record` (cpu-clock: no hardware counters in
#                        this VM); the top symbols per route
#
#   bench/serve.sh &  bench/profile.sh [callgrind|perf] [ROUTE...]   # routes: health me devices refresh
#
# It uses the database and broker of bench/serve.sh (.run/bench/), its JWT secret and broker
# password, and serve.sh's build (build/inkletd, RelWithDebInfo); its own inkletd listens on
# PROFILE_PORT (4300, or the next free) with MQTT_CLIENT_ID inklet-profile, so the served one
# keeps running. Environment: PROFILE_REQUESTS (20000 per route; refresh: PROFILE_REFRESHES,
# 5000), PERF_SECONDS (10), BUILD_DIR (build), INKLET_RUN_DIR (.run/bench), BENCH_OUT.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

MODE=callgrind
if [[ "${1:-}" == callgrind || "${1:-}" == perf ]]; then MODE="$1"; shift; fi
if (($#)); then ROUTES=("$@"); else ROUTES=(health me devices refresh); fi
N="${PROFILE_REQUESTS:-20000}"
NREFRESH="${PROFILE_REFRESHES:-5000}"
PERF_SECONDS="${PERF_SECONDS:-10}"
RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run/bench}"
BIN="${BUILD_DIR:-$ROOT/build}/inkletd"
OUT="${BENCH_OUT:-$ROOT/.run/bench-results/profile-$(date +%Y%m%d-%H%M%S)}"
DB_URL="$(svc_pg_url "$RUN_DIR/pg" "${INKLET_DB_NAME:-inklet_bench}")"

die() { printf 'bench/profile: %s\n' "$*" >&2; exit 1; }
hdr() { printf '\n########## %s\n' "$*"; }
for r in "${ROUTES[@]}"; do
  [[ " health me devices refresh " == *" $r "* ]] || die "unknown route '$r' (health me devices refresh)"
done
[[ -x "$BIN" ]] || die "no $BIN (bench/serve.sh builds it)"
svc_pg_running "$RUN_DIR/pg" || die "no database in $RUN_DIR/pg (start bench/serve.sh)"
[[ -s "$RUN_DIR/jwt_secret" && -s "$RUN_DIR/mqtt_password" ]] || die "no secrets in $RUN_DIR (start bench/serve.sh)"
if [[ "$MODE" == callgrind ]]; then
  command -v callgrind_control >/dev/null || die "valgrind missing"
else
  command -v perf >/dev/null || die "perf missing (apt-get install linux-perf)"
  command -v wrk >/dev/null || die "wrk missing"
fi
mkdir -p "$OUT"

PORT="$(svc_free_port "${PROFILE_PORT:-4300}" 50)"
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# the environment of bench/serve.sh's server, on another port and MQTT client id
server_env=(env PORT="$PORT" LISTEN_ADDR=127.0.0.1 DATABASE_URL="$DB_URL"
  JWT_SECRET="$(cat "$RUN_DIR/jwt_secret")"
  FACTORY_SECRET="${FACTORY_SECRET:-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}"
  MQTT_URL="$(svc_mqtt_url "$RUN_DIR/mqtt")" MQTT_USERNAME=inklet-backend
  MQTT_PASSWORD="$(cat "$RUN_DIR/mqtt_password")" MQTT_CLIENT_ID=inklet-profile
  LOG_LEVEL=warn LOG_FORMAT=text CORS_ORIGINS=http://localhost:5173
  RATE_LIMIT_LOGIN=1000000/1 RATE_LIMIT_REFRESH=1000000/1 RATE_LIMIT_REGISTER=1000000/1
  RATE_LIMIT_BIND=1000000/1 LOGIN_BACKOFF_AFTER=1000000)

# start_server: a fresh inkletd (under callgrind, instrumentation off) and a user of its own with
# 5 devices (as bench/devices.sh list; rows made with psql). One server per route: callgrind's
# per-dump totals go wrong when a dump is taken while threads are inside long calls, and the
# first dump of a process is exact.
start_server() {
  local i r
  if [[ "$MODE" == callgrind ]]; then
    "${server_env[@]}" valgrind --tool=callgrind --instr-atstart=no \
      --callgrind-out-file="$OUT/callgrind.out" "$BIN" >"$OUT/inkletd.log" 2>&1 &
  else
    "${server_env[@]}" "$BIN" >"$OUT/inkletd.log" 2>&1 &
  fi
  SERVER_PID=$!
  printf 'waiting for %s/health (%s) ' "$BASE" "$MODE"
  for ((i = 0; i < 600; i++)); do
    curl -fsS -o /dev/null --max-time 5 "$BASE/health" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "inkletd exited (see $OUT/inkletd.log)"
    sleep 0.5
  done
  curl -fsS -o /dev/null --max-time 5 "$BASE/health" || die "inkletd does not answer (see $OUT/inkletd.log)"
  echo up

  tag="prof_$(date +%s)$RANDOM"
  r="$(curl -sS --max-time 120 -X POST "$BASE/auth/register" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$tag@bench.invalid\",\"username\":\"$tag\",\"password\":\"BenchPass_$tag\"}")"
  TOKEN="$(sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p' <<<"$r")"
  REFRESH="$(sed -n 's/.*"refreshToken":"\([^"]*\)".*/\1/p' <<<"$r")"
  [[ -n "$TOKEN" && -n "$REFRESH" ]] || die "register failed: $r"
  psql "$DB_URL" -X -v ON_ERROR_STOP=1 -q -c "INSERT INTO devices (id, hw_id, thing_name, firmware,
    battery, last_seen_at, owner_id, bound_at) SELECT gen_random_uuid(), gen_random_uuid(),
    '$tag-' || i, '1.0.0', 80, now(), u.id, now() FROM generate_series(1, 5) i, users u
    WHERE u.username = '$tag'"
}

# client ROUTE COUNT: COUNT sequential requests on one keep-alive connection; prints "ok N"
client() {
  python3 - "$PORT" "$1" "$2" "$TOKEN" "$REFRESH" <<'EOF'
import http.client, json, sys
port, route, n, token, refresh = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
auth = {"Authorization": "Bearer " + token}
ok = 0
for _ in range(n):
    if route == "health":
        c.request("GET", "/health")
    elif route == "me":
        c.request("GET", "/auth/me", headers=auth)
    elif route == "devices":
        c.request("GET", "/api/devices", headers=auth)
    else:
        c.request("POST", "/auth/refresh", body=json.dumps({"refreshToken": refresh}),
                  headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    if r.status == 200:
        ok += 1
        if route == "refresh":
            refresh = json.loads(body)["refreshToken"]
    else:
        sys.exit(f"{route}: HTTP {r.status}: {body[:200]!r}")
print("ok", ok)
EOF
}

dumps() { local n=0 f; for f in "$OUT"/callgrind.out.*; do [[ -e "$f" ]] && n=$((n + 1)); done; echo "$n"; }
count_for() { if [[ "$1" == refresh ]]; then echo "$NREFRESH"; else echo "$N"; fi; }

profile_callgrind() {
  local route="$1" n before after file total
  n="$(count_for "$route")"
  hdr "callgrind: $n x $route"
  start_server
  before="$(dumps)"
  callgrind_control -i on "$SERVER_PID" >"$OUT/callgrind_control.log" 2>&1 || die "callgrind_control failed: $(cat "$OUT/callgrind_control.log")"
  client "$route" "$n"
  callgrind_control -d "$route" "$SERVER_PID" >/dev/null
  callgrind_control -i off "$SERVER_PID" >/dev/null
  for _ in $(seq 100); do
    after="$(dumps)"
    ((after > before)) && break
    sleep 0.2
  done
  for file in "$OUT"/callgrind.out.*; do mv "$file" "$OUT/callgrind.$route.out"; done
  file="$OUT/callgrind.$route.out"
  callgrind_annotate "$file" >"$OUT/profile-$route-self.txt" 2>/dev/null || true
  callgrind_annotate --inclusive=yes "$file" >"$OUT/profile-$route-inclusive.txt" 2>/dev/null || true
  cleanup
  SERVER_PID=""
  total="$(awk '/^summary:/ { print $2; exit }' "$file")"
  total="${total//,/}"
  echo "$route: $n requests, $total instructions (all threads) => $((total / n)) per request" |
    tee -a "$OUT/profile-summary.txt"
  grep -E '^ *[0-9,]+ ' "$OUT/profile-$route-self.txt" >"$OUT/profile-$route-top.txt" || true
  sed -n '1,20p' "$OUT/profile-$route-top.txt"
}

profile_perf() {
  local route="$1" perf_pid
  hdr "perf: $route, wrk -t1 -c16 ${PERF_SECONDS}s"
  [[ -n "$SERVER_PID" ]] || start_server
  perf record -F 999 -g -p "$SERVER_PID" -o "$OUT/perf.$route.data" >/dev/null 2>&1 &
  perf_pid=$!
  sleep 1
  case "$route" in
  health) wrk -t1 -c16 -d"${PERF_SECONDS}s" "$BASE/health" ;;
  me) wrk -t1 -c16 -d"${PERF_SECONDS}s" -H "Authorization: Bearer $TOKEN" "$BASE/auth/me" ;;
  devices) wrk -t1 -c16 -d"${PERF_SECONDS}s" -H "Authorization: Bearer $TOKEN" "$BASE/api/devices" ;;
  refresh)
    : >"$OUT/perf-refresh-tokens.txt"
    for _ in $(seq 17); do
      curl -sS -X POST "$BASE/auth/login" -H 'Content-Type: application/json' \
        -d "{\"identifier\":\"$tag\",\"password\":\"BenchPass_$tag\"}" |
        sed -n 's/.*"refreshToken":"\([^"]*\)".*/\1/p' >>"$OUT/perf-refresh-tokens.txt"
    done
    wrk -t1 -c16 -d"${PERF_SECONDS}s" -s "$ROOT/bench/lua/refresh.lua" "$BASE/auth/refresh" \
      -- "$OUT/perf-refresh-tokens.txt" 1
    ;;
  esac 2>&1 | tee "$OUT/perf-$route-wrk.txt"
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf report -i "$OUT/perf.$route.data" --no-children --sort dso,symbol --stdio \
    >"$OUT/perf-$route-report.txt" 2>/dev/null || true
  grep -E '^ +[0-9]' "$OUT/perf-$route-report.txt" >"$OUT/profile-$route-perf.txt" || true
  sed -n '1,20p' "$OUT/profile-$route-perf.txt"
}

for r in "${ROUTES[@]}"; do "profile_$MODE" "$r"; done
cleanup
SERVER_PID=""
hdr "results in $OUT"
[[ -s "$OUT/profile-summary.txt" ]] && cat "$OUT/profile-summary.txt"
true
