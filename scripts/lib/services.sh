# shellcheck shell=bash
# scripts/lib/services.sh — helpers for Inklet's developer, test and benchmark scripts.
#
# Source it from bash (`. scripts/lib/services.sh`); it sets no shell options of its own.
# Works as root (CI, fresh Debian 12) and as a normal user with sudo.
#
# Every function prints short progress lines on stderr (prefixed "[svc]"); functions that
# produce a value print only that value on stdout. All return 0 on success, non-zero on
# failure (they never call exit), and are safe to call from scripts running with `set -e`.
#
# Packages
#   svc_ensure_packages PKG...          install the missing ones (apt-get, sudo when not root)
#   svc_browser_packages                print INKLET_PKGS_BROWSER, one a line, less nodejs/npm
#                                       when `node`/`npm` are on PATH
# Ports
#   svc_port_busy PORT                  0 if something listens on PORT (any address)
#   svc_free_port START [TRIES]         print the first free TCP port in START..START+TRIES-1
#   svc_wait_tcp PORT [TIMEOUT_S] [HOST]  wait until HOST:PORT (default 127.0.0.1) accepts
# PostgreSQL 15 (DIR holds data/, postgres.log, inklet.conf and the Unix socket)
#   svc_pg_init DIR                     create DIR and initdb (superuser $SVC_PG_SUPERUSER, trust)
#   svc_pg_start DIR PORT [--fast]      init if needed, start on 127.0.0.1:PORT, wait for ready
#   svc_pg_wait DIR [TIMEOUT_S]         wait until the server of DIR accepts connections
#   svc_pg_running DIR                  0 if the server of DIR is running
#   svc_pg_port DIR                     print the server's port (running, else last started on)
#   svc_pg_socket_dir DIR               print the directory holding the Unix socket
#   svc_pg_create_db DIR NAME [--fresh] create database NAME (--fresh: drop it first)
#   svc_pg_url DIR NAME                 print postgresql://SUPERUSER@127.0.0.1:PORT/NAME
#   svc_pg_psql DIR NAME [PSQL ARGS...] run psql (over the Unix socket) as the superuser
#   svc_pg_stop DIR                     stop the server of DIR (no-op if not running)
#   svc_pg_remove DIR                   stop and delete DIR (and a relocated data dir)
# Mosquitto (DIR holds mosquitto.conf, mosquitto.log, mosquitto.pid)
#   svc_mqtt_start DIR PORT [--acl FILE] [--password-file FILE]
#                                       start a broker on 127.0.0.1:PORT, wait until it accepts;
#                                       open to anyone, or with these Mosquitto acl_file and
#                                       password_file (anonymous clients stay allowed: the ACL's
#                                       patterns confine them)
#   svc_mqtt_password_file FILE USER PASSWORD  write a mosquitto_passwd file (mode 0600) holding
#                                       one user
#   svc_mqtt_running DIR                0 if the broker of DIR is running
#   svc_mqtt_port DIR                   print the broker's port (from DIR/mosquitto.conf)
#   svc_mqtt_url DIR                    print mqtt://127.0.0.1:PORT
#   svc_mqtt_stop DIR                   stop the broker of DIR (no-op if not running)
# Misc
#   svc_cmdline FUNC ARGS...            print a `sh -c`-able command line that sources this
#                                       library and runs FUNC ARGS (for INKLET_ITEST_*_START/STOP)
#   svc_stop_pid PID [TIMEOUT_S] [NAME] SIGTERM, wait, then SIGKILL (checks /proc/PID/comm)
#   svc_rm_rf PATH...                   rm -rf, falling back to sudo (files owned by postgres)
#   svc_sudo CMD...                     run CMD as root (directly when root, else via sudo)
#
# Tunables (environment): SVC_PG_BIN (/usr/lib/postgresql/15/bin), SVC_PG_SUPERUSER (postgres),
# SVC_PG_RELOCATE_BASE (/var/tmp), SVC_MOSQUITTO (/usr/sbin/mosquitto), SVC_MOSQUITTO_PASSWD
# (/usr/bin/mosquitto_passwd), SVC_QUIET=1 (no progress lines).
#
# Root: PostgreSQL refuses to run as root, so initdb/pg_ctl run as the `postgres` user (runuser)
# and DIR is owned by postgres. If postgres cannot reach DIR (e.g. the repository lives under
# /root, mode 0700) or DIR is too deep for a Unix socket path (107 bytes), the data lives in
# $SVC_PG_RELOCATE_BASE/inklet-pg-<hash of DIR> and DIR becomes a symlink to it.

if [[ -n "${_INKLET_SERVICES_SH:-}" ]]; then return 0; fi
_INKLET_SERVICES_SH=1

SVC_LIB_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SVC_PG_BIN="${SVC_PG_BIN:-/usr/lib/postgresql/15/bin}"
SVC_PG_SUPERUSER="${SVC_PG_SUPERUSER:-postgres}"
SVC_PG_RELOCATE_BASE="${SVC_PG_RELOCATE_BASE:-/var/tmp}"
SVC_MOSQUITTO="${SVC_MOSQUITTO:-/usr/sbin/mosquitto}"
SVC_MOSQUITTO_PASSWD="${SVC_MOSQUITTO_PASSWD:-/usr/bin/mosquitto_passwd}"

# Debian packages, by purpose (used by the scripts that source this file).
# shellcheck disable=SC2034
INKLET_PKGS_BUILD=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libjwt-dev
  libpq-dev libcurl4-openssl-dev libssl-dev libargon2-dev libmosquitto-dev libcmocka-dev)
# shellcheck disable=SC2034
INKLET_PKGS_SERVICES=(postgresql-15 postgresql-client-15 mosquitto mosquitto-clients curl python3
  python3-cryptography openssl iproute2 procps)
# valgrind; systemd: systemd-analyze verify of the unit; slowhttptest: the slowloris run in
# test_faults.c
# shellcheck disable=SC2034
INKLET_PKGS_TEST=(valgrind systemd slowhttptest)
# tests/fuzz/fuzz.sh: clang-14, and libFuzzer's runtime (libclang_rt.fuzzer) with the sanitizers'
# shellcheck disable=SC2034
INKLET_PKGS_FUZZ=(clang-14 libclang-rt-14-dev)
# shellcheck disable=SC2034
INKLET_PKGS_BENCH=(wrk curl procps)
# the real-browser sign-in test (tests/browser/): chromium, node + npm for playwright-core, and
# ca-certificates, which `npm ci` needs to reach the registry over https (only a Recommends of
# nodejs, and --no-install-recommends is used). The fake providers' python3-cryptography is in
# INKLET_PKGS_SERVICES. Install them with svc_browser_packages, which leaves out nodejs/npm when
# node/npm are on PATH already.
# shellcheck disable=SC2034
INKLET_PKGS_BROWSER=(chromium nodejs npm ca-certificates)

# ---------------------------------------------------------------------------------------------
# logging / privileges

svc_log() { [[ "${SVC_QUIET:-0}" == 1 ]] || printf '[svc] %s\n' "$*" >&2; }
svc_err() { printf '[svc] ERROR: %s\n' "$*" >&2; }

_svc_is_root() { [[ "$(id -u)" == 0 ]]; }

svc_sudo() {
  if _svc_is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    svc_err "need root for: $* (install sudo or run as root)"
    return 1
  fi
}

# svc_shquote WORD: print WORD quoted for POSIX sh.
svc_shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

svc_cmdline() {
  local out arg
  out="bash -c '. \"\$0\" && \"\$@\"' $(svc_shquote "$SVC_LIB_PATH")"
  for arg in "$@"; do out+=" $(svc_shquote "$arg")"; done
  printf '%s\n' "$out"
}

svc_rm_rf() {
  local p
  for p in "$@"; do
    [[ -e "$p" || -L "$p" ]] || continue
    rm -rf -- "$p" 2>/dev/null || svc_sudo rm -rf -- "$p" || {
      svc_err "cannot remove $p"
      return 1
    }
  done
}

# svc_stop_pid PID [TIMEOUT_S] [EXPECTED_COMM]
svc_stop_pid() {
  local pid="$1" timeout="${2:-10}" comm="${3:-}" i
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  if [[ -n "$comm" && -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != "$comm"* ]]; then
    svc_log "pid $pid is not $comm any more; leaving it alone"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    # a zombie child of ours counts as gone once reaped
    if [[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" == Z ]]; then
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
  svc_log "pid $pid did not exit within ${timeout}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}

# ---------------------------------------------------------------------------------------------
# packages

svc_ensure_packages() {
  local -a missing=()
  local p st
  for p in "$@"; do
    st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [[ "$st" == installed ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    svc_log "packages: all ${#} present"
    return 0
  fi
  svc_log "packages: installing ${missing[*]}"
  svc_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
  svc_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" || return 1
  svc_log "packages: installed ${#missing[@]}"
}

# A node from elsewhere (NodeSource's nodejs bundles npm, nvm) must not get Debian's npm on top:
# Debian's npm depends on Debian's nodejs and conflicts with NodeSource's package.
svc_browser_packages() {
  local p
  for p in "${INKLET_PKGS_BROWSER[@]}"; do
    [[ "$p" == nodejs ]] && command -v node >/dev/null 2>&1 && continue
    [[ "$p" == npm ]] && command -v npm >/dev/null 2>&1 && continue
    printf '%s\n' "$p"
  done
  return 0
}

# ---------------------------------------------------------------------------------------------
# ports

svc_port_busy() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
  fi
  # fallback / double check: does anything accept on loopback?
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
  return 1
}

svc_free_port() {
  local start="$1" tries="${2:-100}" p
  for ((p = start; p < start + tries && p < 65536; p++)); do
    if ! svc_port_busy "$p"; then
      [[ "$p" == "$start" ]] || svc_log "port $start busy; using $p"
      printf '%s\n' "$p"
      return 0
    fi
  done
  svc_err "no free port in $start..$((start + tries - 1))"
  return 1
}

svc_wait_tcp() {
  local port="$1" timeout="${2:-30}" host="${3:-127.0.0.1}" i
  for ((i = 0; i < timeout * 10; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  svc_err "$host:$port did not accept connections within ${timeout}s"
  return 1
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# Run a PostgreSQL server-side binary (initdb, pg_ctl) as the right user, from a neutral cwd.
_svc_pg_as_owner() {
  if _svc_is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# _svc_pg_home DIR: print the real directory (DIR, or the target of the DIR symlink).
_svc_pg_home() {
  local dir="$1"
  if [[ -L "$dir" ]]; then readlink -f -- "$dir"; else
    (cd "$dir" 2>/dev/null && pwd -P) || printf '%s\n' "$dir"
  fi
}

svc_pg_socket_dir() { _svc_pg_home "$1"; }

_svc_pg_needs_relocation() {
  local home="$1"
  # ".s.PGSQL.65535.lock" must fit in sockaddr_un.sun_path (108 bytes with the NUL)
  if ((${#home} + 20 > 107)); then
    svc_log "postgres: socket path under $home is too long"
    return 0
  fi
  if _svc_is_root && ! runuser -u postgres -- test -x "$home" -a -w "$home" 2>/dev/null; then
    svc_log "postgres: user postgres cannot reach $home"
    return 0
  fi
  return 1
}

svc_pg_init() {
  local dir="$1" home target hash
  [[ -n "$dir" ]] || { svc_err "svc_pg_init: DIR missing"; return 1; }
  [[ -x "$SVC_PG_BIN/initdb" ]] || { svc_err "no $SVC_PG_BIN/initdb (install postgresql-15)"; return 1; }
  if _svc_is_root && ! getent passwd postgres >/dev/null; then
    svc_err "running as root needs the postgres user (install postgresql-15)"
    return 1
  fi
  if [[ -L "$dir" ]]; then
    target="$(readlink -f -- "$dir")"
    mkdir -p -- "$target" || return 1
  else
    mkdir -p -- "$dir" || return 1
  fi
  home="$(_svc_pg_home "$dir")"
  if _svc_is_root; then
    chown postgres:postgres "$home" && chmod 0700 "$home" || return 1
  fi
  if [[ ! -L "$dir" && ! -e "$home/data/PG_VERSION" ]] && _svc_pg_needs_relocation "$home"; then
    hash="$(printf '%s' "$home" | sha1sum | cut -c1-12)"
    target="$SVC_PG_RELOCATE_BASE/inklet-pg-$hash"
    if [[ -n "$(ls -A -- "$home" 2>/dev/null)" ]]; then
      svc_err "postgres: $home is not empty; cannot relocate it"
      return 1
    fi
    rmdir -- "$home" || return 1
    mkdir -p -- "$target" && ln -s -- "$target" "$dir" || return 1
    svc_log "postgres: data relocated to $target ($dir links to it)"
    home="$target"
    if _svc_is_root; then chown postgres:postgres "$home" && chmod 0700 "$home" || return 1; fi
  fi
  if [[ -e "$home/data/PG_VERSION" ]]; then
    return 0
  fi
  svc_log "postgres: initdb in $home/data (superuser $SVC_PG_SUPERUSER, trust auth)"
  _svc_pg_as_owner "$SVC_PG_BIN/initdb" -D "$home/data" -U "$SVC_PG_SUPERUSER" \
    --auth=trust --encoding=UTF8 --locale=C --no-sync >"$home/initdb.log" 2>&1 || {
    svc_err "initdb failed; see $home/initdb.log"
    tail -n 20 "$home/initdb.log" >&2
    return 1
  }
  printf "\n# Inklet scripts: per-start settings (port, socket, speed)\ninclude_if_exists = 'inklet.conf'\n" \
    >>"$home/data/postgresql.conf" || return 1
}

svc_pg_running() {
  local home
  home="$(_svc_pg_home "$1")"
  [[ -e "$home/data/PG_VERSION" ]] || return 1
  _svc_pg_as_owner "$SVC_PG_BIN/pg_ctl" -D "$home/data" status >/dev/null 2>&1
}

svc_pg_port() {
  local home port=""
  home="$(_svc_pg_home "$1")"
  if svc_pg_running "$1"; then
    port="$(sed -n 4p "$home/data/postmaster.pid" 2>/dev/null || true)"
  fi
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then # not running: the port it was last started on
    port="$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$home/data/inklet.conf" 2>/dev/null || true)"
  fi
  [[ "$port" =~ ^[0-9]+$ ]] || { svc_err "postgres in $1 was never started"; return 1; }
  printf '%s\n' "$port"
}

svc_pg_wait() {
  local dir="$1" timeout="${2:-60}" port i
  for ((i = 0; i < timeout * 10; i++)); do
    if port="$(svc_pg_port "$dir" 2>/dev/null)" &&
      "$SVC_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  svc_err "postgres in $dir not ready within ${timeout}s"
  return 1
}

svc_pg_start() {
  local dir="$1" port="$2" fast="${3:-}" home cur q
  [[ -n "$dir" && "$port" =~ ^[0-9]+$ ]] || { svc_err "usage: svc_pg_start DIR PORT [--fast]"; return 1; }
  svc_pg_init "$dir" || return 1
  home="$(_svc_pg_home "$dir")"
  if svc_pg_running "$dir"; then
    cur="$(svc_pg_port "$dir" 2>/dev/null || true)"
    if [[ "$cur" == "$port" ]]; then
      svc_log "postgres: already running in $dir on port $port"
      svc_pg_wait "$dir" 60
      return
    fi
    svc_log "postgres: running on port $cur, restarting on $port"
    svc_pg_stop "$dir" || return 1
  fi
  if svc_port_busy "$port"; then
    svc_err "postgres: port $port is already in use"
    return 1
  fi
  q="${home//\'/\'\'}"
  {
    echo "# written by scripts/lib/services.sh at every start"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$q'"
    echo "max_connections = 200"
    echo "log_min_messages = warning"
    if [[ "$fast" == --fast ]]; then
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    fi
  } >"$home/data/inklet.conf" || return 1
  if _svc_is_root; then chown postgres:postgres "$home/data/inklet.conf"; fi
  svc_log "postgres: starting in $dir on 127.0.0.1:$port${fast:+ (fsync off)}"
  if ! _svc_pg_as_owner "$SVC_PG_BIN/pg_ctl" -D "$home/data" -l "$home/postgres.log" \
    -w -t 60 -s start </dev/null >/dev/null; then
    svc_err "postgres failed to start; last lines of $home/postgres.log:"
    tail -n 20 "$home/postgres.log" >&2
    return 1
  fi
  svc_pg_wait "$dir" 60 || return 1
  svc_log "postgres: ready on 127.0.0.1:$port (socket in $home)"
}

# _svc_pg_pids DIR: the postmaster's pid and its children's (backends, checkpointer, ...).
_svc_pg_pids() {
  local home pm
  home="$(_svc_pg_home "$1")"
  [[ -r "$home/data/postmaster.pid" ]] || return 0
  pm="$(head -n 1 "$home/data/postmaster.pid")"
  [[ "$pm" =~ ^[0-9]+$ ]] && kill -0 "$pm" 2>/dev/null || return 0
  printf '%s\n' "$pm"
  pgrep -P "$pm" || true
}

# svc_pg_freeze DIR: SIGSTOP the whole cluster, as a hung host would look (connections are
# accepted by the kernel, nothing ever answers). svc_pg_thaw DIR undoes it.
svc_pg_freeze() {
  local pids
  pids="$(_svc_pg_pids "$1")"
  [[ -n "$pids" ]] || { svc_err "postgres in $1 is not running"; return 1; }
  # shellcheck disable=SC2086  # one pid per word
  _svc_pg_as_owner kill -STOP $pids
  svc_log "postgres: frozen (SIGSTOP to $(wc -w <<<"$pids") processes)"
}

svc_pg_thaw() {
  local pids
  pids="$(_svc_pg_pids "$1")"
  [[ -n "$pids" ]] || return 0
  # shellcheck disable=SC2086
  _svc_pg_as_owner kill -CONT $pids
  svc_log "postgres: thawed"
}

svc_pg_stop() {
  local dir="$1" home
  home="$(_svc_pg_home "$dir")"
  svc_pg_thaw "$dir" || true # a frozen cluster would never finish a shutdown
  if ! svc_pg_running "$dir"; then
    svc_log "postgres: not running in $dir"
    return 0
  fi
  svc_log "postgres: stopping ($dir)"
  if ! _svc_pg_as_owner "$SVC_PG_BIN/pg_ctl" -D "$home/data" -m fast -w -t 60 -s stop >/dev/null; then
    svc_log "postgres: fast shutdown failed; immediate"
    _svc_pg_as_owner "$SVC_PG_BIN/pg_ctl" -D "$home/data" -m immediate -w -t 30 -s stop >/dev/null || {
      svc_err "postgres in $dir would not stop"
      return 1
    }
  fi
  svc_log "postgres: stopped"
}

svc_pg_remove() {
  local dir="$1" target=""
  [[ -e "$dir" || -L "$dir" ]] || return 0
  svc_pg_stop "$dir" || true
  if [[ -L "$dir" ]]; then target="$(readlink -f -- "$dir")"; fi
  svc_rm_rf "$dir" || return 1
  if [[ -n "$target" && "$target" == "$SVC_PG_RELOCATE_BASE"/inklet-pg-* ]]; then
    svc_rm_rf "$target" || return 1
  fi
  svc_log "postgres: removed $dir"
}

_svc_pg_client() { # _svc_pg_client DIR BINARY ARGS...
  local dir="$1" bin="$2" port
  shift 2
  port="$(svc_pg_port "$dir")" || return 1
  PGCONNECT_TIMEOUT=10 "$SVC_PG_BIN/$bin" -h "$(svc_pg_socket_dir "$dir")" -p "$port" \
    -U "$SVC_PG_SUPERUSER" "$@"
}

svc_pg_psql() {
  local dir="$1" db="$2"
  shift 2
  _svc_pg_client "$dir" psql -X -v ON_ERROR_STOP=1 -d "$db" "$@"
}

svc_pg_create_db() {
  local dir="$1" name="$2" fresh="${3:-}" exists
  [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { svc_err "bad database name '$name'"; return 1; }
  exists="$(svc_pg_psql "$dir" postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" || return 1
  if [[ "$exists" == 1 && "$fresh" == --fresh ]]; then
    svc_log "postgres: dropping database $name"
    svc_pg_psql "$dir" postgres -q -c "DROP DATABASE \"$name\" WITH (FORCE)" || return 1
    exists=""
  fi
  if [[ "$exists" == 1 ]]; then
    svc_log "postgres: database $name exists"
    return 0
  fi
  svc_pg_psql "$dir" postgres -q -c "CREATE DATABASE \"$name\" TEMPLATE template0 ENCODING 'UTF8'" ||
    return 1
  svc_log "postgres: created database $name"
}

svc_pg_url() {
  local port
  port="$(svc_pg_port "$1")" || return 1
  printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$SVC_PG_SUPERUSER" "$port" "$2"
}

# ---------------------------------------------------------------------------------------------
# Mosquitto

_svc_mqtt_pid() { # prints the broker's pid, or nothing; always succeeds
  local pid
  pid="$(cat "$1/mosquitto.pid" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == mosquitto* ]]; then
    printf '%s\n' "$pid"
  fi
  return 0
}

svc_mqtt_running() { [[ -n "$(_svc_mqtt_pid "$1")" ]]; }

svc_mqtt_port() {
  local port
  port="$(awk '$1 == "listener" { print $2; exit }' "$1/mosquitto.conf" 2>/dev/null || true)"
  [[ "$port" =~ ^[0-9]+$ ]] || { svc_err "no broker configured in $1"; return 1; }
  printf '%s\n' "$port"
}

svc_mqtt_url() {
  local port
  port="$(svc_mqtt_port "$1")" || return 1
  printf 'mqtt://127.0.0.1:%s\n' "$port"
}

# _svc_mqtt_conf ABSDIR PORT ACL PASSWORD_FILE: the broker's configuration (ACL and
# PASSWORD_FILE absolute paths, or empty).
_svc_mqtt_conf() {
  local absdir="$1" port="$2" acl="$3" pwfile="$4"
  echo "# written by scripts/lib/services.sh"
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous true"
  if [[ -n "$pwfile" ]]; then echo "password_file $pwfile"; fi
  if [[ -n "$acl" ]]; then echo "acl_file $acl"; fi
  echo "persistence false"
  echo "log_dest file $absdir/mosquitto.log"
  echo "log_type error"
  echo "log_type warning"
  echo "log_type notice"
  echo "log_type information"
  echo "connection_messages true"
  echo "log_timestamp_format %Y-%m-%dT%H:%M:%S"
  echo "pid_file $absdir/mosquitto.pid"
  # mosquitto 2 started as root switches to user mosquitto, which could not write here
  if _svc_is_root; then echo "user root"; fi
}

_svc_abspath() { # the absolute path of an existing file
  printf '%s/%s\n' "$(cd "$(dirname -- "$1")" && pwd -P)" "$(basename -- "$1")"
}

svc_mqtt_start() {
  local dir="${1:-}" port="${2:-}" absdir cur acl="" pwfile="" conf
  local usage="usage: svc_mqtt_start DIR PORT [--acl FILE] [--password-file FILE]"
  [[ -n "$dir" && "$port" =~ ^[0-9]+$ ]] || { svc_err "$usage"; return 1; }
  shift 2
  while (($#)); do
    case "$1" in
    --acl) acl="${2:-}" ;;
    --password-file) pwfile="${2:-}" ;;
    *) svc_err "$usage"; return 1 ;;
    esac
    [[ -n "${2:-}" ]] || { svc_err "$usage"; return 1; }
    shift 2
  done
  [[ -x "$SVC_MOSQUITTO" ]] || { svc_err "no $SVC_MOSQUITTO (install mosquitto)"; return 1; }
  if [[ -n "$acl" ]]; then
    [[ -r "$acl" ]] || { svc_err "mosquitto: cannot read ACL file $acl"; return 1; }
    acl="$(_svc_abspath "$acl")"
  fi
  if [[ -n "$pwfile" ]]; then
    [[ -r "$pwfile" ]] || { svc_err "mosquitto: cannot read password file $pwfile"; return 1; }
    pwfile="$(_svc_abspath "$pwfile")"
  fi
  mkdir -p -- "$dir" || return 1
  absdir="$(cd "$dir" && pwd -P)"
  conf="$(_svc_mqtt_conf "$absdir" "$port" "$acl" "$pwfile")"
  if svc_mqtt_running "$dir"; then
    cur="$(svc_mqtt_port "$dir" 2>/dev/null || true)"
    if [[ "$cur" == "$port" && "$conf" == "$(cat "$absdir/mosquitto.conf" 2>/dev/null)" ]]; then
      svc_log "mosquitto: already running in $dir on port $port"
      svc_wait_tcp "$port" 20
      return
    fi
    svc_mqtt_stop "$dir" || return 1
  fi
  if svc_port_busy "$port"; then
    svc_err "mosquitto: port $port is already in use"
    return 1
  fi
  printf '%s\n' "$conf" >"$absdir/mosquitto.conf" || return 1
  rm -f -- "$absdir/mosquitto.pid"
  svc_log "mosquitto: starting in $dir on 127.0.0.1:$port${acl:+ (ACL $acl)}"
  if ! "$SVC_MOSQUITTO" -c "$absdir/mosquitto.conf" -d </dev/null >>"$absdir/mosquitto.log" 2>&1; then
    svc_err "mosquitto failed to start; last lines of $absdir/mosquitto.log:"
    tail -n 20 "$absdir/mosquitto.log" >&2
    return 1
  fi
  if ! svc_wait_tcp "$port" 20; then
    tail -n 20 "$absdir/mosquitto.log" >&2
    return 1
  fi
  svc_log "mosquitto: ready on 127.0.0.1:$port (pid $(_svc_mqtt_pid "$dir"))"
}

svc_mqtt_password_file() {
  local file="${1:-}" user="${2:-}" password="${3:-}"
  [[ -n "$file" && -n "$user" && -n "$password" ]] ||
    { svc_err "usage: svc_mqtt_password_file FILE USER PASSWORD"; return 1; }
  [[ -x "$SVC_MOSQUITTO_PASSWD" ]] || { svc_err "no $SVC_MOSQUITTO_PASSWD (install mosquitto)"; return 1; }
  rm -f -- "$file"
  (umask 077 && "$SVC_MOSQUITTO_PASSWD" -c -b "$file" "$user" "$password" >/dev/null) || {
    svc_err "mosquitto_passwd could not write $file"
    return 1
  }
}

svc_mqtt_stop() {
  local dir="$1" pid
  pid="$(_svc_mqtt_pid "$dir")"
  if [[ -z "$pid" ]]; then
    svc_log "mosquitto: not running in $dir"
    return 0
  fi
  svc_log "mosquitto: stopping (pid $pid)"
  svc_stop_pid "$pid" 10 mosquitto
  rm -f -- "$dir/mosquitto.pid"
  svc_log "mosquitto: stopped"
}
