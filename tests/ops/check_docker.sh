#!/usr/bin/env bash
# tests/ops/check_docker.sh — checks of the Dockerfile, one cmocka-format test case each
# (tests/ops/cmocka.sh).
#
# With a Docker engine (`docker info` works) the image is built and inspected: it builds, runs
# `inkletd --version`, runs as a non-root user and has a HEALTHCHECK. Without one (hadolint is
# not in Debian either) the same stages are reproduced on this machine from the Dockerfile's own
# text: lint rules, the build stage's packages installed and its RUN commands executed on a copy
# of the sources, the runtime stage's package list checked against the libraries the built
# binary needs, and the binary started as an unprivileged user with the image's environment
# until the image's HEALTHCHECK command passes.
#
# Environment: INKLET_DOCKER_DATABASE_URL (a database the started binary may use; the runtime
# case fails without it), INKLET_DOCKERFILE (default: the repository's), INKLET_DOCKER=0 never
# uses an engine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKERFILE="${INKLET_DOCKERFILE:-$ROOT/Dockerfile}"
# shellcheck source=tests/ops/cmocka.sh
. "$ROOT/tests/ops/cmocka.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/inklet-docker.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The Dockerfile as logical instructions, one per line: "STAGE<TAB>INSTRUCTION<TAB>ARGS", with
# continuation lines joined, comments and parser directives dropped. STAGE is the stage's name
# (AS ...) or its index.
parse() {
  awk '
    /^[[:space:]]*#/ && !cont { next }
    {
      line = $0
      if (cont) buf = buf " " line; else buf = line
      if (sub(/\\[[:space:]]*$/, "", buf)) { cont = 1; next }
      cont = 0
      gsub(/^[[:space:]]+|[[:space:]]+$/, "", buf)
      if (buf == "") next
      n = split(buf, w, /[[:space:]]+/)
      ins = toupper(w[1]); args = substr(buf, length(w[1]) + 2)
      if (ins == "FROM") { stage = (n >= 4 && toupper(w[3]) == "AS") ? w[4] : stages; stages++ }
      gsub(/[[:space:]]+/, " ", args)
      printf "%s\t%s\t%s\n", stage, ins, args
    }' "$DOCKERFILE"
}
parse >"$WORK/instructions"
FINAL="$(awk -F '\t' '$2 == "FROM" { s = $1 } END { print s }' "$WORK/instructions")"
BUILD_STAGE="$(awk -F '\t' '$2 == "FROM" { print $1; exit }' "$WORK/instructions")"

# ins STAGE INSTRUCTION: the arguments of every such instruction in the stage, one a line
ins() { awk -F '\t' -v s="$1" -v i="$2" '$1 == s && $2 == i { print $3 }' "$WORK/instructions"; }

# packages STAGE: the packages of the stage's apt-get install, one a line
packages() {
  ins "$1" RUN | grep -o 'apt-get install [^&;|]*' | tr ' ' '\n' |
    grep -v -e '^apt-get$' -e '^install$' -e '^-' -e '^$' || true
}

lint() {
  local bad=0 from run
  while read -r from; do
    case "$from" in
      debian:12\ * | debian:12-slim\ * | debian:12 | debian:12-slim) ;;
      *) echo "FROM $from: pin the base to debian:12 or debian:12-slim"; bad=1 ;;
    esac
  done < <(awk -F '\t' '$2 == "FROM" { print $3 }' "$WORK/instructions")
  while IFS= read -r run; do
    if [[ "$run" == *"apt-get install"* ]]; then
      [[ "$run" == *"--no-install-recommends"* ]] || { echo "RUN without --no-install-recommends: $run"; bad=1; }
      [[ "$run" == *"-y"* ]] || { echo "RUN apt-get install without -y: $run"; bad=1; }
      [[ "$run" == *"apt-get update"* ]] || { echo "apt-get install without update in the same RUN"; bad=1; }
      [[ "$run" == *"rm -rf /var/lib/apt/lists"* ]] || { echo "apt lists kept in the layer: $run"; bad=1; }
    elif [[ "$run" == *"apt-get update"* ]]; then
      echo "apt-get update alone in a RUN (a cached layer would install from stale lists)"; bad=1
    fi
    [[ "$run" != *sudo* ]] || { echo "sudo in RUN: $run"; bad=1; }
  done < <(awk -F '\t' '$2 == "RUN" { print $3 }' "$WORK/instructions")
  if awk -F '\t' '$2 == "ADD" && $3 ~ /https?:/' "$WORK/instructions" | grep -q .; then
    echo "ADD with a URL (unverified download)"; bad=1
  fi
  local copy stage
  while read -r copy; do
    stage="${copy#--from=}"; stage="${stage%% *}"
    awk -F '\t' -v s="$stage" '$2 == "FROM" && $1 == s { f = 1 } END { exit !f }' "$WORK/instructions" ||
      { echo "COPY --from=$stage names no earlier stage"; bad=1; }
  done < <(awk -F '\t' '$2 == "COPY" && $3 ~ /^--from=/ { print $3 }' "$WORK/instructions")
  local user entry
  user="$(ins "$FINAL" USER | tail -n 1)"
  [[ -n "$user" && "${user%%:*}" != root && "${user%%:*}" != 0 ]] ||
    { echo "the final stage runs as '${user:-root}'"; bad=1; }
  ins "$FINAL" HEALTHCHECK | grep -q ' CMD ' || { echo "the final stage has no HEALTHCHECK CMD"; bad=1; }
  entry="$(ins "$FINAL" ENTRYPOINT | tail -n 1)"
  [[ "$entry" == \[* ]] || { echo "ENTRYPOINT is not in exec form (signals would go to a shell)"; bad=1; }
  [[ "$(ins "$FINAL" STOPSIGNAL | tail -n 1)" == SIGTERM ]] || { echo "STOPSIGNAL is not SIGTERM"; bad=1; }
  local pat
  for pat in .git 'build*' .run .test-run; do
    grep -qxF "$pat" "$ROOT/.dockerignore" 2>/dev/null ||
      { echo ".dockerignore does not exclude $pat (state or secrets would enter the context)"; bad=1; }
  done
  echo "stages: $(awk -F '\t' '$2 == "FROM" { printf "%s ", $1 }' "$WORK/instructions"); final: $FINAL, USER $user"
  ((bad == 0))
}

# ---- with an engine ----------------------------------------------------------------------------
IMAGE="inklet-check:$$"
engine_build() { docker build -q -t "$IMAGE" -f "$DOCKERFILE" "$ROOT"; }
engine_user() {
  local u
  u="$(docker run --rm --entrypoint id "$IMAGE" -u)"
  echo "uid in the image: $u"
  [[ "$u" != 0 ]]
}
engine_healthcheck() {
  local hc
  hc="$(docker image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")"
  echo "Healthcheck: $hc"
  [[ "$hc" == *CMD* ]]
}
engine_version() { docker run --rm "$IMAGE" --version; }

# ---- without one: the stages reproduced --------------------------------------------------------
build_packages_installed() {
  local p missing=0
  while read -r p; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      { echo "build-stage package not installed here: $p"; missing=1; }
  done < <(packages "$BUILD_STAGE")
  echo "build-stage packages: $(packages "$BUILD_STAGE" | tr '\n' ' ')"
  ((missing == 0))
}

# Runs the build stage's RUN commands after its COPY on a copy of the tracked sources, with the
# stage's absolute paths (/src, /build) moved under $WORK.
build_stage_runs() {
  mkdir -p "$WORK/src"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | grep -zv -e '^build' \
    -e '^\.run/' -e '^\.test-run/' -e '^bench/' -e '^\.ci/' | xargs -0 cp --parents -t "$WORK/src")
  local after_copy=0 run
  while IFS=$'\t' read -r stage what args; do
    [[ "$stage" == "$BUILD_STAGE" ]] || continue
    [[ "$what" == COPY ]] && after_copy=1 && continue
    [[ "$what" == RUN && $after_copy == 1 ]] || continue
    run="${args//\/build/$WORK/build}"
    run="${run//\/src/$WORK/src}"
    echo "+ $run"
    (cd "$WORK/src" && bash -euo pipefail -c "$run") >"$WORK/build.log" 2>&1 ||
      { tail -n 30 "$WORK/build.log"; return 1; }
    tail -n 2 "$WORK/build.log"
  done <"$WORK/instructions"
  test -x "$WORK/build/inkletd"
}

runtime_packages_cover_the_binary() {
  test -x "$WORK/build/inkletd" || cm_fail "the build stage produced no binary"
  local lib path pkg bad=0
  local -A listed=([libc6]=1 [libgcc-s1]=1) # in every Debian image
  while read -r pkg; do listed[$pkg]=1; done < <(packages "$FINAL")
  while read -r lib; do
    path="$(ldd "$WORK/build/inkletd" | awk -v l="$lib" '$1 == l { print $3 } $1 ~ "/" l "$" { print $1 }')"
    # usr-merged systems register a library under /lib or /usr/lib: try the resolved path, then
    # the one ldd printed
    pkg="$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n 1 | cut -d: -f1 || true)"
    [[ -n "$pkg" ]] || pkg="$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1 || true)"
    if [[ -z "$pkg" || -z "${listed[$pkg]:-}" ]]; then
      echo "$lib ($path) comes from '${pkg:-no package}', which the runtime stage does not install"
      bad=1
    else
      echo "$lib <- $pkg"
    fi
  done < <(readelf -d "$WORK/build/inkletd" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  ((bad == 0))
}

hex32() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The image's ENV, its USER replaced by nobody (the user exists only in the image), the
# HEALTHCHECK command run until it passes within the HEALTHCHECK's own retries and interval.
runtime_unprivileged_healthcheck() {
  test -x "$WORK/build/inkletd" || cm_fail "the build stage produced no binary"
  [[ -n "${INKLET_DOCKER_DATABASE_URL:-}" ]] || cm_fail "INKLET_DOCKER_DATABASE_URL is not set"
  local hc cmd port pid ok=0 i status
  hc="$(ins "$FINAL" HEALTHCHECK | tail -n 1)"
  cmd="${hc#* CMD }"
  port=$((30000 + RANDOM % 2000))
  local -a envs=()
  read -r -a envs <<<"$(ins "$FINAL" ENV | tr '\n' ' ')"
  chmod 0755 "$WORK" "$WORK/build"
  env -i PATH=/usr/bin:/bin "${envs[@]}" PORT="$port" LISTEN_ADDR=127.0.0.1 LOG_FORMAT=text \
    DATABASE_URL="$INKLET_DOCKER_DATABASE_URL" JWT_SECRET="$(hex32)" \
    FACTORY_SECRET="$(hex32)" MQTT_URL=mqtt://127.0.0.1:1 \
    setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
    "$WORK/build/inkletd" >"$WORK/inkletd.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 30; i++)); do
    sleep 1
    kill -0 "$pid" 2>/dev/null || break
    if env PORT="$port" sh -c "$cmd"; then ok=1; break; fi
  done
  echo "HEALTHCHECK CMD $cmd: $([[ $ok == 1 ]] && echo passed || echo failed) on port $port"
  echo "inkletd ran as uid $(stat -c %u "/proc/$pid" 2>/dev/null || echo '?')"
  [[ "$(stat -c %u "/proc/$pid" 2>/dev/null)" == "$(id -u nobody)" ]] || ok=0
  kill -TERM "$pid" 2>/dev/null
  status=0
  wait "$pid" || status=$?
  echo "exit status after SIGTERM: $status"
  ((ok == 1 && status == 0)) || { tail -n 20 "$WORK/inkletd.log"; return 1; }
}

cm_case "dockerfile_follows_the_lint_rules" lint
if [[ "${INKLET_DOCKER:-1}" != 0 ]] && docker info >/dev/null 2>&1; then
  cm_case "docker_image_builds" engine_build
  cm_case "docker_image_runs_inkletd" engine_version
  cm_case "docker_image_runs_as_non_root" engine_user
  cm_case "docker_image_has_a_healthcheck" engine_healthcheck
  docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
else
  echo "no Docker engine: reproducing the stages on this machine"
  cm_case "dockerfile_build_stage_packages_are_installed" build_packages_installed
  cm_case "dockerfile_build_stage_commands_build_inkletd" build_stage_runs
  cm_case "dockerfile_runtime_stage_installs_every_needed_library" runtime_packages_cover_the_binary
  cm_case "dockerfile_runtime_runs_unprivileged_and_passes_its_healthcheck" runtime_unprivileged_healthcheck
fi
cm_finish
