#!/usr/bin/env bash
# scripts/test.sh — build and run every Inklet test on a fresh Debian 12 machine.
#
#   ./scripts/test.sh              normal + sanitizer (ASan/UBSan) builds: unit tests and the
#                                  integration suite against a throwaway PostgreSQL + Mosquitto,
#                                  then the integration suite once more with inkletd under
#                                  valgrind (fails on leaks and memory errors)
#   ./scripts/test.sh --quick      normal build only, no valgrind
#   ./scripts/test.sh --no-valgrind   skip the valgrind run (INKLET_TEST_VALGRIND=0)
#
# Services and logs live in .test-run/ (git-ignored, wiped at every start). The last line is
# "N passed, N failed" counting the steps; the exit status is non-zero if any step failed.
# Environment: INKLET_JOBS (nproc), INKLET_ITEST_TIMEOUT (1800 s), INKLET_VALGRIND_TIMEOUT
# (3600 s), INKLET_SKIP_PACKAGES=1, ASAN_OPTIONS/UBSAN_OPTIONS (override the defaults below).
# shellcheck disable=SC2317  # step bodies and traps are invoked indirectly
set -Euo pipefail
exec 2>&1 # one ordered stream for CI logs

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

QUICK=0
VALGRIND=1
[[ "${INKLET_TEST_VALGRIND:-1}" == 0 ]] && VALGRIND=0
for arg in "$@"; do
  case "$arg" in
  --quick) QUICK=1 VALGRIND=0 ;;
  --valgrind) VALGRIND=1 ;;
  --no-valgrind) VALGRIND=0 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "test.sh: unknown option $arg" >&2; usage; exit 2 ;;
  esac
done

JOBS="${INKLET_JOBS:-$(nproc)}"
TR="$ROOT/.test-run"
PG_DIR="$TR/pg"
MQ_DIR="$TR/mqtt"
BUILDS=(build)
((QUICK)) || BUILDS+=(build-asan)

banner() {
  if [[ -t 1 ]]; then printf '\n\033[1m===== %s =====\033[0m\n' "$*"; else printf '\n===== %s =====\n' "$*"; fi
}

# ------------------------------------------------------------------ step bookkeeping
declare -a STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=()
declare -A OK=() # step key -> 1 when passed
N_PASS=0
N_FAIL=0
N_SKIP=0
CURRENT_STEP="" # the step running now (recorded as FAIL if we are interrupted)
CURRENT_T0=0

record() { # record NAME RESULT SECONDS
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  STEP_TIMES+=("$3")
  case "$2" in
  PASS) N_PASS=$((N_PASS + 1)) ;;
  FAIL) N_FAIL=$((N_FAIL + 1)) ;;
  *) N_SKIP=$((N_SKIP + 1)) ;;
  esac
}

# step KEY NAME FUNC ARGS... — run FUNC in a subshell (errexit on), record PASS/FAIL.
step() {
  local key="$1" name="$2" t0 rc
  shift 2
  banner "$name"
  t0=$SECONDS
  CURRENT_STEP="$name"
  CURRENT_T0=$t0
  (set -e; "$@")
  rc=$?
  CURRENT_STEP=""
  if ((rc == 0)); then
    OK[$key]=1
    record "$name" PASS $((SECONDS - t0))
    printf -- '----- PASS: %s (%ss)\n' "$name" $((SECONDS - t0))
  else
    record "$name" FAIL $((SECONDS - t0))
    printf -- '----- FAIL: %s (exit %s, %ss)\n' "$name" "$rc" $((SECONDS - t0))
  fi
  return 0
}

skip() { # skip NAME REASON
  banner "$1"
  echo "skipped: $2"
  record "$1" SKIP 0
}

SUMMARY_DONE=0
summary() {
  local i
  ((SUMMARY_DONE)) && return 0
  SUMMARY_DONE=1
  banner "summary"
  for i in "${!STEP_NAMES[@]}"; do
    printf '%-4s  %-40s %6ss\n' "${STEP_RESULTS[$i]}" "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
  done
  if ((N_SKIP)); then
    printf '%d passed, %d failed, %d skipped\n' "$N_PASS" "$N_FAIL" "$N_SKIP"
  else
    printf '%d passed, %d failed\n' "$N_PASS" "$N_FAIL"
  fi
}

STARTED_SERVICES=0
stop_services() {
  ((STARTED_SERVICES)) || return 0
  STARTED_SERVICES=0
  banner "stopping services"
  svc_mqtt_stop "$MQ_DIR" || true
  svc_pg_stop "$PG_DIR" || true
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n "$CURRENT_STEP" ]]; then
    record "$CURRENT_STEP (interrupted)" FAIL $((SECONDS - CURRENT_T0))
    CURRENT_STEP=""
  fi
  stop_services
  if ((!SUMMARY_DONE)); then
    [[ $rc == 0 ]] && rc=1 # interrupted before the end
    summary
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "test.sh: interrupted"; exit 130' INT
trap 'echo "test.sh: terminated"; exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------------ step bodies
do_packages() {
  local -a pkgs=("${INKLET_PKGS_BUILD[@]}" "${INKLET_PKGS_SERVICES[@]}")
  ((VALGRIND)) && pkgs+=("${INKLET_PKGS_TEST[@]}")
  svc_ensure_packages "${pkgs[@]}"
}

do_build() { # do_build DIR CMAKE_ARGS...
  local dir="$1"
  shift
  cmake -S "$ROOT" -B "$ROOT/$dir" "$@"
  cmake --build "$ROOT/$dir" -j "$JOBS"
  test -x "$ROOT/$dir/inkletd"
  test -x "$ROOT/$dir/tests/integration/inklet-itest"
}

# run_bounded SECS CMD...: run CMD with a time limit; Ctrl-C/TERM stop it too (timeout(1) puts
# CMD in its own process group, out of reach of the terminal's SIGINT).
run_bounded() {
  local secs="$1" pid rc
  shift
  timeout -k 30 "$secs" "$@" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
  rc=0
  wait "$pid" || rc=$?
  trap - INT TERM
  ((rc == 124)) && echo "timed out after ${secs}s: $*"
  return "$rc"
}

wipe_test_dir() {
  svc_mqtt_stop "$MQ_DIR" || true
  svc_pg_remove "$PG_DIR" || true
  svc_rm_rf "$TR" || return 1
  mkdir -p "$TR"
}

do_services() {
  local pg_port mq_port base
  # random base so that parallel runs on one machine rarely collide
  base=$((20000 + (RANDOM % 2000) * 10))
  pg_port="$(svc_free_port "$base" 200)"
  svc_pg_start "$PG_DIR" "$pg_port" --fast
  mq_port="$(svc_free_port $((pg_port + 1)) 200)"
  svc_mqtt_start "$MQ_DIR" "$mq_port"
}

sanitizer_env() {
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  echo "ASAN_OPTIONS=$ASAN_OPTIONS"
  echo "UBSAN_OPTIONS=$UBSAN_OPTIONS"
}

do_unit() { # do_unit BUILD_DIR
  [[ "$1" == build-asan ]] && sanitizer_env
  ctest --test-dir "$ROOT/$1" -L unit --output-on-failure --no-tests=error --timeout 600
}

do_itest() { # do_itest BUILD_DIR DBNAME [WRAPPER]
  local build="$1" db="$2" wrapper="${3:-}" timeout="${INKLET_ITEST_TIMEOUT:-1800}"
  [[ "$build" == build-asan ]] && sanitizer_env
  # an earlier suite may have left a service stopped: make sure both are up
  svc_pg_start "$PG_DIR" "$(svc_pg_port "$PG_DIR")" --fast
  svc_mqtt_start "$MQ_DIR" "$(svc_mqtt_port "$MQ_DIR")"
  svc_pg_create_db "$PG_DIR" "$db" --fresh

  export INKLET_ITEST_INKLETD="$ROOT/$build/inkletd"
  export INKLET_ITEST_DATABASE_URL
  INKLET_ITEST_DATABASE_URL="$(svc_pg_url "$PG_DIR" "$db")"
  export INKLET_ITEST_PG_STOP INKLET_ITEST_PG_START INKLET_ITEST_MQTT_URL
  INKLET_ITEST_PG_STOP="$(svc_cmdline svc_pg_stop "$PG_DIR")"
  INKLET_ITEST_PG_START="$(svc_cmdline svc_pg_start "$PG_DIR" "$(svc_pg_port "$PG_DIR")" --fast)"
  INKLET_ITEST_MQTT_URL="$(svc_mqtt_url "$MQ_DIR")"
  export INKLET_ITEST_MQTT_STOP INKLET_ITEST_MQTT_START
  INKLET_ITEST_MQTT_STOP="$(svc_cmdline svc_mqtt_stop "$MQ_DIR")"
  INKLET_ITEST_MQTT_START="$(svc_cmdline svc_mqtt_start "$MQ_DIR" "$(svc_mqtt_port "$MQ_DIR")")"
  if [[ -n "$wrapper" ]]; then
    export INKLET_ITEST_WRAPPER="$wrapper"
    timeout="${INKLET_VALGRIND_TIMEOUT:-3600}"
  else
    unset INKLET_ITEST_WRAPPER
  fi
  env | grep '^INKLET_ITEST_' | sort
  run_bounded "$timeout" "$ROOT/$build/tests/integration/inklet-itest"
}

do_itest_valgrind() {
  local logdir="$TR/valgrind" supp="" wrapper rc bad=0 f tmp=""
  # the wrapper is split on white space, so the log path must not contain any
  if [[ "$logdir" =~ [[:space:]] ]]; then
    logdir="$(mktemp -d /tmp/inklet-vg.XXXXXX)"
    tmp="$logdir"
  fi
  mkdir -p "$logdir"
  [[ -f "$ROOT/scripts/valgrind.supp" ]] && supp="--suppressions=$ROOT/scripts/valgrind.supp"
  wrapper="valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect"
  wrapper+=" --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=yes"
  wrapper+=" --num-callers=30 --child-silent-after-fork=yes $supp"
  wrapper+=" --log-file=$logdir/inkletd.%p.log"
  set +e
  (set -e; do_itest build itest_valgrind "$wrapper")
  rc=$?
  set -e
  for f in "$logdir"/inkletd.*.log; do
    [[ -e "$f" ]] || continue
    if grep -Eq 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]' "$f"; then
      echo "valgrind reported problems in $f:"
      cat "$f"
      bad=1
    fi
  done
  ls "$logdir"/inkletd.*.log >/dev/null 2>&1 || { echo "no valgrind logs were written"; bad=1; }
  [[ -z "$tmp" ]] || rm -rf "$tmp"
  ((rc == 0 && bad == 0))
}

# ------------------------------------------------------------------ the run
echo "Inklet tests: builds: ${BUILDS[*]}; valgrind: $([[ $VALGRIND == 1 ]] && echo yes || echo no); jobs: $JOBS"

wipe_test_dir || { echo "test.sh: cannot wipe $TR"; exit 1; }

if [[ "${INKLET_SKIP_PACKAGES:-0}" != 1 ]]; then
  step packages "install Debian packages" do_packages
fi

step build "build normal (RelWithDebInfo)" do_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if ((!QUICK)); then
  step build-asan "build sanitizer (ASan+UBSan)" do_build build-asan -DCMAKE_BUILD_TYPE=Debug \
    -DINKLET_SANITIZE=ON
fi

STARTED_SERVICES=1
step services "start PostgreSQL + Mosquitto" do_services

for b in "${BUILDS[@]}"; do
  if [[ -n "${OK[$b]:-}" ]]; then
    step "unit-$b" "unit tests ($b)" do_unit "$b"
  else
    skip "unit tests ($b)" "build failed"
  fi
  if [[ -z "${OK[$b]:-}" ]]; then
    skip "integration tests ($b)" "build failed"
  elif [[ -z "${OK[services]:-}" ]]; then
    skip "integration tests ($b)" "services did not start"
  else
    step "itest-$b" "integration tests ($b)" do_itest "$b" "itest_${b//-/_}"
  fi
done

if ((VALGRIND)); then
  if [[ -n "${OK[build]:-}" && -n "${OK[services]:-}" ]]; then
    step itest-valgrind "integration tests (build, valgrind)" do_itest_valgrind
  else
    skip "integration tests (build, valgrind)" "build or services failed"
  fi
fi

stop_services
summary
if ((N_FAIL == 0 && N_SKIP == 0)); then exit 0; fi
exit 1
