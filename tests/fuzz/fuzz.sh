#!/usr/bin/env bash
# tests/fuzz/fuzz.sh — build every libFuzzer driver (ASan+UBSan) into build-fuzz/ and run each
# for a bounded time on a copy of its seed corpus.
#
#   tests/fuzz/fuzz.sh                 build and run every driver, FUZZ_JOBS (cores) at a time
#   tests/fuzz/fuzz.sh NAME...         only these drivers (e.g. fuzz_json fuzz_config)
#   tests/fuzz/fuzz.sh --build-only [NAME...]   build, do not run
#   tests/fuzz/fuzz.sh --list          print the driver names
#
# Each driver is compiled with clang-14 from its file in tests/fuzz/ and the few library sources
# it needs (the DRIVERS table below), then run with -max_total_time=$FUZZ_SECONDS (20),
# -timeout=10, -rss_limit_mb=2048 and ASAN_OPTIONS=detect_leaks=1 on a copy of
# tests/fuzz/corpus/<driver>/ in build-fuzz/run/<driver>/corpus/: new inputs never go into the
# repository. tests/fuzz/dict/<driver>.dict is used when it exists. A crash, leak, timeout,
# out-of-memory or UBSan report fails the driver; its input stays in build-fuzz/run/<driver>/
# (printed with the first lines of the report, the whole log is build-fuzz/run/<driver>/fuzz.log).
# A driver that does not build fails too.
#
# Output: per driver the cmocka-style lines that scripts/lib/cmocka-count.awk counts as one test
# (passed or failed), plus one line of statistics; the last line is "fuzz: N passed, M failed".
# Exit status 0 when every driver built and ran clean, 1 otherwise, 2 on a usage error.
# Environment: FUZZ_SECONDS (20), FUZZ_JOBS (the number of cores), FUZZ_CC (clang-14), FUZZ_OUT
# (build-fuzz, relative to the repository root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

SECONDS_EACH="${FUZZ_SECONDS:-20}"
CC="${FUZZ_CC:-clang-14}"
OUT="$ROOT/${FUZZ_OUT:-build-fuzz}"
CFLAGS=(-g -O1 -std=c17 -D_GNU_SOURCE "-fsanitize=fuzzer,address,undefined"
  -fno-sanitize-recover=undefined -Iinclude)

# The drivers: NAME|SOURCES|PKG-CONFIG MODULES|EXTRA COMPILER FLAGS|EXTRA LIBFUZZER FLAGS|CORPUS
# (CORPUS: the directory name under tests/fuzz/corpus/, when it is not NAME). $GEN is
# build-fuzz/gen/, which holds generated sources (see gen_sources).
CORE="src/core/alloc.c src/core/ids.c src/core/text.c src/core/timeutil.c"
CONFIG_SRC="src/core/config.c src/core/netaddr.c src/core/mailaddr.c $CORE"
DRIVERS=(
  "fuzz_json|tests/fuzz/fuzz_json.c src/core/json.c src/core/alloc.c src/core/timeutil.c|jansson||-max_len=4096|"
  "fuzz_token|tests/fuzz/fuzz_token.c src/auth/token.c $CORE|libjwt jansson libcrypto||-max_len=8192|"
  "fuzz_phc|tests/fuzz/fuzz_phc.c src/auth/password.c src/core/log.c src/core/strbuf.c src/core/deadline.c $CORE|libargon2 jansson libcrypto|-lpthread||"
  "fuzz_config_rate|tests/fuzz/fuzz_config_rate.c $CONFIG_SRC|||-max_len=64|"
  "fuzz_config|tests/fuzz/fuzz_config.c $CONFIG_SRC|||-max_len=8192|"
  "fuzz_log|tests/fuzz/fuzz_log.c src/core/log.c src/core/strbuf.c src/core/text.c src/core/timeutil.c|jansson||-max_len=70000|"
  "fuzz_stripe_signature|tests/fuzz/fuzz_stripe_signature.c src/billing/signature.c src/core/ids.c src/core/alloc.c|libcrypto|||"
  "fuzz_formdata|tests/fuzz/fuzz_formdata.c src/core/formdata.c src/core/text.c src/core/ids.c src/core/alloc.c|libcrypto|||"
  "fuzz_idtoken|tests/fuzz/fuzz_idtoken.c src/oauth/idtoken.c src/core/json.c src/core/ids.c src/core/alloc.c src/core/timeutil.c|libcrypto jansson|||"
  "fuzz_jwks|tests/fuzz/fuzz_jwks.c src/oauth/jwk.c src/core/json.c src/core/ids.c src/core/alloc.c src/core/timeutil.c|libcrypto jansson||-max_len=16384|"
  "fuzz_client_ip|tests/fuzz/fuzz_client_ip.c src/core/netaddr.c src/core/alloc.c src/core/text.c|||-max_len=8192|"
  "fuzz_client_ip_oracle|tests/fuzz/fuzz_client_ip.c src/core/netaddr.c src/core/alloc.c src/core/text.c||-DCLIENT_IP_ORACLE|-max_len=8192|fuzz_client_ip"
  "fuzz_topic|tests/fuzz/fuzz_topic.c src/iot/topic.c|||-max_len=600|"
  "fuzz_nfc|tests/fuzz/fuzz_nfc.c src/devices/nfc.c src/core/ids.c|libcrypto||-max_len=1100|"
  "fuzz_mail|tests/fuzz/fuzz_mail.c src/mail/message.c src/mail/smtp.c src/core/mailaddr.c \$GEN/mail_templates.c src/core/buf.c src/core/strbuf.c $CORE|libcurl||-max_len=16384|"
  "fuzz_http_headers|tests/fuzz/fuzz_http_headers.c src/http/router.c src/http/routes.c \$GEN/handler_stubs.c src/core/app.c src/oauth/jwks.c src/oauth/jwk.c src/net/http_client.c src/core/buf.c src/core/json.c src/core/log.c src/core/strbuf.c src/core/deadline.c $CONFIG_SRC|jansson libcrypto libcurl libpq|-DINKLET_VERSION=\"fuzz\" -lpthread|-max_len=2048|"
)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

field() { # field ROW N: the Nth |-separated field (1-based) of a DRIVERS row
  local IFS='|' f
  read -r -a f <<<"$1|"
  printf '%s' "${f[$(($2 - 1))]:-}"
}

# Generated sources: stubs for every handler the route table names, so that the real table of
# src/http/routes.c links without the handlers (fuzz_http_headers never calls them); the mail
# templates as C arrays (fuzz_mail).
gen_sources() {
  local gen="$OUT/gen" names
  mkdir -p "$gen"
  names="$(grep -o 'ink_h_[a-z0-9_]*' include/inklet/handlers.h | sort -u)"
  {
    echo '/* generated by tests/fuzz/fuzz.sh from include/inklet/handlers.h */'
    echo '#include "inklet/handlers.h"'
    echo '#include <stdlib.h>'
    for n in $names; do
      printf 'enum ink_status %s(struct ink_req *req) { (void)req; abort(); }\n' "$n"
    done
    # the batched routes the table points at (inklet/batched.h), never run either
    echo '#include "inklet/batched.h"'
    for n in $(grep -o 'ink_batched_[a-z0-9_]*;' include/inklet/handlers.h | tr -d ';' | sort -u); do
      printf 'const struct ink_batched %s = {NULL, false, NULL, NULL};\n' "$n"
    done
  } >"$gen/handler_stubs.c.new"
  mv "$gen/handler_stubs.c.new" "$gen/handler_stubs.c"
  # the mail templates, embedded as the CMake build does (cmake/embed_file.cmake); without cmake
  # only fuzz_mail fails to build
  command -v cmake >/dev/null || return 0
  local tpl kind
  : >"$gen/mail_templates.c.new"
  for tpl in src/mail/templates/*.txt; do
    kind="$(basename "$tpl" .txt)"
    cmake -DIN="$tpl" -DOUT="$gen/mail_tpl_$kind.c" -DNAME="ink_mail_tpl_$kind" \
      -P cmake/embed_file.cmake
    cat "$gen/mail_tpl_$kind.c" >>"$gen/mail_templates.c.new"
  done
  mv "$gen/mail_templates.c.new" "$gen/mail_templates.c"
}

# build ROW: compile one driver into $OUT/NAME; the compiler's output goes to $OUT/NAME.build.log
build() {
  local row="$1" name srcs pkgs extra flags=()
  name="$(field "$row" 1)"
  srcs="$(field "$row" 2)"
  srcs="${srcs//\$GEN/$OUT/gen}"
  pkgs="$(field "$row" 3)"
  extra="$(field "$row" 4)"
  if [[ -n "$pkgs" ]]; then
    # shellcheck disable=SC2086  # a list of module names
    read -r -a flags <<<"$(pkg-config --cflags --libs $pkgs)" || return 1
  fi
  local -a src_list extra_list
  read -r -a src_list <<<"$srcs"
  read -r -a extra_list <<<"$extra"
  "$CC" "${CFLAGS[@]}" "${src_list[@]}" "${extra_list[@]}" "${flags[@]}" -o "$OUT/$name" \
    >"$OUT/$name.build.log" 2>&1
}

# stat LOG KEY: a libFuzzer final statistic (stat::KEY: VALUE), or "?"
stat() {
  local v
  v="$(sed -n "s/^stat::$2: *//p" "$1" | tail -n 1)"
  printf '%s' "${v:-?}"
}

cmocka_begin() { printf '[==========] Running 1 test(s).\n[ RUN      ] %s\n' "$1"; }
cmocka_end() { # cmocka_end NAME ok|failed
  if [[ "$2" == ok ]]; then
    printf '[       OK ] %s\n[==========] 1 test(s) run.\n[  PASSED  ] 1 test(s).\n' "$1"
  else
    printf '[  FAILED  ] %s\n[==========] 1 test(s) run.\n[  PASSED  ] 0 test(s).\n' "$1"
    printf '[  FAILED  ] 1 test(s), listed below:\n[  FAILED  ] %s\n' "$1"
  fi
}

# run ROW: fuzz one (built) driver; 0 when it ran the whole time without a finding
run() {
  local row="$1" name opts corpus dir log dict rc=0 t0 findings=()
  name="$(field "$row" 1)"
  opts="$(field "$row" 5)"
  corpus="$(field "$row" 6)"
  corpus="tests/fuzz/corpus/${corpus:-$name}"
  dir="$OUT/run/$name"
  log="$dir/fuzz.log"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/findings"
  if [[ -d "$corpus" ]]; then
    cp -R "$corpus/." "$dir/corpus/"
  else
    echo "$name: no seed corpus at $corpus (starting empty)"
  fi
  local -a args=(-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$dir/findings/")
  dict="tests/fuzz/dict/$name.dict"
  [[ -f "$dict" ]] && args+=(-dict="$dict")
  local -a opt_list
  read -r -a opt_list <<<"$opts"
  t0=$SECONDS
  # the outer timeout only guards against a libFuzzer that ignores its own limits
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout -k 10 $((SECONDS_EACH * 2 + 120)) \
    "$OUT/$name" "${args[@]}" "${opt_list[@]}" "$dir/corpus" >"$log" 2>&1 || rc=$?
  shopt -s nullglob
  findings=("$dir"/findings/*)
  shopt -u nullglob
  printf '%s: %ss, %s runs, %s exec/s, %s new units, peak RSS %s MB, exit %s\n' "$name" \
    $((SECONDS - t0)) "$(stat "$log" number_of_executed_units)" \
    "$(stat "$log" average_exec_per_sec)" "$(stat "$log" new_units_added)" \
    "$(stat "$log" peak_rss_mb)" "$rc"
  if ((rc == 0 && ${#findings[@]} == 0)) && ! grep -q 'runtime error:' "$log"; then
    return 0
  fi
  echo "$name: FAILED (libFuzzer exit $rc); log: $log"
  local f
  for f in "${findings[@]}"; do echo "$name: input kept at $f"; done
  # the first lines of the report: from the first sanitizer/libFuzzer error line on
  awk '/ERROR: |runtime error:|==[0-9]+==|SUMMARY: |Test unit written/ && !s { s = 1 }
       s && n < 40 { print "  | " $0; n++ }' "$log"
  return 1
}

# ---------------------------------------------------------------------------------------------
BUILD_ONLY=0
declare -a WANT=()
for arg in "$@"; do
  case "$arg" in
  --build-only) BUILD_ONLY=1 ;;
  --list)
    for row in "${DRIVERS[@]}"; do field "$row" 1; echo; done
    exit 0
    ;;
  -h | --help) usage; exit 0 ;;
  -*) echo "fuzz.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
  *) WANT+=("$arg") ;;
  esac
done

declare -a ROWS=()
if ((${#WANT[@]} == 0)); then
  ROWS=("${DRIVERS[@]}")
else
  for w in "${WANT[@]}"; do
    found=""
    for row in "${DRIVERS[@]}"; do [[ "$(field "$row" 1)" == "$w" ]] && found="$row"; done
    [[ -n "$found" ]] || { echo "fuzz.sh: no driver named $w (see --list)" >&2; exit 2; }
    ROWS+=("$found")
  done
fi

command -v "$CC" >/dev/null || echo "fuzz.sh: $CC not found (Debian: apt-get install clang-14 libclang-rt-14-dev)"
mkdir -p "$OUT"
gen_sources

# one ROW: build and run one driver; its cmocka-style block on stdout; status 0 when clean
one() {
  local row="$1" name
  name="$(field "$row" 1)"
  cmocka_begin "$name"
  if ! build "$row"; then
    echo "$name: build FAILED:"
    sed 's/^/  | /' "$OUT/$name.build.log" | head -n 40
    cmocka_end "$name" failed
    return 1
  elif run "$row"; then
    cmocka_end "$name" ok
  else
    cmocka_end "$name" failed
    return 1
  fi
}

passed=0 failed=0
if ((BUILD_ONLY)); then
  for row in "${ROWS[@]}"; do
    name="$(field "$row" 1)"
    if build "$row"; then
      echo "built $OUT/$name"
      passed=$((passed + 1))
    else
      echo "$name: build FAILED:"
      sed 's/^/  | /' "$OUT/$name.build.log" | head -n 40
      failed=$((failed + 1))
    fi
  done
else
  # FUZZ_JOBS drivers at a time (each is one busy process; default: one per core), their
  # blocks printed in table order once all are done
  JOBS="${FUZZ_JOBS:-$(nproc)}"
  mkdir -p "$OUT/run"
  declare -a OUTS=()
  for row in "${ROWS[@]}"; do
    out="$OUT/run/$(field "$row" 1).out"
    rm -f "$out" "$out.rc"
    (
      rc=0
      one "$row" || rc=$?
      echo "$rc" >"$out.rc"
    ) >"$out" 2>&1 &
    OUTS+=("$out")
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
  done
  wait
  for out in "${OUTS[@]}"; do
    cat "$out"
    if [[ "$(cat "$out.rc" 2>/dev/null)" == 0 ]]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
fi

if ((BUILD_ONLY)); then
  echo "fuzz: built $passed, failed to build $failed"
else
  echo "fuzz: $passed passed, $failed failed"
fi
((failed == 0))
