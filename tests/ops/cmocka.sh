# shellcheck shell=bash
# tests/ops/cmocka.sh — cmocka-format results for shell-scripted checks, so that test.sh counts
# them like any test program (scripts/lib/cmocka-count.awk). Source it, then:
#   cm_case NAME CMD...    runs CMD (output kept, indented), one test case: OK when it exits 0
#   cm_finish              prints the group's summary; returns 1 if any case failed
# Each case runs in a subshell with errexit, so a failing command inside a function fails it
# (cm_case must therefore not itself be called from a condition, a pipeline or an && / || list).

CM_CASES=()
CM_FAILED=()

cm_case() {
  local name="$1" rc=0 log
  shift
  CM_CASES+=("$name")
  echo "[ RUN      ] $name"
  log="$(mktemp)"
  # not in a pipeline or an || list: errexit would be ignored inside the subshell
  (set -e; "$@") >"$log" 2>&1
  rc=$?
  sed 's/^/    /' "$log"
  rm -f "$log"
  if ((rc == 0)); then
    echo "[       OK ] $name"
  else
    echo "[  FAILED  ] $name (exit $rc)"
    CM_FAILED+=("$name")
  fi
}

cm_finish() {
  local n=${#CM_CASES[@]} f=${#CM_FAILED[@]} t
  echo "[==========] Running $n test(s)."
  echo "[==========] $n test(s) run."
  echo "[  PASSED  ] $((n - f)) test(s)."
  if ((f > 0)); then
    echo "[  FAILED  ] $f test(s), listed below:"
    for t in "${CM_FAILED[@]}"; do echo "[  FAILED  ] $t"; done
    return 1
  fi
}

# cm_fail MESSAGE: fail the current case with a message on stderr
cm_fail() { echo "FAIL: $*" >&2; return 1; }
