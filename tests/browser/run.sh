#!/usr/bin/env bash
# tests/browser/run.sh — the real-browser sign-in test (tests/browser/oauth_flow.mjs) with its
# services: the fake Google/Apple providers (tests/fakes/fake_oidc.py) and an inkletd configured
# for them and for the portal's development origin (http://localhost:5173).
#
#   INKLET_BROWSER_INKLETD=build/inkletd \
#   INKLET_BROWSER_DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/itest_browser \
#   INKLET_BROWSER_MQTT_URL=mqtt://127.0.0.1:PORT tests/browser/run.sh
#
# The database must exist (it is migrated here) and should be a throwaway one: every run adds
# users. Optional: INKLET_BROWSER_WORK_DIR (keys, port file and logs; default a temporary
# directory, removed at the end), INKLET_BROWSER_EXECUTABLE (/usr/bin/chromium).
# Needs node (>= 18; playwright-core is pinned to 1.61.1, the last release that runs on
# Debian 12's own nodejs 18), chromium, /usr/bin/python3 with python3-cryptography,
# openssl, curl; runs `npm ci` in tests/browser when its node_modules is missing.
# Output: the test's cmocka-format lines; a failure of the setup or of stopping the services is
# printed as a cmocka group setup/teardown failure, so scripts/lib/cmocka-count.awk counts it.
# Exit status: the test's, or 1 when the setup or the teardown failed.
# shellcheck disable=SC2317  # cleanup runs from the EXIT trap
set -Euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/browser"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

INKLETD="${INKLET_BROWSER_INKLETD:-}"
DATABASE_URL="${INKLET_BROWSER_DATABASE_URL:-}"
MQTT_URL="${INKLET_BROWSER_MQTT_URL:-}"

if [[ -n "${INKLET_BROWSER_WORK_DIR:-}" ]]; then
  WORK="$INKLET_BROWSER_WORK_DIR"
  KEEP_WORK=1
  mkdir -p "$WORK"
else
  WORK="$(mktemp -d /tmp/inklet-browser.XXXXXX)"
  KEEP_WORK=0
fi
INKLETD_LOG="$WORK/inkletd.log"
FAKE_LOG="$WORK/fake_oidc.log"
INKLETD_PID=""
FAKE_PID=""

log() { printf '[browser] %s\n' "$*"; }

tails() {
  local f
  for f in "$INKLETD_LOG" "$FAKE_LOG"; do
    [[ -s "$f" ]] || continue
    echo "----- last 60 lines of $f"
    # cmocka-count.awk reads this output too: no line of a log may pass for a cmocka summary
    tail -n 60 "$f" | tr '[]' '()'
  done
}

# stop_pid PID NAME: SIGTERM, wait up to 20 s (then SIGKILL); the exit status goes into
# STOP_RC (not printed: `wait` only works in the shell that started PID, not in a $(...)).
# Polls instead of a background timer, whose `sleep` would hold our stdout open and so keep a
# `| tee` reading this output waiting after we exit.
STOP_RC=0
stop_pid() {
  local pid="$1" name="$2" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    [[ -e "/proc/$pid" && "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]] || break
    sleep 0.1
  done
  if ((i == 200)); then
    log "$name did not stop within 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  STOP_RC=0
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

cleanup() {
  [[ -z "$INKLETD_PID" ]] || stop_pid "$INKLETD_PID" inkletd
  [[ -z "$FAKE_PID" ]] || stop_pid "$FAKE_PID" fake_oidc
  INKLETD_PID="" FAKE_PID=""
  ((KEEP_WORK)) || rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# setup_failed MESSAGE: the tests could not start; one counted failure
setup_failed() {
  local n
  n="$(grep -c "^    name: '" "$HERE/oauth_flow.mjs" 2>/dev/null || true)"
  echo "[==========] Running ${n:-0} test(s)."
  echo "[  ERROR   ] --- browser setup: $*"
  echo "[  FAILED  ] GROUP SETUP"
  echo "[==========] 0 test(s) run."
  echo "[  PASSED  ] 0 test(s)."
  tails
  exit 1
}

hex64() { openssl rand -hex 32; }

# ------------------------------------------------------------------ prerequisites
[[ -n "$INKLETD" && -x "$INKLETD" ]] || setup_failed "INKLET_BROWSER_INKLETD is not an executable: '$INKLETD'"
[[ -n "$DATABASE_URL" ]] || setup_failed "INKLET_BROWSER_DATABASE_URL is not set"
[[ -n "$MQTT_URL" ]] || setup_failed "INKLET_BROWSER_MQTT_URL is not set"
command -v node >/dev/null || setup_failed "node is not installed"
[[ -x "${INKLET_BROWSER_EXECUTABLE:-/usr/bin/chromium}" ]] ||
  setup_failed "${INKLET_BROWSER_EXECUTABLE:-/usr/bin/chromium} is missing (Debian package chromium)"
if [[ ! -f "$HERE/node_modules/playwright-core/package.json" ]]; then
  log "installing playwright-core (npm ci in tests/browser)"
  npm ci --prefix "$HERE" --no-audit --no-fund || setup_failed "npm ci in tests/browser failed"
fi

# ------------------------------------------------------------------ the fake providers
# the .p8 Apple hands out is a PKCS#8 PEM, which genpkey writes; the fake checks the client
# secret's signature with the public half
if ! openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/apple.p8" 2>/dev/null ||
  ! openssl pkey -in "$WORK/apple.p8" -pubout -out "$WORK/apple.pub.pem" 2>/dev/null; then
  setup_failed "cannot generate the Apple P-256 key with openssl"
fi

rm -f "$WORK/fake.port"
/usr/bin/python3 "$ROOT/tests/fakes/fake_oidc.py" --port 0 --port-file "$WORK/fake.port" \
  --google-client-id inklet-google-web --google-client-secret g-secret \
  --apple-client-id com.iminklet.web --apple-team-id TEAM123456 --apple-key-id KEY1234567 \
  --apple-public-key-file "$WORK/apple.pub.pem" >"$FAKE_LOG" 2>&1 &
FAKE_PID=$!
for ((i = 0; i < 300; i++)); do
  [[ -s "$WORK/fake.port" ]] && break
  kill -0 "$FAKE_PID" 2>/dev/null || setup_failed "fake_oidc.py exited before listening"
  sleep 0.1
done
[[ -s "$WORK/fake.port" ]] || setup_failed "fake_oidc.py wrote no port file within 30 s"
F="http://127.0.0.1:$(tr -d '\n' <"$WORK/fake.port")"

# ------------------------------------------------------------------ inkletd
base=$((20000 + (RANDOM % 1200) * 10))
PORT="$(SVC_QUIET=1 svc_free_port "$base" 200)" || setup_failed "no free port for inkletd"
BASE="http://127.0.0.1:$PORT"
INKLETD_ENV=(
  "PATH=$PATH" "HOME=${HOME:-/}"
  "DATABASE_URL=$DATABASE_URL" "MQTT_URL=$MQTT_URL"
  "JWT_SECRET=$(hex64)" "FACTORY_SECRET=$(hex64)" "TOKEN_ENCRYPTION_KEY=$(hex64)"
  "LISTEN_ADDR=127.0.0.1" "PORT=$PORT"
  "CORS_ORIGINS=http://localhost:5173"
  "OAUTH_WEB_REDIRECT=http://localhost:5173/auth/callback"
  "GOOGLE_CLIENT_IDS=inklet-google-web" "GOOGLE_CLIENT_SECRET=g-secret"
  "GOOGLE_REDIRECT_URL=$BASE/auth/oauth/google/callback"
  "GOOGLE_AUTH_URL=$F/google/o/oauth2/v2/auth" "GOOGLE_TOKEN_URL=$F/google/token"
  "GOOGLE_JWKS_URL=$F/google/oauth2/v3/certs"
  "APPLE_CLIENT_IDS=com.iminklet.web" "APPLE_TEAM_ID=TEAM123456" "APPLE_KEY_ID=KEY1234567"
  "APPLE_PRIVATE_KEY_FILE=$WORK/apple.p8"
  "APPLE_REDIRECT_URL=$BASE/auth/oauth/apple/callback"
  "APPLE_AUTH_URL=$F/apple/auth/authorize" "APPLE_TOKEN_URL=$F/apple/auth/token"
  "APPLE_JWKS_URL=$F/apple/auth/keys" "APPLE_REVOKE_URL=$F/apple/auth/revoke"
)
# a clean environment: a developer's own GOOGLE_*/APPLE_* or *_URL variables must not leak in
env -i "${INKLETD_ENV[@]}" "$INKLETD" migrate >>"$INKLETD_LOG" 2>&1 || setup_failed "inkletd migrate failed"
env -i "${INKLETD_ENV[@]}" "$INKLETD" >>"$INKLETD_LOG" 2>&1 &
INKLETD_PID=$!
healthy=0
for ((i = 0; i < 300; i++)); do
  kill -0 "$INKLETD_PID" 2>/dev/null || setup_failed "inkletd exited during start-up"
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health" || true)" == 200 ]]; then
    healthy=1
    break
  fi
  sleep 0.1
done
((healthy)) || setup_failed "inkletd's GET /health did not answer 200 within 30 s"
log "inkletd on $BASE, fake providers on $F, logs in $WORK"

# ------------------------------------------------------------------ the test
rc=0
INKLET_BASE="$BASE" FAKE_OIDC_BASE="$F" node "$HERE/oauth_flow.mjs" || rc=$?

teardown=0
stop_pid "$INKLETD_PID" inkletd
INKLETD_PID=""
if ((STOP_RC != 0)); then
  echo "[  ERROR   ] --- inkletd exited with status $STOP_RC on SIGTERM (expected 0)"
  echo "[  FAILED  ] GROUP TEARDOWN"
  teardown=1
fi
stop_pid "$FAKE_PID" fake_oidc
FAKE_PID=""
if ((STOP_RC != 0)); then
  echo "[  ERROR   ] --- fake_oidc.py exited with status $STOP_RC on SIGTERM (expected 0)"
  echo "[  FAILED  ] GROUP TEARDOWN"
  teardown=1
fi
if ((rc != 0 || teardown)); then
  tails
  ((rc != 0)) || rc=1
fi
exit "$rc"
