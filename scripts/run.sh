#!/usr/bin/env bash
# scripts/run.sh — build Inklet and run it locally with its own PostgreSQL and Mosquitto.
#
#   ./scripts/run.sh            installs missing Debian packages, builds build/inkletd, starts
#                               PostgreSQL (.run/pg) and Mosquitto, migrates, serves on :4000.
#   Ctrl-C stops inkletd, then the broker, then PostgreSQL.
#
# State lives in .run/ (git-ignored) and persists between runs: the database, the generated
# JWT secret (.run/jwt_secret), the broker password (.run/mqtt_password), logs.
#
# The broker it starts enforces an ACL like production's (docs/devices.md, "Broker ACLs"): a
# display, anonymous here, connects with its thing name as client id and may only publish
# inklet/dev/<its id>/up/# and receive inklet/dev/<its id>/down/#; inkletd logs in as user
# inklet-backend (MQTT_USERNAME/MQTT_PASSWORD are set for it) and alone reads every up/ topic
# and writes every down/ topic. The files are generated into .run/mqtt/ (acl, passwd).
#
# Environment overrides:
#   PORT (4000)  LISTEN_ADDR (127.0.0.1)  CORS_ORIGINS (http://localhost:5173)  LOG_FORMAT (text)
#   JWT_SECRET (from .run/jwt_secret)  FACTORY_SECRET (development value)
#   DATABASE_URL  set it to use your own database instead of starting one
#   MQTT_URL      set it to use your own broker instead of starting one (and MQTT_USERNAME /
#                 MQTT_PASSWORD if it needs a login)
#   INKLET_PG_PORT (54329, or the next free one)  INKLET_MQTT_PORT (18830, or the next free one)
#   INKLET_RUN_DIR (.run)  INKLET_DB_NAME (inklet)  BUILD_DIR (build)
#   INKLET_SKIP_BUILD=1    use the existing $BUILD_DIR/inkletd as is
#   INKLET_SKIP_PACKAGES=1 do not check/install Debian packages
#   INKLET_FAKE_STRIPE=1   also start the local fake Stripe (tests/fakes/fake_stripe.py) and point
#                          billing at it (STRIPE_* / BILLING_* unless already set), to try billing
#                          without a Stripe account; INKLET_STRIPE_PORT (12111, or the next free)
#   INKLET_FAKE_OIDC=1     also start the local fake Google and Apple (tests/fakes/fake_oidc.py) and
#                          point sign-in at them (GOOGLE_* / APPLE_* / TOKEN_ENCRYPTION_KEY unless
#                          already set), so "Sign in with Google/Apple" works without provider
#                          accounts; INKLET_OIDC_PORT (12112, or the next free)
#   SMTP_URL      set it to use your own SMTP relay instead of the local SMTP sink (with
#                 SMTP_USER / SMTP_PASSWORD / SMTP_CA_FILE / MAIL_FROM as it needs)
#   INKLET_SMTP_SINK=0     do not start the sink either: no SMTP_URL, so the mail routes answer 503
#                          mail_not_configured (registration still works)
#   INKLET_SMTP_PORT (12525, or the next free one)  INKLET_SMTP_CTL_PORT (the next free one after)
#                          the sink's SMTP and control ports. Otherwise the sink
#                          (tests/fakes/smtp_sink.py) runs, SMTP_URL points at it, and every mail
#                          inkletd sends lands in .run/mail/<n>.eml (kept between runs) and at
#                          http://127.0.0.1:<ctl port>/_fake/messages (parsed, this run only)
#   PORTAL_URL (http://localhost:5173)  the base of the links in mails
#   MAIL_FROM  (Inklet <no-reply@localhost> with the sink)
# Any other key of config/inkletd.env.example (LOG_LEVEL, RATE_LIMIT_*, ...) passes through.
# shellcheck disable=SC2317  # cleanup is invoked from traps
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

if [[ -t 1 ]]; then say() { printf '\033[1m==> %s\033[0m\n' "$*"; }; else say() { printf '==> %s\n' "$*"; }; fi
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
DB_NAME="${INKLET_DB_NAME:-inklet}"
export PORT="${PORT:-4000}"
export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1}"
export CORS_ORIGINS="${CORS_ORIGINS:-http://localhost:5173}"
export LOG_FORMAT="${LOG_FORMAT:-text}"
export FACTORY_SECRET="${FACTORY_SECRET:-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}"

OWN_PG=0
OWN_MQTT=0
FAKE_STRIPE_PID=""
FAKE_OIDC_PID=""
SMTP_SINK_PID=""
INKLETD_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ -n "$INKLETD_PID" ]] && kill -0 "$INKLETD_PID" 2>/dev/null; then
    say "stopping inkletd (pid $INKLETD_PID)"
    svc_stop_pid "$INKLETD_PID" "$((${SHUTDOWN_GRACE:-10} + 5))" inkletd
  fi
  rm -f "$RUN_DIR/inkletd.pid"
  if [[ -n "$FAKE_STRIPE_PID" ]]; then kill "$FAKE_STRIPE_PID" 2>/dev/null; wait "$FAKE_STRIPE_PID" 2>/dev/null; fi
  if [[ -n "$FAKE_OIDC_PID" ]]; then kill "$FAKE_OIDC_PID" 2>/dev/null; wait "$FAKE_OIDC_PID" 2>/dev/null; fi
  if [[ -n "$SMTP_SINK_PID" ]]; then kill "$SMTP_SINK_PID" 2>/dev/null; wait "$SMTP_SINK_PID" 2>/dev/null; fi
  if ((OWN_MQTT)); then svc_mqtt_stop "$RUN_DIR/mqtt"; fi
  if ((OWN_PG)); then svc_pg_stop "$RUN_DIR/pg"; fi
  say "stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------------ packages and build
if [[ "${INKLET_SKIP_PACKAGES:-0}" != 1 ]]; then
  say "checking Debian packages"
  svc_ensure_packages "${INKLET_PKGS_BUILD[@]}" "${INKLET_PKGS_SERVICES[@]}" ||
    die "package installation failed"
fi
if [[ "${INKLET_SKIP_BUILD:-0}" != 1 ]]; then
  say "building ($BUILD_DIR)"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || die "cmake configure failed"
  cmake --build "$BUILD_DIR" -j "$(nproc)" || die "build failed"
fi
INKLETD="$BUILD_DIR/inkletd"
[[ -x "$INKLETD" ]] || die "$INKLETD not found"

# ------------------------------------------------------------------ state
mkdir -p "$RUN_DIR"
# random_secret FILE: 32 random bytes as hex into FILE (mode 0600) unless it already holds one
random_secret() {
  [[ -s "$1" ]] && return 0
  (
    umask 077
    if command -v openssl >/dev/null 2>&1; then
      openssl rand -hex 32
    else
      od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
      echo
    fi >"$1"
  )
  say "generated a secret in $1"
}
if [[ -z "${JWT_SECRET:-}" ]]; then
  random_secret "$RUN_DIR/jwt_secret"
  JWT_SECRET="$(cat "$RUN_DIR/jwt_secret")"
fi
export JWT_SECRET

# ------------------------------------------------------------------ PostgreSQL
if [[ -z "${DATABASE_URL:-}" ]]; then
  svc_pg_stop "$RUN_DIR/pg" # a server left over by a killed run
  pg_port="$(svc_free_port "${INKLET_PG_PORT:-54329}")"
  OWN_PG=1
  svc_pg_start "$RUN_DIR/pg" "$pg_port" || die "PostgreSQL did not start"
  svc_pg_create_db "$RUN_DIR/pg" "$DB_NAME" || die "could not create database $DB_NAME"
  DATABASE_URL="$(svc_pg_url "$RUN_DIR/pg" "$DB_NAME")"
else
  say "using DATABASE_URL from the environment"
fi
export DATABASE_URL

# ------------------------------------------------------------------ Mosquitto
if [[ -z "${MQTT_URL:-}" ]]; then
  svc_mqtt_stop "$RUN_DIR/mqtt"
  mqtt_port="$(svc_free_port "${INKLET_MQTT_PORT:-18830}")"
  OWN_MQTT=1
  mkdir -p "$RUN_DIR/mqtt"
  # Patterns apply to every client (anonymous displays included), the user block only to the
  # backend's login. Mosquitto's acl_file grants every SUBSCRIBE and checks `read` when it
  # delivers a message, so $share/<group>/... subscriptions need no line of their own.
  cat >"$RUN_DIR/mqtt/acl" <<'ACL'
# written by scripts/run.sh at every start (docs/devices.md, "Broker ACLs")
# A display's client id is its thing name: it speaks and hears only for itself.
pattern write inklet/dev/%c/up/#
pattern read inklet/dev/%c/down/#

# The backend: every display's messages in, commands out.
user inklet-backend
topic read inklet/dev/+/up/#
topic write inklet/dev/+/down/#
ACL
  random_secret "$RUN_DIR/mqtt_password"
  MQTT_USERNAME=inklet-backend
  MQTT_PASSWORD="$(cat "$RUN_DIR/mqtt_password")"
  svc_mqtt_password_file "$RUN_DIR/mqtt/passwd" "$MQTT_USERNAME" "$MQTT_PASSWORD" ||
    die "could not write the broker's password file"
  svc_mqtt_start "$RUN_DIR/mqtt" "$mqtt_port" --acl "$RUN_DIR/mqtt/acl" \
    --password-file "$RUN_DIR/mqtt/passwd" || die "Mosquitto did not start"
  MQTT_URL="$(svc_mqtt_url "$RUN_DIR/mqtt")"
  export MQTT_USERNAME MQTT_PASSWORD
else
  say "using MQTT_URL from the environment"
fi
export MQTT_URL

# ------------------------------------------------------------------ fake Stripe (opt-in)
stripe_hint=""
if [[ "${INKLET_FAKE_STRIPE:-0}" == 1 ]]; then
  stripe_port="$(svc_free_port "${INKLET_STRIPE_PORT:-12111}")"
  /usr/bin/python3 "$ROOT/tests/fakes/fake_stripe.py" --port "$stripe_port" \
    >"$RUN_DIR/fake_stripe.log" 2>&1 &
  FAKE_STRIPE_PID=$!
  for ((i = 0; i < 50; i++)); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$stripe_port/_fake/health" 2>/dev/null && break
    sleep 0.1
  done
  export STRIPE_API_BASE="${STRIPE_API_BASE:-http://127.0.0.1:$stripe_port}"
  export STRIPE_SECRET_KEY="${STRIPE_SECRET_KEY:-sk_test_inklet_fake}"
  export STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_inklet_fake}"
  export STRIPE_PRICE_MONTHLY="${STRIPE_PRICE_MONTHLY:-price_inklet_monthly}"
  export STRIPE_PRICE_YEARLY="${STRIPE_PRICE_YEARLY:-price_inklet_yearly}"
  export BILLING_SUCCESS_URL="${BILLING_SUCCESS_URL:-http://localhost:5173/billing/success}"
  export BILLING_CANCEL_URL="${BILLING_CANCEL_URL:-http://localhost:5173/billing/cancel}"
  export BILLING_PORTAL_RETURN_URL="${BILLING_PORTAL_RETURN_URL:-http://localhost:5173/account}"
  say "fake Stripe on $STRIPE_API_BASE (log: $RUN_DIR/fake_stripe.log)"
  stripe_hint="  Billing goes to the fake Stripe at $STRIPE_API_BASE (tests/fakes/README.md: complete a
  checkout with POST /_fake/checkout/<cs_id>/complete, then POST /_fake/send_event)."
fi

# ------------------------------------------------------------------ fake Google/Apple (opt-in)
oidc_hint=""
if [[ "${INKLET_FAKE_OIDC:-0}" == 1 ]]; then
  oidc_port="$(svc_free_port "${INKLET_OIDC_PORT:-12112}")"
  key="$RUN_DIR/apple-signin-dev.p8"
  if [[ ! -s "$key" ]]; then
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key") ||
      die "cannot generate $key"
  fi
  openssl pkey -in "$key" -pubout -out "$RUN_DIR/apple-signin-dev.pub.pem" 2>/dev/null ||
    die "cannot read $key"
  [[ -s "$RUN_DIR/token_encryption_key" ]] ||
    (umask 077 && openssl rand -hex 32 >"$RUN_DIR/token_encryption_key")
  /usr/bin/python3 "$ROOT/tests/fakes/fake_oidc.py" --port "$oidc_port" \
    --apple-public-key-file "$RUN_DIR/apple-signin-dev.pub.pem" >"$RUN_DIR/fake_oidc.log" 2>&1 &
  FAKE_OIDC_PID=$!
  for ((i = 0; i < 50; i++)); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$oidc_port/_fake/health" 2>/dev/null && break
    sleep 0.1
  done
  f="http://127.0.0.1:$oidc_port"
  api="http://localhost:$PORT"
  export GOOGLE_CLIENT_IDS="${GOOGLE_CLIENT_IDS:-inklet-google-web}"
  export GOOGLE_CLIENT_SECRET="${GOOGLE_CLIENT_SECRET:-g-secret}"
  export GOOGLE_REDIRECT_URL="${GOOGLE_REDIRECT_URL:-$api/auth/oauth/google/callback}"
  export GOOGLE_AUTH_URL="${GOOGLE_AUTH_URL:-$f/google/o/oauth2/v2/auth}"
  export GOOGLE_TOKEN_URL="${GOOGLE_TOKEN_URL:-$f/google/token}"
  export GOOGLE_JWKS_URL="${GOOGLE_JWKS_URL:-$f/google/oauth2/v3/certs}"
  export APPLE_CLIENT_IDS="${APPLE_CLIENT_IDS:-com.iminklet.web}"
  export APPLE_TEAM_ID="${APPLE_TEAM_ID:-TEAM123456}" APPLE_KEY_ID="${APPLE_KEY_ID:-KEY1234567}"
  export APPLE_PRIVATE_KEY_FILE="${APPLE_PRIVATE_KEY_FILE:-$key}"
  export APPLE_REDIRECT_URL="${APPLE_REDIRECT_URL:-$api/auth/oauth/apple/callback}"
  export APPLE_AUTH_URL="${APPLE_AUTH_URL:-$f/apple/auth/authorize}"
  export APPLE_TOKEN_URL="${APPLE_TOKEN_URL:-$f/apple/auth/token}"
  export APPLE_JWKS_URL="${APPLE_JWKS_URL:-$f/apple/auth/keys}"
  export APPLE_REVOKE_URL="${APPLE_REVOKE_URL:-$f/apple/auth/revoke}"
  TOKEN_ENCRYPTION_KEY="${TOKEN_ENCRYPTION_KEY:-$(cat "$RUN_DIR/token_encryption_key")}"
  export TOKEN_ENCRYPTION_KEY
  export OAUTH_WEB_REDIRECT="${OAUTH_WEB_REDIRECT:-http://localhost:5173/auth/callback}"
  say "fake Google/Apple on $f (log: $RUN_DIR/fake_oidc.log)"
  oidc_hint="  Sign-in goes to the fake Google/Apple at $f: open $api/auth/oauth/google in a browser
  (tests/fakes/README.md: POST $f/_fake/user picks who signs in)."
fi

# ------------------------------------------------------------------ SMTP sink (unless SMTP_URL)
mail_hint=""
export PORTAL_URL="${PORTAL_URL:-http://localhost:5173}"
if [[ -z "${SMTP_URL:-}" && "${INKLET_SMTP_SINK:-1}" != 0 ]]; then
  smtp_port="$(svc_free_port "${INKLET_SMTP_PORT:-12525}")"
  smtp_ctl_port="$(svc_free_port "${INKLET_SMTP_CTL_PORT:-$((smtp_port + 1))}")"
  mkdir -p "$RUN_DIR/mail"
  /usr/bin/python3 "$ROOT/tests/fakes/smtp_sink.py" --port "$smtp_ctl_port" \
    --smtp-port "$smtp_port" --maildir "$RUN_DIR/mail" >"$RUN_DIR/smtp_sink.log" 2>&1 &
  SMTP_SINK_PID=$!
  sink_up=0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$SMTP_SINK_PID" 2>/dev/null || break
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$smtp_ctl_port/_fake/health" 2>/dev/null; then
      sink_up=1
      break
    fi
    sleep 0.1
  done
  ((sink_up)) || { cat "$RUN_DIR/smtp_sink.log" >&2; die "the SMTP sink did not start"; }
  export SMTP_URL="smtp://127.0.0.1:$smtp_port"
  export MAIL_FROM="${MAIL_FROM:-Inklet <no-reply@localhost>}"
  mail_ctl="http://127.0.0.1:$smtp_ctl_port"
  say "SMTP sink on $SMTP_URL (log: $RUN_DIR/smtp_sink.log)"
  mail_hint="  Mail: every mail inkletd sends is in $RUN_DIR/mail/ (newest: ls -t $RUN_DIR/mail | head -1)
  and at $mail_ctl/_fake/messages. The newest one's text, with its link:
    curl -s $mail_ctl/_fake/messages | python3 -c 'import json,sys; m=json.load(sys.stdin)[\"messages\"]; print(m[-1][\"text\"] if m else \"no mail yet\")'"
elif [[ -n "${SMTP_URL:-}" ]]; then
  say "using SMTP_URL from the environment"
else
  mail_hint="  No SMTP (INKLET_SMTP_SINK=0): the mail routes answer 503 mail_not_configured."
fi

# ------------------------------------------------------------------ inkletd
if svc_port_busy "$PORT"; then
  die "port $PORT is already in use (set PORT=... to use another one)"
fi
say "migrating ($DATABASE_URL)"
"$INKLETD" migrate || die "inkletd migrate failed"

say "starting inkletd on $LISTEN_ADDR:$PORT (log: stdout)"
# Own session: the terminal's Ctrl-C reaches only this script, whose trap then sends inkletd
# exactly one SIGTERM (drain) before stopping the broker and PostgreSQL.
setsid "$INKLETD" </dev/null &
INKLETD_PID=$!
echo "$INKLETD_PID" >"$RUN_DIR/inkletd.pid"

base="http://localhost:$PORT"
[[ "$LISTEN_ADDR" == 0.0.0.0 || "$LISTEN_ADDR" == 127.0.0.1 || "$LISTEN_ADDR" == localhost ]] ||
  base="http://$LISTEN_ADDR:$PORT"
healthy=0
for ((i = 0; i < 300; i++)); do
  kill -0 "$INKLETD_PID" 2>/dev/null || {
    wait "$INKLETD_PID" && rc=0 || rc=$?
    INKLETD_PID=""
    die "inkletd exited during startup (status $rc)"
  }
  if curl -fsS -o /dev/null --max-time 1 "$base/health" 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 0.1
done
((healthy)) || say "warning: $base/health did not answer 200 yet"
mqtt_hint=""
if ((OWN_MQTT)); then
  mqtt_hint="    mosquitto_sub -h 127.0.0.1 -p $mqtt_port -u $MQTT_USERNAME -P \"\$(cat $RUN_DIR/mqtt_password)\" \\
         -t 'inklet/dev/+/up/#' -v   # watch device traffic (only the backend's login may read it)"
fi

cat <<EOF

  Inklet is running: $base   (pid $INKLETD_PID)
  DATABASE_URL=$DATABASE_URL
  MQTT_URL=$MQTT_URL

  Try:
    curl -s $base/health
    curl -s -X POST $base/auth/register -H 'Content-Type: application/json' \\
         -d '{"email":"ada@example.com","username":"ada","password":"correct horse battery"}'
    TOKEN=\$(curl -s -X POST $base/auth/login -H 'Content-Type: application/json' \\
         -d '{"identifier":"ada","password":"correct horse battery"}' \\
         | sed -n 's/.*"accessToken":"\\([^"]*\\)".*/\\1/p')
    curl -s $base/auth/me -H "Authorization: Bearer \$TOKEN"
$mqtt_hint

  Pair a simulated display (in another terminal):
    $BUILD_DIR/inklet-sim --broker $MQTT_URL --factory-secret $FACTORY_SECRET   # prints CLAIM CODE and NFC payload
    curl -s -X POST $base/api/devices/bind -H "Authorization: Bearer \$TOKEN" \\
         -H 'Content-Type: application/json' -d '{"claimCode":"<code it printed>"}'
    DEVICE=\$(curl -s $base/api/devices -H "Authorization: Bearer \$TOKEN" | sed -n 's/^\[{"id":"\([^"]*\)".*/\1/p')
    curl -s -X POST $base/api/devices/\$DEVICE/commands -H "Authorization: Bearer \$TOKEN" \\
         -H 'Content-Type: application/json' -d '{"kind":"text","text":"Hello, Inklet"}'

$mail_hint
$stripe_hint
$oidc_hint
  Ctrl-C stops inkletd, the broker and PostgreSQL.

EOF

rc=0
wait "$INKLETD_PID" || rc=$?
INKLETD_PID=""
say "inkletd exited (status $rc)"
exit "$rc"
