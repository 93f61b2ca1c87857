# shellcheck shell=bash disable=SC2034
# (SC2034: the variables here are used by the scripts that source this file.)
# Shared settings and helpers for the local stack scripts (up.sh, wait.sh, down.sh, status.sh).
# Sourced, never run. Everything a developer may want to change comes from the environment.
#
# A "stack" is its state dir: databases, logs, generated configs, pid files and the password all
# live under PORTCULLIS_STATE_DIR, and the ports it was started with are recorded there, so the
# other scripts find a second stack from its state dir alone.

# --- Pinned versions. Change them here, on purpose; the tools cache is keyed by them. -----------
readonly PORTCULLIS_OPA_VERSION="v1.22.3"
readonly PORTCULLIS_OPA_MODULE="github.com/open-policy-agent/opa"
readonly PORTCULLIS_REGAL_VERSION="v0.42.0"
# Regal moved from github.com/styrainc/regal to the OPA organisation at v0.36; the old path no
# longer receives releases.
readonly PORTCULLIS_REGAL_MODULE="github.com/open-policy-agent/regal"
readonly PORTCULLIS_KAFKA_VERSION="3.9.1"
readonly PORTCULLIS_KAFKA_SCALA="2.13"
# Maven artifacts that together make a runnable broker plus its command-line tools:
# kafka_2.13 is the broker (and StorageTool, ConsoleProducer); kafka-tools holds TopicCommand and
# ConsoleConsumer since Kafka 3.5-3.8 moved them out of core; slf4j-reload4j + reload4j are the
# logging backend the official distribution ships (the jars only depend on slf4j-api).
readonly PORTCULLIS_KAFKA_ARTIFACTS=(
  "org.apache.kafka:kafka_${PORTCULLIS_KAFKA_SCALA}:${PORTCULLIS_KAFKA_VERSION}"
  "org.apache.kafka:kafka-tools:${PORTCULLIS_KAFKA_VERSION}"
  "org.slf4j:slf4j-reload4j:1.7.36"
  "ch.qos.reload4j:reload4j:1.2.25"
)
# PostgreSQL and Redis come from the distribution's packages (Debian 12: PostgreSQL 15, Redis
# 7.0), pinned to their major version — the compatibility boundary. Not to an exact package version:
# Debian's security archive keeps only the newest build of each, so an exact pin would stop
# installing on a fresh machine at the next security update. up.sh refuses any other major.
readonly PORTCULLIS_PG_MAJOR="15"
readonly PORTCULLIS_REDIS_MAJOR="7"
# Pinned so `mvn` does not resolve "latest" from the plugin metadata on every fresh machine.
readonly PORTCULLIS_MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# --- Locations -------------------------------------------------------------------------------
PORTCULLIS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORTCULLIS_STATE_DIR="${PORTCULLIS_STATE_DIR:-$PORTCULLIS_ROOT/.portcullis}"
# Configs and pg_ctl run from other working directories, so every path must be absolute.
case "$PORTCULLIS_STATE_DIR" in /*) ;; *) PORTCULLIS_STATE_DIR="$PWD/$PORTCULLIS_STATE_DIR" ;; esac
PORTCULLIS_STATE_DIR="${PORTCULLIS_STATE_DIR%/}"
# Outside the clone on purpose: a fresh clone on a machine that already ran setup reuses it.
# ($HOME can be unset in minimal CI environments; fall back to the passwd entry.)
PORTCULLIS_TOOLS_DIR="${PORTCULLIS_TOOLS_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/portcullis/tools}"
case "$PORTCULLIS_TOOLS_DIR" in /*) ;; *) PORTCULLIS_TOOLS_DIR="$PWD/$PORTCULLIS_TOOLS_DIR" ;; esac

PORTCULLIS_LOG_DIR="$PORTCULLIS_STATE_DIR/logs"
PORTCULLIS_STACK_ENV="$PORTCULLIS_STATE_DIR/stack.env"
# The ports a stack was started with (see portcullis_recorded_port).
PORTCULLIS_PORTS_FILE="$PORTCULLIS_STATE_DIR/stack.ports"

PG_DIR="$PORTCULLIS_STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_PASSWORD_FILE="$PG_DIR/password"
PG_LOG="$PORTCULLIS_LOG_DIR/postgres.log"
# Unix socket paths are limited to 107 bytes; override this if the state dir is deeply nested.
PG_SOCKET_DIR="${PORTCULLIS_PG_SOCKET_DIR:-$PG_DIR/run}"
PG_ROLE="portcullis"

REDIS_DIR="$PORTCULLIS_STATE_DIR/redis"
REDIS_DATA="$REDIS_DIR/data"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$PORTCULLIS_LOG_DIR/redis.log"

KAFKA_DIR="$PORTCULLIS_STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_DIR/log4j.properties"
KAFKA_TOOLS_LOG4J="$KAFKA_DIR/tools-log4j.properties"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$PORTCULLIS_LOG_DIR/kafka.log"
# The JVM's own stdout/stderr: crashes before log4j is up (bad flags, wrong Java) land here.
KAFKA_OUT="$PORTCULLIS_LOG_DIR/kafka.out"
KAFKA_HOME="$PORTCULLIS_TOOLS_DIR/kafka-$PORTCULLIS_KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
# The jar whose presence means the (atomically moved) libs dir is complete.
KAFKA_MARKER_JAR="$KAFKA_LIBS/kafka_${PORTCULLIS_KAFKA_SCALA}-${PORTCULLIS_KAFKA_VERSION}.jar"
# Modest heap: the machine has 2 cores and runs test suites beside the broker.
read -r -a KAFKA_JAVA_OPTS <<<"${PORTCULLIS_KAFKA_JAVA_OPTS:--Xms256m -Xmx768m}"

OPA_BIN="$PORTCULLIS_TOOLS_DIR/opa-$PORTCULLIS_OPA_VERSION/bin/opa"
REGAL_BIN="$PORTCULLIS_TOOLS_DIR/regal-$PORTCULLIS_REGAL_VERSION/bin/regal"

PORTCULLIS_JAVA="${PORTCULLIS_JAVA:-java}"

# --- Ports: explicit env, else what this state dir was started with, else the defaults. --------
# Reading the record back means `PORTCULLIS_STATE_DIR=/tmp/s2 infra/local/down.sh` (or status,
# wait) acts on the second stack without repeating its ports, and can never hit the first one's.
portcullis_recorded_port() { # <VAR_NAME>: prints the recorded value, or nothing
  [ -r "$PORTCULLIS_PORTS_FILE" ] || return 0
  sed -n "s/^$1=\([0-9][0-9]*\)\$/\1/p" "$PORTCULLIS_PORTS_FILE" | tail -n 1
}
_portcullis_port() { # <VAR_NAME> <default>
  local value="${!1:-}"
  [ -n "$value" ] || value="$(portcullis_recorded_port "$1")"
  value="${value:-$2}"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    die "$1=$value is not a TCP port"
  fi
  printf '%s' "$value"
}

# --- Helpers ---------------------------------------------------------------------------------
PORTCULLIS_SCRIPT="$(basename "${0:-lib.sh}" .sh)"

# --help: the script's header comment (line 2 up to the first line that is not a comment).
print_usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

log() { printf '[portcullis %s] %s\n' "$PORTCULLIS_SCRIPT" "$*" >&2; }
die() {
  printf '[portcullis %s] error: %s\n' "$PORTCULLIS_SCRIPT" "$*" >&2
  exit 1
}

PORTCULLIS_PG_PORT="$(_portcullis_port PORTCULLIS_PG_PORT 55432)"
PORTCULLIS_REDIS_PORT="$(_portcullis_port PORTCULLIS_REDIS_PORT 56379)"
PORTCULLIS_KAFKA_PORT="$(_portcullis_port PORTCULLIS_KAFKA_PORT 59092)"
PORTCULLIS_KAFKA_CONTROLLER_PORT="$(_portcullis_port PORTCULLIS_KAFKA_CONTROLLER_PORT 59093)"

# True when something accepts TCP connections on 127.0.0.1:<port>. Uses bash's /dev/tcp so it
# needs no netcat; `timeout` guards against a peer that never completes the handshake.
port_open() {
  # shellcheck disable=SC2016 # $1 is for the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_for_port <port> <timeout-seconds> <what>: polls until the port accepts connections.
wait_for_port() {
  local port="$1" timeout="$2" what="$3" deadline=$((SECONDS + $2))
  until port_open "$port"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not open 127.0.0.1:$port within ${timeout}s"
    sleep 0.2
  done
}

# pid_from_file <pidfile> <cmdline-substring>: prints the pid if that process is alive AND its
# command line contains the substring (so a recycled pid is not mistaken for our service).
pid_from_file() {
  local pidfile="$1" needle="$2" pid cmdline
  [ -r "$pidfile" ] || return 1
  pid="$(head -n 1 "$pidfile" | tr -dc '0-9')"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$needle"* ]] || return 1
  printf '%s' "$pid"
}

# PostgreSQL's bin dir. The existing cluster's major version wins (a cluster can only be run by
# the major version that created it); otherwise the pinned major's (PORTCULLIS_PG_MAJOR).
pg_bin_dir() {
  if [ -n "${PORTCULLIS_PG_BIN:-}" ]; then
    printf '%s' "$PORTCULLIS_PG_BIN"
    return 0
  fi
  local major dir
  if [ -r "$PG_DATA/PG_VERSION" ]; then
    major="$(cat "$PG_DATA/PG_VERSION")"
    [ -x "/usr/lib/postgresql/$major/bin/pg_ctl" ] ||
      die "the cluster in $PG_DATA was created by PostgreSQL $major, which is not installed; install postgresql-$major or run 'infra/local/down.sh --purge'"
    printf '%s' "/usr/lib/postgresql/$major/bin"
    return 0
  fi
  dir="/usr/lib/postgresql/$PORTCULLIS_PG_MAJOR/bin"
  [ -x "$dir/initdb" ] || return 1
  printf '%s' "$dir"
}

# PostgreSQL refuses to run as root; run its binaries as the postgres OS user. `cd /` because the
# caller's cwd (e.g. /root) may not be readable by that user, which makes psql and initdb warn.
# Lock descriptors are closed because pg_ctl start leaves the postmaster running (see hold_lock).
as_postgres() { (cd / && close_lock_fds && exec runuser -u postgres -- "$@"); }

# The postmaster's pid if this stack's cluster is running (postmaster.pid line 1 is the pid;
# pg_ctl starts it with "-D <data dir>", which tells it apart from any other cluster).
pg_pid() { pid_from_file "$PG_DATA/postmaster.pid" "$PG_DATA"; }

# The installed redis-server's major version ("7" for 7.0.15), empty if there is none.
redis_major() {
  command -v redis-server >/dev/null || return 0
  redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p'
}

pg_password() { [ -r "$PG_PASSWORD_FILE" ] && tr -d '\n' <"$PG_PASSWORD_FILE"; }

# A real login over TCP as the application role, exactly as the services will connect.
pg_ready() {
  local bin pw
  bin="$(pg_bin_dir)" || return 1
  pw="$(pg_password)" || return 1
  PGPASSWORD="$pw" PGCONNECT_TIMEOUT=3 "$bin/psql" -XqAt -w -h 127.0.0.1 -p "$PORTCULLIS_PG_PORT" \
    -U "$PG_ROLE" -d postgres -c 'select 1' 2>/dev/null | grep -qx 1
}

redis_pid() { pid_from_file "$REDIS_PIDFILE" "redis-server"; }

redis_ready() {
  [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$PORTCULLIS_REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

kafka_pid() { pid_from_file "$KAFKA_PIDFILE" "$KAFKA_CONF"; }

# A real Kafka protocol round trip, in ~10 ms instead of a JVM tool's ~3 s: send ApiVersions v0
# (api_key 18) with correlation id "PCUL" and require a response carrying that id and error 0.
# The broker only serves requests on its PLAINTEXT listener once it has caught up with the
# metadata log and is unfenced, so a port that is merely open does not pass.
kafka_ready() {
  local hex
  # shellcheck disable=SC2016 # $1 is for the inner shell
  hex="$(timeout 3 bash -c '
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      # size=12 | api_key=18 api_version=0 | correlation_id="PCUL" | client_id len=2 "pc"
      printf "\x00\x00\x00\x0c\x00\x12\x00\x00PCUL\x00\x02pc" >&3
      head -c 10 <&3' _ "$PORTCULLIS_KAFKA_PORT" 2>/dev/null | od -An -tx1 | tr -d ' \n')" || true
  # bytes 0-3 are the response size; then correlation id 50 43 55 4c and error code 00 00.
  [ "${hex:8:12}" = "5043554c0000" ]
}

# Run one of the Kafka jars' main classes with quiet console logging (used for StorageTool here;
# see README.md for TopicCommand and the console clients).
kafka_java() {
  "$PORTCULLIS_JAVA" -Xmx256m -cp "$KAFKA_LIBS/*" "-Dlog4j.configuration=file:$KAFKA_TOOLS_LOG4J" "$@"
}

# Exclusive flock on <file>, held until release_lock or the end of the calling script.
# <file> <what-for-the-message> <timeout-seconds>; sets PORTCULLIS_LOCK_FD to the descriptor.
PORTCULLIS_LOCK_FD=""
PORTCULLIS_LOCK_FDS=()
hold_lock() {
  local file="$1" what="$2" timeout="$3" fd
  exec {fd}>"$file" || die "cannot open lock file $file"
  if ! flock -n "$fd"; then
    log "waiting for another run that holds $what ($file)…"
    flock -w "$timeout" "$fd" || die "timed out after ${timeout}s waiting for $what ($file)"
  fi
  PORTCULLIS_LOCK_FD="$fd"
  PORTCULLIS_LOCK_FDS+=("$fd")
}
release_lock() { # <fd>
  local fd="$1" kept=() other
  flock -u "$fd" 2>/dev/null || true
  exec {fd}>&-
  for other in "${PORTCULLIS_LOCK_FDS[@]}"; do [ "$other" = "$fd" ] || kept+=("$other"); done
  PORTCULLIS_LOCK_FDS=("${kept[@]}")
}
# Bash cannot open files close-on-exec, so a daemon started while we hold a lock would inherit
# the descriptor and keep the lock for as long as it runs (blocking every later up/down). Every
# long-lived child is therefore started from a subshell that calls this first.
close_lock_fds() {
  local fd
  for fd in "${PORTCULLIS_LOCK_FDS[@]}"; do exec {fd}>&-; done
}

# Print the last lines of a log (or say it does not exist) — used on every failure path.
show_log_tail() { # <file> [lines]
  local file="$1" lines="${2:-20}"
  if [ -s "$file" ]; then
    printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '--- end of %s ---\n' "$file" >&2
  else
    printf -- '--- %s is missing or empty ---\n' "$file" >&2
  fi
}

# Single-quote a value for a sourceable file (POSIX sh and bash alike).
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Scripts that take no arguments: --help prints the usage, anything else is an error.
accept_no_arguments() { # <script name> "$@"
  local script="$1"
  shift
  case "${1:-}" in
    "") ;;
    -h | --help)
      print_usage
      exit 0
      ;;
    *) die "unknown argument '$1' (usage: $script)" ;;
  esac
}
