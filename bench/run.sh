#!/usr/bin/env bash
# bench/run.sh — wrk benchmarks against a running inkletd (see bench/README.md).
#
#   bench/serve.sh &          # build + start inkletd with benchmark-friendly limits
#   bench/run.sh              # everything (same as `bench/run.sh all`): the ceilings
#                             #   (bench/limits.sh), then every scenario, then one table
#   bench/run.sh health me    # only some: limits health me refresh login health-under-login
#                             #   webhook devices ingest soak commands redelivery
#                             #   (devices, ingest: bench/devices.sh; commands, redelivery:
#                             #   bench/commands.sh with simulated displays)
#   bench/run.sh limits       # only the ceilings
#
# Environment: BASE_URL (http://127.0.0.1:4000), DURATION (12 s per scenario), THREADS (2),
#   ME_USERS (64: the users whose requests GET /auth/me takes in turn), REFRESH_CONNECTIONS (32), WEBHOOK_EVENTS (150000), WEBHOOK_CONNECTIONS (32),
#   STRIPE_WEBHOOK_SECRET (whsec_inklet_fake, as bench/serve.sh sets it), SOAK_REQUESTS (1000000), SOAK_CONNECTIONS (64),
#   SOAK_SAMPLE_SECONDS (5), SOAK_MAX_SECONDS (1800), INKLETD_PID (else .run/bench/inkletd.pid,
#   .run/inkletd.pid, or pgrep), BENCH_WAIT (seconds to wait for the server, 900),
#   BENCH_OUT (results folder, default .run/bench-results/<timestamp>); the commands and
#   redelivery scenarios take their own knobs (bench/commands.sh), devices and ingest theirs
#   (bench/devices.sh), limits its own (bench/limits.sh); PROBE_RATE (200) and
#   PROBE_CONNECTIONS (20): the fixed-rate /health probe that runs during `login`;
#   HEALTH_ROUNDS (3): interleaved nginx/inkletd rounds of the health scenario (medians).
# Only loopback or your own test hosts: never point this at a server you do not run.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

BASE_URL="${BASE_URL:-http://127.0.0.1:4000}"
BASE_URL="${BASE_URL%/}"
DURATION="${DURATION:-12}"
THREADS="${THREADS:-2}"
REFRESH_CONNECTIONS="${REFRESH_CONNECTIONS:-32}"
ME_USERS="${ME_USERS:-64}"
WEBHOOK_EVENTS="${WEBHOOK_EVENTS:-150000}"
WEBHOOK_CONNECTIONS="${WEBHOOK_CONNECTIONS:-32}"
SOAK_REQUESTS="${SOAK_REQUESTS:-1000000}"
SOAK_CONNECTIONS="${SOAK_CONNECTIONS:-64}"
SOAK_SAMPLE_SECONDS="${SOAK_SAMPLE_SECONDS:-5}"
SOAK_MAX_SECONDS="${SOAK_MAX_SECONDS:-1800}"
LUA="$ROOT/bench/lua"
OUT="${BENCH_OUT:-$ROOT/.run/bench-results/$(date +%Y%m%d-%H%M%S)}"
PROBE_RATE="${PROBE_RATE:-200}"
PROBE_CONNECTIONS="${PROBE_CONNECTIONS:-20}"
ALL_SCENARIOS=(limits health me refresh login health-under-login webhook devices ingest soak commands
  redelivery)
if (($#)) && [[ "$*" != all ]]; then SCENARIOS=("$@"); else SCENARIOS=("${ALL_SCENARIOS[@]}"); fi

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
hdr() { printf '\n########## %s\n' "$*"; }

for s in "${SCENARIOS[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "unknown scenario '$s' (${ALL_SCENARIOS[*]})"
done
[[ "${INKLET_SKIP_PACKAGES:-0}" == 1 ]] || svc_ensure_packages "${INKLET_PKGS_BENCH[@]}"
mkdir -p "$OUT"

BG_PIDS=()
cleanup() {
  local p
  for p in "${BG_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers
http_json() { # http_json METHOD PATH BODY [AUTH] -> prints "STATUS BODY"
  local auth=()
  [[ -n "${4:-}" ]] && auth=(-H "Authorization: Bearer $4")
  curl -sS --max-time 30 -o - -w ' %{http_code}' -X "$1" "$BASE_URL$2" \
    -H 'Content-Type: application/json' "${auth[@]}" ${3:+-d "$3"}
}
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p"; }
status_of() { printf '%s' "${1##* }"; }

login() { # login -> prints "STATUS BODY"
  http_json POST /auth/login "{\"identifier\":\"$BENCH_USER\",\"password\":\"$BENCH_PASS\"}"
}
need_2xx() { # need_2xx WHAT RESPONSE
  local st
  st="$(status_of "$2")"
  if [[ "$st" == 429 ]]; then
    die "$1 was rate-limited (429): start the server with generous limits (bench/README.md)"
  fi
  [[ "$st" == 2* ]] || die "$1 failed with HTTP $st: ${2% *}"
}

# run_wrk NAME WRK-ARGS... : run wrk, keep its output in $OUT/NAME.txt, echo it.
run_wrk() {
  local name="$1"
  shift
  echo "\$ wrk $*" | tee "$OUT/$name.txt"
  wrk "$@" 2>&1 | tee -a "$OUT/$name.txt"
}

wrk_field() { # wrk_field FILE rps|p50|p99
  [[ -s "$1" ]] || return 0
  case "$2" in
  rps) awk '/^Requests\/sec:/ { print $2 }' "$1" | tail -n 1 ;;
  p50) awk '/^ +50%/ { print $2 }' "$1" | tail -n 1 ;;
  p99) awk '/^ +99%/ { print $2 }' "$1" | tail -n 1 ;;
  esac
}

SUMMARY=()
summarize() { # summarize NAME (parses $OUT/NAME.txt)
  local f="$OUT/$1.txt" line
  line="$(awk -v name="$1" '
    /^ +Latency +[0-9]/ && !avg { avg = $2 }
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /requests in/ { reqs = $1 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { sub(/^ *Socket errors: */, ""); serr = $0 }
    /^Requests\/sec:/ { rps = $2 }
    END {
      printf "%-20s %12s req/s  avg %-9s p50 %-9s p99 %-9s requests %-9s non-2xx %s%s",
        name, rps, avg, (p50 ? p50 : "-"), (p99 ? p99 : "-"), reqs, (non2xx ? non2xx : 0),
        (serr ? "  socket errors: " serr : "")
    }' "$f")"
  SUMMARY+=("$line")
  echo ">>> $line"
}

find_pid() {
  local f
  if [[ -n "${INKLETD_PID:-}" ]]; then echo "$INKLETD_PID"; return; fi
  for f in "$ROOT/.run/bench/inkletd.pid" "$ROOT/.run/inkletd.pid"; do
    if [[ -s "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; then cat "$f"; return; fi
  done
  pgrep -n -x inkletd 2>/dev/null || true
}
count_files() { local n=0 f; for f in "$@"; do [[ -e "$f" ]] && n=$((n + 1)); done; echo "$n"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# ------------------------------------------------------------------ server and user
printf 'waiting for %s/health ' "$BASE_URL"
for ((i = 0; ; i++)); do
  if curl -fsS -o /dev/null --max-time 2 "$BASE_URL/health" 2>/dev/null; then break; fi
  ((i < ${BENCH_WAIT:-900})) || die "no server at $BASE_URL"
  ((i % 10)) || printf '.'
  sleep 1
done
echo " up"

tag="$(date +%s)$RANDOM"
BENCH_USER="bench_$tag"
BENCH_PASS="BenchPass_$tag"
hdr "registering $BENCH_USER"
r="$(http_json POST /auth/register \
  "{\"email\":\"$BENCH_USER@bench.invalid\",\"username\":\"$BENCH_USER\",\"password\":\"$BENCH_PASS\"}")"
need_2xx register "$r"
TOKEN="$(printf '%s' "${r% *}" | json_field accessToken)"
[[ -n "$TOKEN" ]] || die "no accessToken in the register response"
echo "ok; results in $OUT"

# ------------------------------------------------------------------ scenarios
# /health against its ceiling in HEALTH_ROUNDS (3) interleaved rounds: nginx (bench/limits.sh
# http), then the server, each DURATION s, and the median of each side. Both figures are close
# to what the machine can do at all, and on this VM one 12 s run of either drifts by ±15 % over
# minutes, so a ceiling measured once at the start of the run and the server measured later gave
# fractions from 0.68 to 0.95 for one binary. The median round's wrk output becomes health.txt
# (req/s, p50, p99 of that round); the median nginx figure replaces http_ceiling in ceilings.txt.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
scenario_health() {
  local rounds="${HEALTH_ROUNDS:-3}" i ng srv ngs=() srvs=() mid
  for ((i = 1; i <= rounds; i++)); do
    hdr "GET /health round $i/$rounds: nginx, then the server; $THREADS threads, 64 connections, ${DURATION}s each"
    BENCH_OUT="$OUT" DURATION="$DURATION" THREADS="$THREADS" HEALTH_CONNECTIONS=64 \
      "$ROOT/bench/limits.sh" http >"$OUT/health-nginx-$i.log" 2>&1 ||
      die "bench/limits.sh http failed (see $OUT/health-nginx-$i.log)"
    cp "$OUT/limits-http.txt" "$OUT/health-nginx-$i.txt"
    ng="$(wrk_field "$OUT/health-nginx-$i.txt" rps)"
    run_wrk "health-$i" -t"$THREADS" -c64 -d"${DURATION}s" --latency "$BASE_URL/health" >/dev/null
    srv="$(wrk_field "$OUT/health-$i.txt" rps)"
    [[ -n "$ng" && -n "$srv" ]] || die "round $i: no req/s (see $OUT/health-nginx-$i.txt, health-$i.txt)"
    printf '  nginx %s req/s, inkletd %s req/s\n' "$ng" "$srv"
    ngs+=("$ng") srvs+=("$srv")
  done
  mid="$(printf '%s\n' "${srvs[@]}" | median)"
  for ((i = 1; i <= rounds; i++)); do
    [[ "${srvs[$((i - 1))]}" == "$mid" ]] && { cp "$OUT/health-$i.txt" "$OUT/health.txt"; break; }
  done
  ng="$(printf '%s\n' "${ngs[@]}" | median)"
  # the median replaces what the limits scenario measured once
  grep -v '^http_ceiling=\|^http_ceiling_rounds=\|^health_rounds=' "$OUT/ceilings.txt" \
    >"$OUT/ceilings.txt.tmp" 2>/dev/null || true
  {
    echo "http_ceiling=$ng"
    echo "http_ceiling_rounds=$(IFS=,; echo "${ngs[*]}")"
    echo "health_rounds=$(IFS=,; echo "${srvs[*]}")"
  } >>"$OUT/ceilings.txt.tmp"
  mv "$OUT/ceilings.txt.tmp" "$OUT/ceilings.txt"
  echo "  medians: nginx $ng, inkletd $mid (rounds: nginx ${ngs[*]}; inkletd ${srvs[*]})"
  summarize health
}

# Many users, each request another's (lua/bearers.lua): the server shares one statement among
# the concurrent reads of one route, and with one user that statement would return one row for
# them all, flattering it. ME_USERS=1 measures the single-user shape.
scenario_me() {
  local tokens="$OUT/me_tokens.txt" i r tok
  echo "$TOKEN" >"$tokens"
  for ((i = 1; i < ME_USERS; i++)); do
    r="$(http_json POST /auth/register \
      "{\"email\":\"${BENCH_USER}_$i@bench.invalid\",\"username\":\"${BENCH_USER}_$i\",\"password\":\"$BENCH_PASS\"}")"
    need_2xx register "$r"
    tok="$(printf '%s' "${r% *}" | json_field accessToken)"
    [[ -n "$tok" ]] || die "no accessToken in the register response"
    echo "$tok" >>"$tokens"
  done
  hdr "GET /auth/me (Bearer, $ME_USERS users in turn), $THREADS threads, 64 connections, ${DURATION}s"
  run_wrk me -t"$THREADS" -c64 -d"${DURATION}s" --latency -s "$LUA/bearers.lua" \
    "$BASE_URL/auth/me" -- "$tokens"
  rm -f "$tokens"
  summarize me
}

scenario_refresh() {
  local n=$((REFRESH_CONNECTIONS + THREADS)) i r tok
  hdr "POST /auth/refresh (token chains), $THREADS threads, $REFRESH_CONNECTIONS connections, ${DURATION}s"
  echo "creating $n sessions..."
  : >"$OUT/refresh_tokens.txt"
  for ((i = 0; i < n; i++)); do
    r="$(login)"
    need_2xx login "$r"
    tok="$(printf '%s' "${r% *}" | json_field refreshToken)"
    [[ -n "$tok" ]] || die "no refreshToken in the login response"
    echo "$tok" >>"$OUT/refresh_tokens.txt"
  done
  run_wrk refresh -t"$THREADS" -c"$REFRESH_CONNECTIONS" -d"${DURATION}s" --latency \
    -s "$LUA/refresh.lua" "$BASE_URL/auth/refresh" -- "$OUT/refresh_tokens.txt" "$THREADS"
  rm -f "$OUT/refresh_tokens.txt"
  summarize refresh
}

# The login flood, and meanwhile /health at a fixed PROBE_RATE (lua/probe.lua: wrk with delay(),
# as wrk2 is not in Debian): hashing must not starve the cheap routes.
scenario_login() {
  local probe
  hdr "POST /auth/login, $THREADS threads, 16 connections, ${DURATION}s; /health probed at $PROBE_RATE req/s"
  wrk -t1 -c"$PROBE_CONNECTIONS" -d"$((DURATION - 2 > 1 ? DURATION - 2 : 1))s" --latency \
    -s "$LUA/probe.lua" "$BASE_URL/health" -- "$PROBE_RATE" "$PROBE_CONNECTIONS" \
    >"$OUT/login-probe.txt" 2>&1 &
  probe=$!
  BG_PIDS+=("$probe")
  run_wrk login -t"$THREADS" -c16 -d"${DURATION}s" --latency \
    -s "$LUA/login.lua" "$BASE_URL/auth/login" -- "$BENCH_USER" "$BENCH_PASS"
  wait "$probe" || true
  BG_PIDS=()
  echo "--- /health at a fixed $PROBE_RATE req/s meanwhile ($PROBE_CONNECTIONS connections):"
  sed 's/^/    /' "$OUT/login-probe.txt"
  summarize login
  summarize login-probe
}

scenario_health_under_login() {
  local flood
  hdr "GET /health p99 (64 connections) during a 32-connection login flood, ${DURATION}s"
  wrk -t"$THREADS" -c32 -d"$((DURATION + 4))s" -s "$LUA/login.lua" "$BASE_URL/auth/login" \
    -- "$BENCH_USER" "$BENCH_PASS" >"$OUT/login-flood.txt" 2>&1 &
  flood=$!
  BG_PIDS+=("$flood")
  sleep 2
  run_wrk health-under-login -t"$THREADS" -c64 -d"${DURATION}s" --latency "$BASE_URL/health"
  wait "$flood" || true
  BG_PIDS=()
  echo "--- the login flood meanwhile:"
  sed 's/^/    /' "$OUT/login-flood.txt"
  summarize health-under-login
  summarize login-flood
}

metric() { # metric 'name{labels}' -> value from /metrics (loopback: no token needed)
  curl -fsS --max-time 5 "$BASE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

scenario_webhook() {
  local r token cus user="bench_wh_$tag" applied0 dup0 applied1 dup1
  hdr "POST /billing/webhook (signed, each event once), $THREADS threads, $WEBHOOK_CONNECTIONS connections, ${DURATION}s"
  # a user of its own: its subscriptions would slow the me/soak scenarios' user down
  r="$(http_json POST /auth/register \
    "{\"email\":\"$user@bench.invalid\",\"username\":\"$user\",\"password\":\"$BENCH_PASS\"}")"
  need_2xx "register (webhook user)" "$r"
  token="$(printf '%s' "${r% *}" | json_field accessToken)"
  r="$(http_json POST /auth/subscription/portal '' "$token")"
  need_2xx "billing portal (creates the Stripe customer; bench/serve.sh runs the fake Stripe)" "$r"
  r="$(http_json GET /auth/subscription '' "$token")"
  cus="$(printf '%s' "${r% *}" | json_field stripeCustomerId)"
  [[ -n "$cus" ]] || die "no stripeCustomerId after the portal call"
  echo "signing $WEBHOOK_EVENTS events for customer $cus..."
  /usr/bin/python3 "$ROOT/bench/webhook_events.py" "${STRIPE_WEBHOOK_SECRET:-whsec_inklet_fake}" \
    "$cus" "$WEBHOOK_EVENTS" >"$OUT/webhook_events.tsv"
  applied0="$(metric 'inklet_billing_webhook_events_total{result="applied"}')"
  dup0="$(metric 'inklet_billing_webhook_events_total{result="duplicate"}')"
  run_wrk webhook -t"$THREADS" -c"$WEBHOOK_CONNECTIONS" -d"${DURATION}s" --latency \
    -s "$LUA/webhook.lua" "$BASE_URL/billing/webhook" -- "$OUT/webhook_events.tsv" "$THREADS"
  rm -f "$OUT/webhook_events.tsv"
  applied1="$(metric 'inklet_billing_webhook_events_total{result="applied"}')"
  dup1="$(metric 'inklet_billing_webhook_events_total{result="duplicate"}')"
  echo "webhook events stored: $((applied1 - applied0)) applied, $((dup1 - dup0)) duplicates" \
    "(applied = the 200s above plus at most $WEBHOOK_CONNECTIONS still in flight when wrk stopped" \
    "counting; duplicates must be 0)" | tee -a "$OUT/webhook.txt"
  summarize webhook
}

scenario_soak() {
  local pid r token wrk_pid start_rss end_rss peak rss t0 done_prefix="$OUT/soak-done"
  hdr "memory soak: $SOAK_REQUESTS requests, mixed routes, $THREADS threads, $SOAK_CONNECTIONS connections"
  r="$(login)"
  need_2xx login "$r"
  token="$(printf '%s' "${r% *}" | json_field accessToken)" # fresh: the soak may take minutes
  pid="$(find_pid)"
  if [[ -n "$pid" && -r "/proc/$pid/status" ]]; then
    start_rss="$(rss_kib "$pid")"
    echo "inkletd pid $pid, RSS at start: ${start_rss} KiB"
  else
    pid=""
    echo "inkletd process not found here (set INKLETD_PID): RSS is not sampled"
  fi
  rm -f "$done_prefix".*
  echo "\$ wrk -t$THREADS -c$SOAK_CONNECTIONS -d${SOAK_MAX_SECONDS}s -s soak.lua ..." >"$OUT/soak.txt"
  wrk -t"$THREADS" -c"$SOAK_CONNECTIONS" -d"${SOAK_MAX_SECONDS}s" --latency -s "$LUA/soak.lua" \
    "$BASE_URL/" -- "$token" "$SOAK_REQUESTS" "$THREADS" "$done_prefix" >>"$OUT/soak.txt" 2>&1 &
  wrk_pid=$!
  BG_PIDS+=("$wrk_pid")
  peak="${start_rss:-0}"
  t0=$SECONDS
  while kill -0 "$wrk_pid" 2>/dev/null; do
    for ((i = 0; i < SOAK_SAMPLE_SECONDS * 2; i++)); do
      # every thread reached its quota: wrk would otherwise sleep out its whole -d
      if (($(count_files "$done_prefix".*) >= THREADS)); then
        kill -INT "$wrk_pid" 2>/dev/null || true
        break 2
      fi
      kill -0 "$wrk_pid" 2>/dev/null || break 2
      sleep 0.5
    done
    if [[ -n "$pid" ]]; then
      rss="$(rss_kib "$pid")"
      [[ -n "$rss" ]] || { echo "inkletd (pid $pid) is gone!"; pid=""; continue; }
      ((rss > peak)) && peak=$rss
      printf '  t=%4ss  RSS %8s KiB\n' $((SECONDS - t0)) "$rss"
    fi
  done
  wait "$wrk_pid" || true
  BG_PIDS=()
  rm -f "$done_prefix".*
  sed 's/^/    /' "$OUT/soak.txt"
  if [[ -n "$pid" ]]; then
    sleep 2
    end_rss="$(rss_kib "$pid")"
    echo "RSS start ${start_rss} KiB, end ${end_rss} KiB (2 s after the load), peak ${peak} KiB," \
      "growth $((end_rss - start_rss)) KiB" | tee -a "$OUT/soak.txt"
  fi
  summarize soak
}

# commands, redelivery: bench/commands.sh (simulated displays over MQTT; its own user)
run_commands_sh() { # run_commands_sh SCENARIO
  BASE_URL="$BASE_URL" THREADS="$THREADS" BENCH_OUT="$OUT" "$ROOT/bench/commands.sh" "$1" 2>&1 |
    tee "$OUT/$1.log"
  SUMMARY+=("$(sed -n 's/^>>> //p' "$OUT/$1.log" | tail -n 1)")
}
scenario_commands() { run_commands_sh commands; }
# devices (GET /api/devices, 5 devices), ingest (MQTT heartbeats): bench/devices.sh
scenario_devices() {
  BASE_URL="$BASE_URL" DURATION="$DURATION" BENCH_OUT="$OUT" "$ROOT/bench/devices.sh" list 2>&1 | tee "$OUT/devices.txt"
  summarize devices
}
scenario_ingest() {
  BASE_URL="$BASE_URL" "$ROOT/bench/devices.sh" ingest 2>&1 | tee "$OUT/ingest.txt"
  SUMMARY+=("ingest               $(grep -h '^published' "$OUT/ingest.txt" | tail -n 1)")
}
scenario_limits() {
  BENCH_OUT="$OUT" DURATION="$DURATION" THREADS="$THREADS" "$ROOT/bench/limits.sh" 2>&1 |
    tee "$OUT/limits.log" || die "bench/limits.sh failed (see $OUT/limits.log)"
}
scenario_redelivery() { run_commands_sh redelivery; }

for s in "${SCENARIOS[@]}"; do
  "scenario_${s//-/_}"
done

# ------------------------------------------------------------------ the table
# One row per route: its req/s, p50, p99, the ceiling that bounds it (bench/limits.sh, this run's
# $OUT/ceilings.txt), the fraction of that ceiling, the target (issue 10) and whether it is met.
ceiling() { awk -F= -v k="$1" '$1 == k { v = $0; sub(/^[^=]*=/, "", v) } END { print v }' "$OUT/ceilings.txt" 2>/dev/null; }
trow() { printf '%-26s %10s %10s %10s  %-26s %9s %-13s %s\n' "$@"; }
table_row() { # table_row ROUTE RPS P50 P99 CEILING-NAME CEILING-KEY TARGET-FRACTION
  local route="$1" rps="$2" p50="$3" p99="$4" cname="$5" cval frac="-" target="-" met="-"
  cval="$(ceiling "$6")"
  if [[ -z "$rps" ]]; then
    trow "$route" "not run" - - "$cname" - - -
    return
  fi
  if [[ -n "$cval" ]]; then
    frac="$(awk -v a="$rps" -v b="$cval" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
  fi
  if [[ -n "$7" ]]; then
    target=">= $7 x"
    if [[ -n "$cval" ]]; then
      met="$(awk -v f="$frac" -v t="$7" 'BEGIN { print (f + 0 >= t + 0 ? "yes" : "NO") }')"
    else
      met="(no ceiling)"
    fi
  fi
  [[ -n "$cval" ]] && cval="$(awk -v v="$cval" 'BEGIN { printf "%.0f", v }')" || cval="not measured"
  trow "$route" "$(awk -v v="$rps" 'BEGIN { printf "%.0f", v }')" "$p50" "$p99" \
    "$cname $cval" "$frac" "$target" "$met"
}
to_ms() { # wrk latency (750.00us, 1.20ms, 2.00s) -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /m$/) n *= 60000;
    else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'
}
print_table() {
  local f r p50 p99 probe_p99 ing cmd
  trow route req/s p50 p99 "ceiling (req/s)" fraction target met?
  f="$OUT/health.txt"
  table_row "GET /health" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" "$(wrk_field "$f" p99)" \
    "nginx" http_ceiling 0.9
  f="$OUT/me.txt"
  table_row "GET /auth/me" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" "$(wrk_field "$f" p99)" \
    "db:me" me_ceiling 0.5
  f="$OUT/devices.txt"
  table_row "GET /api/devices" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" \
    "$(wrk_field "$f" p99)" "db:devices" devices_ceiling 0.5
  f="$OUT/refresh.txt"
  table_row "POST /auth/refresh" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" \
    "$(wrk_field "$f" p99)" "db:refresh (fsync)" refresh_ceiling 0.8
  f="$OUT/login.txt"
  table_row "POST /auth/login" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" \
    "$(wrk_field "$f" p99)" "argon2" argon2_ceiling 0.9
  f="$OUT/webhook.txt"
  table_row "POST /billing/webhook" "$(wrk_field "$f" rps)" "$(wrk_field "$f" p50)" \
    "$(wrk_field "$f" p99)" "db:webhook" webhook_ceiling ""
  # commands: the POST rate the database saw (created_at spread); latencies from wrk
  r="" p50="" p99=""
  if [[ -s "$OUT/commands.log" ]]; then
    cmd="$(grep -h '^commands: ' "$OUT/commands.log" | tail -n 1)"
    r="$(sed -n 's/.* posted in [0-9.]* s (\([0-9.]*\)\/s).*/\1/p' <<<"$cmd")"
    p50="$(wrk_field "$OUT/commands.txt" p50)" p99="$(wrk_field "$OUT/commands.txt" p99)"
  fi
  table_row "POST /api/devices/{id}/cmd" "$r" "${p50:--}" "${p99:--}" "db:commands" commands_ceiling ""
  r=""
  if [[ -s "$OUT/ingest.txt" ]]; then
    ing="$(grep -h '^published' "$OUT/ingest.txt" | tail -n 1)"
    r="$(sed -n 's/.*=> \([0-9.]*\) messages\/s sustained.*/\1/p' <<<"$ing")"
  fi
  table_row "MQTT heartbeats (paced)" "$r" - - "db:heartbeat" heartbeat_ceiling ""
  f="$OUT/login-probe.txt"
  if [[ -s "$f" ]]; then
    probe_p99="$(wrk_field "$f" p99)"
    trow "GET /health at fixed rate" "$(awk -v v="$(wrk_field "$f" rps)" 'BEGIN { printf "%.0f", v }')" \
      "$(wrk_field "$f" p50)" "$probe_p99" "(during login, $PROBE_RATE/s)" - "p99 < 10 ms" \
      "$(awk -v v="$(to_ms "$probe_p99")" 'BEGIN { print (v + 0 < 10 ? "yes" : "NO") }')"
  else
    trow "GET /health at fixed rate" "not run" - - "(during login)" - "p99 < 10 ms" -
  fi
  if [[ -s "$OUT/soak.txt" ]] && grep -q '^RSS start' "$OUT/soak.txt"; then
    printf '%s\n' "soak: $(grep -h '^RSS start' "$OUT/soak.txt" | tail -n 1)"
  fi
  echo "ceilings: $OUT/ceilings.txt (pgbench -c $(ceiling me_connections), argon2 $(ceiling argon2_params) on $(ceiling argon2_threads) threads)"
}

hdr "summary ($BASE_URL, $(nproc) cores)"
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
grep -h '^RSS start' "$OUT/soak.txt" 2>/dev/null | tee -a "$OUT/summary.txt" || true
grep -h '^refresh chains' "$OUT/refresh.txt" 2>/dev/null | tee -a "$OUT/summary.txt" || true
grep -h '^webhook' "$OUT/webhook.txt" 2>/dev/null | tee -a "$OUT/summary.txt" || true
hdr "routes against their ceilings ($(nproc) cores)"
print_table | tee "$OUT/table.txt"
echo "raw wrk output: $OUT"
