#!/usr/bin/env bash
# bench/serve.sh — build and serve inkletd for benchmarking: like scripts/run.sh (same
# scripts/lib/services.sh services, same build), but with rate limits and login back-off out of
# the way, LOG_LEVEL=warn, and its own state in .run/bench/ (separate database).
#
#   bench/serve.sh &  bench/run.sh      # then: kill %1  (SIGTERM stops inkletd, broker, database)
#
# Every variable of scripts/run.sh works here too (PORT, INKLET_PG_PORT, DATABASE_URL, ...);
# values already set in the environment win over the ones below.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export INKLET_RUN_DIR="${INKLET_RUN_DIR:-$ROOT/.run/bench}"
export INKLET_DB_NAME="${INKLET_DB_NAME:-inklet_bench}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"
export RATE_LIMIT_LOGIN="${RATE_LIMIT_LOGIN:-1000000/1}"
export RATE_LIMIT_REFRESH="${RATE_LIMIT_REFRESH:-1000000/1}"
export RATE_LIMIT_REGISTER="${RATE_LIMIT_REGISTER:-1000000/1}"
export RATE_LIMIT_BIND="${RATE_LIMIT_BIND:-1000000/1}"
export LOGIN_BACKOFF_AFTER="${LOGIN_BACKOFF_AFTER:-1000000}"
# billing against the local fake Stripe, for the webhook scenario
export INKLET_FAKE_STRIPE="${INKLET_FAKE_STRIPE:-1}"

echo "bench/serve.sh: RATE_LIMIT_LOGIN=$RATE_LIMIT_LOGIN RATE_LIMIT_REFRESH=$RATE_LIMIT_REFRESH" \
  "RATE_LIMIT_REGISTER=$RATE_LIMIT_REGISTER LOGIN_BACKOFF_AFTER=$LOGIN_BACKOFF_AFTER LOG_LEVEL=$LOG_LEVEL"
exec "$ROOT/scripts/run.sh" "$@"
