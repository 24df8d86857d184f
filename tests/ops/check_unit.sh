#!/usr/bin/env bash
# tests/ops/check_unit.sh BUILD_DIR — checks of the shipped systemd unit (config/inklet.service),
# one cmocka-format test case each (tests/ops/cmocka.sh):
#   - `systemd-analyze verify` accepts it without a single warning (it exits 0 on unknown keys
#     and unparsable values, so any output fails), with the binary paths pointed at BUILD_DIR;
#   - the keys the daemon relies on: Type=notify with NotifyAccess=main (READY/STOPPING and the
#     watchdog, src/core/sdnotify.c), WatchdogSec, Restart=on-failure, a stop timeout that covers
#     the drain, an unprivileged user with no capabilities.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
UNIT="${INKLET_UNIT:-$ROOT/config/inklet.service}"
# shellcheck source=tests/ops/cmocka.sh
. "$ROOT/tests/ops/cmocka.sh"

# unit_value KEY: the last value of KEY= in the unit (systemd: a later assignment wins)
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }

# seconds VALUE: systemd time span ("30s", "1min", "90") in seconds
seconds() {
  local v="$1"
  case "$v" in
    *min) echo $((${v%min} * 60)) ;;
    *s) echo "${v%s}" ;;
    *) echo "$v" ;;
  esac
}

verify_clean() {
  command -v systemd-analyze >/dev/null || cm_fail "systemd-analyze is not installed (package systemd)"
  local tmp out rc=0
  tmp="$(mktemp -d)"
  sed "s|/usr/local/bin/inkletd|$BUILD/inkletd|g" "$UNIT" >"$tmp/inklet.service"
  out="$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify ./inklet.service 2>&1)" || rc=$?
  rm -rf "$tmp"
  echo "systemd-analyze verify: exit $rc${out:+, output:}"
  [[ -z "$out" ]] || printf '%s\n' "$out"
  ((rc == 0)) && [[ -z "$out" ]]
}

notify_and_watchdog() {
  [[ "$(unit_value Type)" == notify ]] || cm_fail "Type is '$(unit_value Type)', not notify"
  [[ "$(unit_value NotifyAccess)" == main ]] || cm_fail "NotifyAccess is not main"
  local wd
  wd="$(unit_value WatchdogSec)"
  [[ -n "$wd" ]] || cm_fail "no WatchdogSec="
  (($(seconds "$wd") >= 10)) || cm_fail "WatchdogSec=$wd is shorter than 10 s"
  [[ "$(unit_value Restart)" == on-failure ]] || cm_fail "Restart is '$(unit_value Restart)'"
  echo "Type=notify NotifyAccess=main WatchdogSec=$wd Restart=on-failure"
}

stop_timeout_covers_the_drain() {
  # SHUTDOWN_GRACE 10 + last worker jobs DB_TIMEOUT 3 + ingest drain 2 + a running job 3 +
  # DISCONNECT 1 (docs/operations.md, Shutdown)
  local t need=19
  t="$(seconds "$(unit_value TimeoutStopSec)")"
  echo "TimeoutStopSec=${t}s, needed ${need}s"
  ((t >= need))
}

unprivileged() {
  local user
  user="$(unit_value User)"
  [[ -n "$user" && "$user" != root && "$user" != 0 ]] || cm_fail "User is '$user'"
  [[ "$(unit_value NoNewPrivileges)" == yes ]] || cm_fail "NoNewPrivileges is not yes"
  grep -qx 'CapabilityBoundingSet=' "$UNIT" || cm_fail "CapabilityBoundingSet= is not empty"
  echo "User=$user, no new privileges, no capabilities"
}

cm_case "unit_passes_systemd_analyze_verify_without_warnings" verify_clean
cm_case "unit_is_notify_with_watchdog_and_restart_on_failure" notify_and_watchdog
cm_case "unit_stop_timeout_covers_the_shutdown_drain" stop_timeout_covers_the_drain
cm_case "unit_runs_unprivileged_without_capabilities" unprivileged
cm_finish
