#!/usr/bin/env bash
# scripts/test.sh — build and run every Inklet test on a fresh Debian 12 machine.
#
#   ./scripts/test.sh              normal + sanitizer (ASan/UBSan) builds: unit tests and the
#                                  integration suite against a throwaway PostgreSQL + Mosquitto,
#                                  then the integration suite once more with inkletd under
#                                  valgrind (fails on leaks and memory errors); after the normal
#                                  build's integration suite, the real-browser sign-in test
#                                  (tests/browser/: Debian's chromium driven with playwright-core
#                                  through Google/Apple sign-in against the fake providers, CORS
#                                  judged by the browser; about 6 s when it passes); before
#                                  valgrind, every libFuzzer driver (tests/fuzz/fuzz.sh, clang-14,
#                                  ASan+UBSan, 20 s each; each driver counts as one test) and the
#                                  deployment checks (tests/ops/: the systemd unit through
#                                  systemd-analyze verify, the Dockerfile built or its stages
#                                  reproduced)
#   ./scripts/test.sh --quick      normal build only, no valgrind, no fuzzing, no deployment
#                                  checks (the browser test still runs)
#   ./scripts/test.sh --no-valgrind   skip the valgrind run (INKLET_TEST_VALGRIND=0)
#
# Services and logs live in .test-run/ (git-ignored, wiped at every start). The last line is
# "N passed, M failed" (with "K skipped" on the line before it when K > 0) counting cmocka test cases, summed over every unit-test
# program (run by ctest), every integration run (normal build, sanitizer build, valgrind) and the
# browser test: a test that runs in three builds counts three times. M also counts 1 for every failure that is no
# test case: a failed step (build, services), a group setup/teardown failure, a test program that
# crashed, timed out or printed no results, or exited non-zero with no failed test, valgrind
# reporting errors or leaks. K counts tests that called skip() plus 1 for each skipped step.
# The summary table shows every step and, for steps that ran tests, their counts; a skipped
# test does not fail the run, the exit status is non-zero if anything failed or a step was skipped.
# Environment: INKLET_JOBS (nproc), INKLET_ITEST_TIMEOUT (1800 s), INKLET_VALGRIND_TIMEOUT
# (3600 s), INKLET_VALGRIND_EXTRA (more valgrind options, e.g. --track-origins=yes),
# INKLET_SKIP_PACKAGES=1, INKLET_TEST_BROWSER=0 (no browser test, and no chromium or node
# installed for it), INKLET_TEST_FUZZ=0 (no fuzzing, and no clang-14 installed for it),
# FUZZ_SECONDS (20 per driver), INKLET_FUZZ_TIMEOUT (1800 s), ASAN_OPTIONS/UBSAN_OPTIONS
# (override the defaults below).
# shellcheck disable=SC2317  # step bodies and traps are invoked indirectly
set -Euo pipefail
exec 2>&1 # one ordered stream for CI logs

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

usage() { sed -n '2,/^# shellcheck/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0
VALGRIND=1
[[ "${INKLET_TEST_VALGRIND:-1}" == 0 ]] && VALGRIND=0
BROWSER=1
[[ "${INKLET_TEST_BROWSER:-1}" == 0 ]] && BROWSER=0
FUZZ=1
[[ "${INKLET_TEST_FUZZ:-1}" == 0 ]] && FUZZ=0
for arg in "$@"; do
  case "$arg" in
  --quick) QUICK=1 VALGRIND=0 FUZZ=0 ;;
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
# The totals count test cases (see the header). Steps run in subshells, so a step that runs tests
# hands its counts back in the file $STEP_COUNTS: one line per test program,
# "NAME<TAB>PASSED<TAB>FAILED<TAB>SKIPPED<TAB>NOTE", from count_cmocka or count_problem.
declare -a STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=() STEP_TESTS=()
declare -A OK=() # step key -> 1 when passed
N_PASS=0         # test cases passed
N_FAIL=0         # test cases failed or errored, +1 per failure that is no test case
N_SKIP=0         # test cases skipped, +1 per skipped step
N_SKIPPED_STEPS=0
CURRENT_STEP="" # the step running now (recorded as FAIL if we are interrupted)
CURRENT_T0=0
COUNTS_DIR="$TR/counts"
STEP_COUNTS=""

record() { # record NAME RESULT SECONDS PASSED FAILED SKIPPED COUNTS_TEXT
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  STEP_TIMES+=("$3")
  STEP_TESTS+=("$7")
  N_PASS=$((N_PASS + $4))
  N_FAIL=$((N_FAIL + $5))
  N_SKIP=$((N_SKIP + $6))
  [[ "$2" == SKIP ]] && N_SKIPPED_STEPS=$((N_SKIPPED_STEPS + 1))
  return 0
}

fmt_counts() { # fmt_counts PASSED FAILED SKIPPED
  printf '%s passed, %s failed' "$1" "$2"
  (($3 == 0)) || printf ', %s skipped' "$3"
}

sum_counts() { # sum_counts FILE -> "PASSED FAILED SKIPPED PROGRAMS"
  if [[ -s "$1" ]]; then
    awk -F '\t' '{ p += $2; f += $3; s += $4; n++ } END { print p + 0, f + 0, s + 0, n + 0 }' "$1"
  else
    echo 0 0 0 0
  fi
}

show_counts() { # show_counts FILE: one line per test program
  [[ -s "$1" ]] || return 0
  awk -F '\t' '{ printf "  %-36s %5d passed %4d failed", $1, $2, $3
                 if ($4) printf " %4d skipped", $4
                 if ($5 != "") printf "  %s", $5
                 printf "\n" }' "$1"
}

# count_cmocka [-v name=PROG -v rc=STATUS | -v ctest=1 -v failed_list=FILE] < LOG: append the
# counts of the test program(s) whose output is LOG to $STEP_COUNTS
count_cmocka() { awk -f "$ROOT/scripts/lib/cmocka-count.awk" "$@" >>"$STEP_COUNTS"; }

count_problem() { # count_problem NAME NOTE: a failure that is no test case, counted as 1
  printf '%s\t0\t1\t0\t%s (+1)\n' "$1" "$2" >>"$STEP_COUNTS"
}

# step [--tests] KEY NAME FUNC ARGS... — run FUNC in a subshell (errexit on), record PASS/FAIL.
# --tests: FUNC runs test programs and reports their counts (count_cmocka); a step that reports
# none, or fails with no failed test, counts 1 failed. A step without tests that fails counts 1.
step() {
  local tests=0 key name t0 rc p f s n text
  [[ "$1" == --tests ]] && tests=1 && shift
  key="$1" name="$2"
  shift 2
  banner "$name"
  t0=$SECONDS
  CURRENT_STEP="$name"
  CURRENT_T0=$t0
  STEP_COUNTS="$COUNTS_DIR/$key" # seen by the subshell below, not exported
  rm -f "$STEP_COUNTS"
  (set -e; "$@")
  rc=$?
  CURRENT_STEP=""
  read -r p f s n < <(sum_counts "$STEP_COUNTS")
  text=""
  if ((tests)); then
    echo "----- test cases:"
    show_counts "$STEP_COUNTS"
    if ((n == 0)); then
      echo "  no test program reported any result: counted as 1 failed"
      f=$((f + 1))
    elif ((rc != 0 && f == 0)); then
      echo "  the step failed (exit $rc) with no failed test: counted as 1 failed"
      f=1
    fi
    text="$(fmt_counts "$p" "$f" "$s")"
  elif ((rc != 0)); then
    p=0 f=1 s=0 text="counted as 1 failed"
  fi
  if ((rc == 0 && f == 0)); then
    OK[$key]=1
    record "$name" PASS $((SECONDS - t0)) "$p" "$f" "$s" "$text"
    printf -- '----- PASS: %s (%ss)%s\n' "$name" $((SECONDS - t0)) "${text:+: $text}"
  else
    record "$name" FAIL $((SECONDS - t0)) "$p" "$f" "$s" "$text"
    printf -- '----- FAIL: %s (exit %s, %ss)%s\n' "$name" "$rc" $((SECONDS - t0)) "${text:+: $text}"
  fi
  return 0
}

skip() { # skip NAME REASON
  banner "$1"
  echo "skipped: $2"
  record "$1" SKIP 0 0 0 1 "counted as 1 skipped"
}

SUMMARY_DONE=0
summary() {
  local i
  ((SUMMARY_DONE)) && return 0
  SUMMARY_DONE=1
  banner "summary"
  for i in "${!STEP_NAMES[@]}"; do
    printf '%-4s  %-40s %6ss%s\n' "${STEP_RESULTS[$i]}" "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}" \
      "${STEP_TESTS[$i]:+  ${STEP_TESTS[$i]}}"
  done
  # the last line is exactly "N passed, M failed" (what CI reads); skips go on the line before
  ((N_SKIP == 0)) || printf '%d skipped (not counted as passed)\n' "$N_SKIP"
  printf '%d passed, %d failed\n' "$N_PASS" "$N_FAIL"
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
    local p f s n text="counted as 1 failed"
    read -r p f s n < <(sum_counts "$STEP_COUNTS") # what it counted before it was stopped
    ((f > 0)) || f=1                                # the interruption is a failure
    ((n == 0)) || text="$(fmt_counts "$p" "$f" "$s")"
    record "$CURRENT_STEP (interrupted)" FAIL $((SECONDS - CURRENT_T0)) "$p" "$f" "$s" "$text"
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
  ((VALGRIND || !QUICK)) && pkgs+=("${INKLET_PKGS_TEST[@]}")
  ((FUZZ)) && pkgs+=("${INKLET_PKGS_FUZZ[@]}")
  # chromium always; nodejs/npm only when node/npm are missing (see svc_browser_packages)
  if ((BROWSER)); then mapfile -t -O "${#pkgs[@]}" pkgs < <(svc_browser_packages); fi
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
  # below the ephemeral range (32768+), where client sockets of other runs would collide
  base=$((20000 + (RANDOM % 1200) * 10))
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

# The unit counts come from ctest's Testing/Temporary/LastTest.log, which holds the whole output
# of every test, passed or failed, while the console stays as it was (output of failing tests
# only). ctest -V would flood the console and prefix every line; --output-junit keeps only 1 KiB
# of a passing test's output (the cmocka summary is at the end); running the binaries ourselves
# would bypass the ctest setup (timeouts, labels, properties). LastTest.log says "Test Passed."
# even for a test that could not be started, so LastTestsFailed.log gives the verdict, and a
# test with no cmocka output counts as failed anyway. Both are removed first: a stale log from
# an earlier run must never be counted.
do_unit() { # do_unit BUILD_DIR
  local tmp="$ROOT/$1/Testing/Temporary" rc=0
  [[ "$1" == build-asan ]] && sanitizer_env
  rm -f "$tmp/LastTest.log" "$tmp/LastTestsFailed.log"
  ctest --test-dir "$ROOT/$1" -L unit --output-on-failure --no-tests=error --timeout 600 || rc=$?
  if [[ -f "$tmp/LastTest.log" ]]; then
    count_cmocka -v ctest=1 -v failed_list="$tmp/LastTestsFailed.log" <"$tmp/LastTest.log"
  else
    count_problem ctest "wrote no $tmp/LastTest.log"
  fi
  return "$rc"
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
  export INKLET_ITEST_PG_FREEZE INKLET_ITEST_PG_THAW
  export INKLET_ITEST_FAKE_STRIPE="$ROOT/tests/fakes/fake_stripe.py"
  export INKLET_ITEST_FAKE_OIDC="$ROOT/tests/fakes/fake_oidc.py"
  export INKLET_ITEST_SMTP_SINK="$ROOT/tests/fakes/smtp_sink.py"
  INKLET_ITEST_PG_FREEZE="$(svc_cmdline svc_pg_freeze "$PG_DIR")"
  INKLET_ITEST_PG_THAW="$(svc_cmdline svc_pg_thaw "$PG_DIR")"
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
  # the console shows everything as it comes; the copy in .test-run/logs/ is counted. tee -i
  # keeps copying after Ctrl-C while run_bounded stops the suite. rc: the suite's exit status,
  # or tee's if only tee failed (pipefail).
  local log="$TR/logs/$db.log" rc=0
  run_bounded "$timeout" "$ROOT/$build/tests/integration/inklet-itest" 2>&1 | tee -i "$log" || rc=$?
  count_cmocka -v name="inklet-itest ($db)" -v rc="$rc" <"$log"
  return "$rc"
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
  # no --track-origins: it finds no more errors, only says where an uninitialised value came
  # from, and it made the run 35-40 % slower; INKLET_VALGRIND_EXTRA=--track-origins=yes for that
  wrapper+=" --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
  wrapper+=" ${INKLET_VALGRIND_EXTRA:-}"
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
  # one failure for the run, however many inkletd processes valgrind complained about
  ((bad == 0)) || count_problem valgrind "reported errors or leaks in inkletd, or wrote no log"
  [[ -z "$tmp" ]] || rm -rf "$tmp"
  ((rc == 0 && bad == 0))
}

# The real-browser sign-in test: tests/browser/run.sh starts the fake providers and its own
# inkletd (normal build) on a fresh database of our PostgreSQL; its cmocka-format output is
# counted like an integration suite's. Its keys, port file and logs stay in $TR/browser/.
do_browser() {
  local db=itest_browser log="$TR/logs/browser.log" rc=0
  svc_pg_start "$PG_DIR" "$(svc_pg_port "$PG_DIR")" --fast
  svc_mqtt_start "$MQ_DIR" "$(svc_mqtt_port "$MQ_DIR")"
  svc_pg_create_db "$PG_DIR" "$db" --fresh
  export INKLET_BROWSER_INKLETD="$ROOT/build/inkletd" INKLET_BROWSER_WORK_DIR="$TR/browser"
  export INKLET_BROWSER_DATABASE_URL INKLET_BROWSER_MQTT_URL
  INKLET_BROWSER_DATABASE_URL="$(svc_pg_url "$PG_DIR" "$db")"
  INKLET_BROWSER_MQTT_URL="$(svc_mqtt_url "$MQ_DIR")"
  env | grep '^INKLET_BROWSER_' | sort
  run_bounded 600 "$ROOT/tests/browser/run.sh" 2>&1 | tee -i "$log" || rc=$?
  count_cmocka -v name="browser sign-in" -v rc="$rc" <"$log"
  return "$rc"
}

# The shipped systemd unit (systemd-analyze verify) and the Dockerfile (built with an engine, else
# its stages reproduced here): tests/ops/, cmocka-format output. The Dockerfile's runtime check
# starts the binary it built against a fresh database of our PostgreSQL.
do_deploy() {
  local db=itest_deploy rc=0
  svc_pg_create_db "$PG_DIR" "$db" --fresh
  DATABASE_URL="$(svc_pg_url "$PG_DIR" "$db")" "$ROOT/build/inkletd" migrate
  "$ROOT/tests/ops/check_unit.sh" "$ROOT/build" >"$TR/logs/unit.log" 2>&1 || rc=$?
  cat "$TR/logs/unit.log"
  count_cmocka -v name="systemd unit" -v rc="$rc" <"$TR/logs/unit.log"
  local rc2=0
  INKLET_DOCKER_DATABASE_URL="$(svc_pg_url "$PG_DIR" "$db")" \
    run_bounded 1200 "$ROOT/tests/ops/check_docker.sh" >"$TR/logs/docker.log" 2>&1 || rc2=$?
  cat "$TR/logs/docker.log"
  count_cmocka -v name="Dockerfile" -v rc="$rc2" <"$TR/logs/docker.log"
  ((rc == 0 && rc2 == 0))
}

# The libFuzzer drivers: tests/fuzz/fuzz.sh builds each into build-fuzz/ and runs it for
# FUZZ_SECONDS on a copy of its seeds, printing cmocka-style lines (one test per driver).
do_fuzz() {
  local log="$TR/logs/fuzz.log" rc=0
  run_bounded "${INKLET_FUZZ_TIMEOUT:-1800}" "$ROOT/tests/fuzz/fuzz.sh" 2>&1 | tee -i "$log" || rc=$?
  count_cmocka -v name="fuzz (libFuzzer)" -v rc="$rc" <"$log"
  return "$rc"
}

# The SMTP sink's own checks (tests/fakes/check_smtp_sink.sh: curl and smtplib against it), so a
# sink that accepts what a real server refuses cannot make the mail tests pass: one test case.
do_fakes() {
  local log="$TR/logs/fakes.log" rc=0
  (
    # shellcheck source=tests/ops/cmocka.sh
    . "$ROOT/tests/ops/cmocka.sh"
    cm_case "the SMTP sink speaks SMTP as documented (check_smtp_sink.sh)" \
      run_bounded 300 "$ROOT/tests/fakes/check_smtp_sink.sh"
    cm_finish
  ) >"$log" 2>&1 || rc=$?
  cat "$log"
  count_cmocka -v name="test fakes" -v rc="$rc" <"$log"
  return "$rc"
}

# ------------------------------------------------------------------ the run
echo "Inklet tests: builds: ${BUILDS[*]}; valgrind: $([[ $VALGRIND == 1 ]] && echo yes || echo no);" \
  "browser: $([[ $BROWSER == 1 ]] && echo yes || echo no);" \
  "fuzzing: $([[ $FUZZ == 1 ]] && echo yes || echo no); jobs: $JOBS"

wipe_test_dir || { echo "test.sh: cannot wipe $TR"; exit 1; }
mkdir -p "$COUNTS_DIR" "$TR/logs"

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
step --tests fakes "test fakes (SMTP sink)" do_fakes

for b in "${BUILDS[@]}"; do
  if [[ -n "${OK[$b]:-}" ]]; then
    step --tests "unit-$b" "unit tests ($b)" do_unit "$b"
  else
    skip "unit tests ($b)" "build failed"
  fi
  if [[ -z "${OK[$b]:-}" ]]; then
    skip "integration tests ($b)" "build failed"
  elif [[ -z "${OK[services]:-}" ]]; then
    skip "integration tests ($b)" "services did not start"
  else
    step --tests "itest-$b" "integration tests ($b)" do_itest "$b" "itest_${b//-/_}"
  fi
  if [[ "$b" == build ]] && ((BROWSER)); then
    if [[ -n "${OK[build]:-}" && -n "${OK[services]:-}" ]]; then
      step --tests browser "browser sign-in (build, chromium)" do_browser
    else
      skip "browser sign-in (build, chromium)" "build or services failed"
    fi
  fi
done

if ((FUZZ)); then
  step --tests fuzz "fuzzing (libFuzzer, ASan+UBSan)" do_fuzz
fi

if ((!QUICK)); then
  if [[ -n "${OK[services]:-}" ]]; then
    step --tests deploy "deployment files (systemd unit, Dockerfile)" do_deploy
  else
    skip "deployment files (systemd unit, Dockerfile)" "services did not start"
  fi
fi

if ((VALGRIND)); then
  if [[ -n "${OK[build]:-}" && -n "${OK[services]:-}" ]]; then
    step --tests itest-valgrind "integration tests (build, valgrind)" do_itest_valgrind
  else
    skip "integration tests (build, valgrind)" "build or services failed"
  fi
fi

stop_services
summary
# skipped tests (skip()) do not fail the run; skipped steps do (they follow a failed one anyway)
if ((N_FAIL == 0 && N_SKIPPED_STEPS == 0)); then exit 0; fi
exit 1
