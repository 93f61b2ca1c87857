#!/usr/bin/env bash
# Brings the local stack up: PostgreSQL, Redis and a single-node KRaft Kafka, each in this stack's
# state dir on its own ports, plus the pinned OPA and Regal binaries in the tools cache. Installs
# whatever is missing (apt packages, Kafka jars from Maven Central, a Go build of the tools), so
# it is the one command a fresh machine or CI runs. Idempotent: when everything is already up it
# only checks and returns in about a second. Ends by running wait.sh and writing stack.env.
#
# Usage: infra/local/up.sh        (env overrides: see README.md)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

accept_no_arguments up.sh "$@"

# Root is needed for apt-get and for runuser (PostgreSQL itself then runs as 'postgres').
[ "$(id -u)" -eq 0 ] || die "run as root: it installs packages with apt-get and starts PostgreSQL as the postgres user via runuser"

# Temp dirs to remove however we exit (an interrupted download or build must leave no trace).
PORTCULLIS_TMP=()
cleanup() {
  local p
  for p in "${PORTCULLIS_TMP[@]}"; do rm -rf -- "$p"; done
}
trap cleanup EXIT

# --- Packages --------------------------------------------------------------------------------

ensure_packages() {
  local missing=()
  [ -x "/usr/lib/postgresql/$PORTCULLIS_PG_MAJOR/bin/initdb" ] || missing+=("postgresql-$PORTCULLIS_PG_MAJOR")
  { command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server)
  # The quickstart and health probes of scripts/ use it.
  command -v curl >/dev/null || missing+=(curl)
  command -v "$PORTCULLIS_JAVA" >/dev/null || missing+=(openjdk-17-jre-headless)
  # Maven is only needed to fetch the Kafka jars once; a machine with the cache can skip it.
  [ -f "$KAFKA_MARKER_JAR" ] || command -v mvn >/dev/null || missing+=(maven)
  [ "${#missing[@]}" -gt 0 ] || {
    check_package_versions
    return 0
  }

  local apt_log="$PORTCULLIS_LOG_DIR/apt.log"
  log "installing ${missing[*]} (apt-get, a minute or two; log: $apt_log)…"
  export DEBIAN_FRONTEND=noninteractive
  # --force-confold: never stop on a config-file prompt. No recommends: nothing else is needed.
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"; } \
    >"$apt_log" 2>&1; then
    show_log_tail "$apt_log"
    die "apt-get could not install ${missing[*]}; see $apt_log"
  fi
  [ -x "/usr/lib/postgresql/$PORTCULLIS_PG_MAJOR/bin/initdb" ] ||
    die "postgresql-$PORTCULLIS_PG_MAJOR installed but no /usr/lib/postgresql/$PORTCULLIS_PG_MAJOR/bin/initdb"
  command -v "$PORTCULLIS_JAVA" >/dev/null || die "java still not found after installing openjdk-17-jre-headless"
  check_package_versions
}

# The distribution's Redis must be the pinned major (apt offers one version per release; a
# machine on another release gets a clear refusal, not a silently different server).
check_package_versions() {
  local major
  major="$(redis_major)"
  [ "$major" = "$PORTCULLIS_REDIS_MAJOR" ] ||
    die "redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') is installed; this stack is pinned to Redis $PORTCULLIS_REDIS_MAJOR.x (PORTCULLIS_REDIS_MAJOR in infra/local/lib.sh)"
}

prepare_dirs() {
  mkdir -p "$PORTCULLIS_STATE_DIR" "$PORTCULLIS_LOG_DIR" "$PG_DIR" "$REDIS_DATA" "$KAFKA_DATA" "$PORTCULLIS_TOOLS_DIR"
  # The postgres OS user must traverse these even under a restrictive umask.
  chmod 755 "$PORTCULLIS_STATE_DIR" "$PORTCULLIS_LOG_DIR" "$PG_DIR"
}

# --- Ports -----------------------------------------------------------------------------------

any_service_running() { pg_pid >/dev/null || redis_pid >/dev/null || kafka_pid >/dev/null; }

# A running stack keeps the ports it was started with: refuse a silent mismatch instead of
# "starting" services that would then be looked for on the wrong ports.
check_ports_unchanged() {
  local var recorded
  any_service_running || return 0
  for var in PORTCULLIS_PG_PORT PORTCULLIS_REDIS_PORT PORTCULLIS_KAFKA_PORT PORTCULLIS_KAFKA_CONTROLLER_PORT; do
    recorded="$(portcullis_recorded_port "$var")"
    [ -z "$recorded" ] || [ "$recorded" = "${!var}" ] ||
      die "the stack in $PORTCULLIS_STATE_DIR is running with $var=$recorded, not ${!var}; run infra/local/down.sh first to change ports"
  done
}

record_ports() {
  local tmp
  tmp="$(mktemp "$PORTCULLIS_STATE_DIR/.stack.ports.XXXXXX")"
  {
    echo "# Ports this stack was started with (read by lib.sh when the env does not set them)."
    echo "PORTCULLIS_PG_PORT=$PORTCULLIS_PG_PORT"
    echo "PORTCULLIS_REDIS_PORT=$PORTCULLIS_REDIS_PORT"
    echo "PORTCULLIS_KAFKA_PORT=$PORTCULLIS_KAFKA_PORT"
    echo "PORTCULLIS_KAFKA_CONTROLLER_PORT=$PORTCULLIS_KAFKA_CONTROLLER_PORT"
  } >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$PORTCULLIS_PORTS_FILE"
}

require_port_free() { # <port> <service> <env var>
  if port_open "$1"; then
    die "port $1 (for $2) is already in use by a process that is not this stack's $2 (state dir $PORTCULLIS_STATE_DIR); stop it or choose another port with $3"
  fi
}

# --- PostgreSQL ------------------------------------------------------------------------------

pg_generate_password() {
  [ -s "$PG_PASSWORD_FILE" ] && return 0
  local tmp pw
  tmp="$(mktemp "$PG_DIR/.password.XXXXXX")" # mktemp creates it mode 600
  # Alphanumeric only, so it can sit in a URL without escaping. head reads a fixed amount, so no
  # SIGPIPE trips pipefail.
  pw="$(head -c 48 /dev/urandom | base64 -w0 | tr -d '/+=' | cut -c1-32)"
  [ "${#pw}" -ge 24 ] || die "could not generate a database password"
  printf '%s\n' "$pw" >"$tmp"
  mv -f "$tmp" "$PG_PASSWORD_FILE"
}

pg_write_file() { # <path>: stdin to a file owned by postgres, mode 600
  cat >"$1"
  chown postgres:postgres "$1"
  chmod 600 "$1"
}

pg_init_cluster() { # <bin dir>
  local bin="$1" tmp="$PG_DIR/data.initdb" initdb_log="$PORTCULLIS_LOG_DIR/initdb.log"
  [ -f "$PG_DATA/PG_VERSION" ] && return 0
  [ ! -e "$PG_DATA" ] || [ -z "$(ls -A "$PG_DATA")" ] ||
    die "$PG_DATA exists but is not a PostgreSQL cluster; move it away or run 'infra/local/down.sh --purge'"
  rm -rf "$PG_DATA"
  log "creating a PostgreSQL $(basename "$(dirname "$bin")") cluster in $PG_DATA (initdb)…"
  # initdb into a temp dir and rename it into place, so an interrupted initdb is never mistaken
  # for a cluster. The data dir holds no absolute paths, so the rename is safe.
  rm -rf "$tmp"
  install -d -o postgres -g postgres -m 700 "$tmp"
  # 'postgres' (peer auth on the socket, OS user postgres only) stays the admin path; the
  # application role is created afterwards with a password. C.UTF-8: byte-order collation keeps
  # tests deterministic while still classifying non-ASCII text.
  if ! as_postgres "$bin/initdb" -D "$tmp" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$initdb_log" 2>&1; then
    show_log_tail "$initdb_log"
    die "initdb failed; see $initdb_log"
  fi
  printf "\n# Portcullis local stack settings (rewritten by infra/local/up.sh before each start).\ninclude_if_exists = 'portcullis.conf'\n" >>"$tmp/postgresql.conf"
  mv -T "$tmp" "$PG_DATA"
}

pg_write_config() {
  pg_write_file "$PG_DATA/portcullis.conf" <<EOF
# Generated by infra/local/up.sh before each start; edits here are overwritten.
listen_addresses = '127.0.0.1'
port = $PORTCULLIS_PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
# Test suites open many pools in parallel.
max_connections = 300
shared_buffers = 256MB
# Durability stays on: the tests exercise crash-safety of the ledger and approvals.
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  pg_write_file "$PG_DATA/pg_hba.conf" <<'EOF'
# Generated by infra/local/up.sh. Loopback only; the password is in the state dir (mode 600).
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
EOF
}

# Makes sure the 'portcullis' superuser exists with the stored password. Cheap when it already
# logs in, so the warm path pays one psql round trip.
pg_ensure_role() { # <bin dir>
  local bin="$1" pw
  pg_ready && return 0
  pw="$(pg_password)"
  log "creating superuser role '$PG_ROLE' (password in $PG_PASSWORD_FILE)…"
  # SQL on stdin, not argv, so the password never shows up in `ps`.
  if ! printf '%s\n' \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN CREATE ROLE $PG_ROLE; END IF; END \$\$;" \
    "ALTER ROLE $PG_ROLE WITH LOGIN SUPERUSER PASSWORD '$pw';" |
    as_postgres "$bin/psql" -XqAt -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PORTCULLIS_PG_PORT" -U postgres -d postgres >/dev/null; then
    show_log_tail "$PG_LOG"
    die "could not create role '$PG_ROLE'; see $PG_LOG"
  fi
  pg_ready || {
    show_log_tail "$PG_LOG"
    die "role '$PG_ROLE' still cannot log in over 127.0.0.1:$PORTCULLIS_PG_PORT; see $PG_LOG"
  }
}

start_postgres() {
  local bin pid sock
  bin="$(pg_bin_dir)" || die "no PostgreSQL $PORTCULLIS_PG_MAJOR found under /usr/lib/postgresql/$PORTCULLIS_PG_MAJOR/bin (set PORTCULLIS_PG_BIN)"
  id postgres >/dev/null 2>&1 || die "there is no 'postgres' OS user (the postgresql package creates it)"
  as_postgres test -x "$PG_DIR" ||
    die "the postgres OS user cannot reach $PG_DIR: every parent directory needs o+x (a state dir under /root does not work); set PORTCULLIS_STATE_DIR elsewhere"
  sock="$PG_SOCKET_DIR/.s.PGSQL.$PORTCULLIS_PG_PORT"
  [ "${#sock}" -le 107 ] ||
    die "unix socket path $sock is longer than the 107-byte limit; set PORTCULLIS_PG_SOCKET_DIR to a shorter dir"
  pg_generate_password

  if pid="$(pg_pid)"; then
    log "postgres already running (pid $pid, port $PORTCULLIS_PG_PORT)"
  else
    require_port_free "$PORTCULLIS_PG_PORT" postgres PORTCULLIS_PG_PORT
    pg_init_cluster "$bin"
    pg_write_config
    install -d -o postgres -g postgres -m 755 "$PG_SOCKET_DIR"
    # pg_ctl opens the log as the postgres user, so the file must be theirs.
    touch "$PG_LOG"
    chown postgres:postgres "$PG_LOG"
    chmod 640 "$PG_LOG"
    log "starting postgres on 127.0.0.1:$PORTCULLIS_PG_PORT…"
    # -w waits until it accepts connections. A stale postmaster.pid is handled by postgres
    # itself, except in the second after a crash while the dead postmaster's pid is still
    # being reaped: it then refuses with "lock file already exists", so try twice more.
    local attempt
    for attempt in 1 2 3; do
      as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s start >/dev/null 2>&1 && break
      if [ "$attempt" -lt 3 ] && tail -n 3 "$PG_LOG" | grep -q 'lock file "postmaster.pid" already exists'; then
        sleep 2
        continue
      fi
      show_log_tail "$PG_LOG"
      die "postgres did not start; see $PG_LOG"
    done
  fi
  pg_ensure_role "$bin"
}

# --- Redis -----------------------------------------------------------------------------------

start_redis() {
  local pid
  if pid="$(redis_pid)"; then
    log "redis already running (pid $pid, port $PORTCULLIS_REDIS_PORT)"
    return 0
  fi
  rm -f "$REDIS_PIDFILE" # stale
  require_port_free "$PORTCULLIS_REDIS_PORT" redis PORTCULLIS_REDIS_PORT
  cat >"$REDIS_CONF" <<EOF
# Generated by infra/local/up.sh before each start; edits here are overwritten.
bind 127.0.0.1
port $PORTCULLIS_REDIS_PORT
protected-mode yes
daemonize yes
pidfile "$REDIS_PIDFILE"
logfile "$REDIS_LOG"
loglevel notice
dir "$REDIS_DATA"
# Durable like production: the append-only file, fsynced every second, plus RDB snapshots.
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
EOF
  log "starting redis on 127.0.0.1:$PORTCULLIS_REDIS_PORT…"
  # Config errors fail here; errors after daemonizing (e.g. bind) go to the log, and wait.sh
  # reports them.
  (close_lock_fds && exec redis-server "$REDIS_CONF") >/dev/null 2>&1 || {
    show_log_tail "$REDIS_LOG"
    die "redis-server did not start; see $REDIS_LOG (check the config with: redis-server $REDIS_CONF)"
  }
}

# --- Kafka -----------------------------------------------------------------------------------

ensure_kafka_jars() {
  [ -f "$KAFKA_MARKER_JAR" ] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
  hold_lock "$PORTCULLIS_TOOLS_DIR/.kafka-$PORTCULLIS_KAFKA_VERSION.lock" "the Kafka download lock" 900
  local lock_fd="$PORTCULLIS_LOCK_FD"
  if [ ! -f "$KAFKA_MARKER_JAR" ]; then # another stack may have fetched it while we waited
    local tmp mvn_log="$PORTCULLIS_LOG_DIR/kafka-jars.log" deps="" coord group artifact version
    log "downloading Kafka $PORTCULLIS_KAFKA_VERSION jars from Maven Central (mvn, about a minute)…"
    tmp="$(mktemp -d "$PORTCULLIS_TOOLS_DIR/.tmp.kafka.XXXXXX")"
    PORTCULLIS_TMP+=("$tmp")
    for coord in "${PORTCULLIS_KAFKA_ARTIFACTS[@]}"; do
      IFS=: read -r group artifact version <<<"$coord"
      deps+="    <dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version>"
      # kafka-tools drags in Kafka Connect's runtime (Jetty, Jersey: ~40 jars) for one tool we
      # never run; the official distribution needs it, we do not.
      [ "$artifact" != kafka-tools ] ||
        deps+="<exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>"
      deps+="</dependency>"$'\n'
    done
    cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.portcullis</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
$deps  </dependencies>
</project>
EOF
    if ! (cd "$tmp" && mvn -B -q --no-transfer-progress "$PORTCULLIS_MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$tmp/home/libs") >"$mvn_log" 2>&1; then
      show_log_tail "$mvn_log"
      die "could not fetch the Kafka jars with Maven; see $mvn_log"
    fi
    [ -f "$tmp/home/libs/$(basename "$KAFKA_MARKER_JAR")" ] || die "Maven finished but $(basename "$KAFKA_MARKER_JAR") is missing; see $mvn_log"
    # Prove the set runs before caching it.
    "$PORTCULLIS_JAVA" -cp "$tmp/home/libs/*" kafka.Kafka --version 2>/dev/null | grep -q "^$PORTCULLIS_KAFKA_VERSION" ||
      die "the downloaded Kafka jars do not report version $PORTCULLIS_KAFKA_VERSION (java -cp '$tmp/home/libs/*' kafka.Kafka --version)"
    rm -rf "$KAFKA_HOME"
    mv -T "$tmp/home" "$KAFKA_HOME"
  fi
  release_lock "$lock_fd"
}

kafka_write_config() {
  cat >"$KAFKA_CONF" <<EOF
# Generated by infra/local/up.sh before each start; edits here are overwritten.
# Single node in KRaft mode: this process is both the broker and the (only) controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$PORTCULLIS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORTCULLIS_KAFKA_PORT,CONTROLLER://127.0.0.1:$PORTCULLIS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORTCULLIS_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA

# One broker: every internal topic must be satisfiable with a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Fewer internal partitions than the default 50: creating them is most of a first consumer
# group's or first transaction's latency on a 2-core machine, and one broker gains nothing.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5

# Tests: consumers join at once, and topics exist only if the code creates them.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=3
EOF
  cat >"$KAFKA_LOG4J" <<EOF
# Generated by infra/local/up.sh: the broker logs to one size-capped file.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
  cat >"$KAFKA_TOOLS_LOG4J" <<'EOF'
# Generated by infra/local/up.sh: command-line tools (StorageTool, TopicCommand, console
# clients) log warnings to stderr only, so their stdout stays parseable.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

kafka_format_storage() {
  [ -f "$KAFKA_DATA/meta.properties" ] && return 0
  local cluster_id
  log "formatting Kafka storage in $KAFKA_DATA (once)…"
  # A random id may start with '-', which StorageTool's argument parser reads as an option.
  cluster_id="-"
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid)" || die "kafka StorageTool random-uuid failed"
  done
  kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" >/dev/null ||
    die "kafka StorageTool format failed for $KAFKA_DATA"
}

start_kafka() {
  local pid
  if pid="$(kafka_pid)"; then
    log "kafka already running (pid $pid, port $PORTCULLIS_KAFKA_PORT)"
    return 0
  fi
  rm -f "$KAFKA_PIDFILE" # stale
  require_port_free "$PORTCULLIS_KAFKA_PORT" kafka PORTCULLIS_KAFKA_PORT
  require_port_free "$PORTCULLIS_KAFKA_CONTROLLER_PORT" "kafka controller" PORTCULLIS_KAFKA_CONTROLLER_PORT
  kafka_write_config
  kafka_format_storage
  log "starting kafka on 127.0.0.1:$PORTCULLIS_KAFKA_PORT (controller :$PORTCULLIS_KAFKA_CONTROLLER_PORT)…"
  printf '\n=== %s starting kafka ===\n' "$(date -u +%FT%TZ)" >>"$KAFKA_OUT"
  # setsid: its own session, so it outlives this script and a Ctrl-C here does not reach it.
  # The inner shell writes its own pid and then execs java, so the pid file names the JVM.
  # G1 settings are those of Kafka's own start scripts; exit on OOM rather than limp on.
  (
    close_lock_fds
    # shellcheck disable=SC2016 # $$ and $1 are for the inner shell
    exec setsid nohup bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$KAFKA_PIDFILE" \
      "$PORTCULLIS_JAVA" "${KAFKA_JAVA_OPTS[@]}" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      "-Dlog4j.configuration=file:$KAFKA_LOG4J" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
  ) </dev/null >>"$KAFKA_OUT" 2>&1 &
}

# --- OPA and Regal ---------------------------------------------------------------------------

find_go() {
  local go
  for go in "${PORTCULLIS_GO:-}" "$(command -v go || true)" /usr/local/go/bin/go; do
    [ -n "$go" ] && [ -x "$go" ] && {
      printf '%s' "$go"
      return 0
    }
  done
  return 1
}

# ensure_go_tool <name> <module> <version> <destination binary> [-ldflags value]
#
# Why not `go install <module>@<version>`: that form also asks the module proxy for the module's
# version list (to print deprecation notices) and aborts when the list is refused — which the
# proxy reachable here does for Regal ("403 ... @v/list"). A throwaway main module that requires
# exactly the pinned version builds the same packages from the same dependency versions (the
# pinned module's own go.mod decides them), fetching only pinned versions, never "latest".
ensure_go_tool() {
  local name="$1" module="$2" version="$3" dest="$4" ldflags="${5:-}"
  [ -x "$dest" ] && return 0
  local go tmp lock_fd build_log="$PORTCULLIS_LOG_DIR/build-$name.log"
  go="$(find_go)" || die "Go is needed to build $name $version (set PORTCULLIS_GO or put go on PATH)"
  hold_lock "$PORTCULLIS_TOOLS_DIR/.$name-$version.lock" "the $name build lock" 1800
  lock_fd="$PORTCULLIS_LOCK_FD"
  if [ ! -x "$dest" ]; then # another stack may have built it while we waited
    log "compiling $name $version (go build, a few minutes on 2 cores; log: $build_log)…"
    # Build in a temp dir and move the checked binary into place: a failed or interrupted
    # build is never cached. CGO off: a static binary, and no C compiler needed.
    tmp="$(mktemp -d "$PORTCULLIS_TOOLS_DIR/.tmp.$name.XXXXXX")"
    PORTCULLIS_TMP+=("$tmp")
    if ! (
      cd "$tmp" &&
        export GOWORK=off CGO_ENABLED=0 &&
        "$go" mod init "portcullis.local/build-$name" &&
        "$go" get "$module@$version" &&
        "$go" build -trimpath -ldflags="$ldflags" -o "$tmp/bin/$name" "$module"
    ) >"$build_log" 2>&1; then
      show_log_tail "$build_log"
      die "building $module@$version failed; see $build_log"
    fi
    "$tmp/bin/$name" version 2>&1 | grep -q "${version#v}" ||
      die "the freshly built $name does not report version $version ($tmp/bin/$name version)"
    mkdir -p "$(dirname "$dest")"
    mv -f "$tmp/bin/$name" "$dest"
  fi
  release_lock "$lock_fd"
}

# --- stack.env -------------------------------------------------------------------------------

write_stack_env() {
  local tmp pw
  pw="$(pg_password)" || die "no database password in $PG_PASSWORD_FILE"
  tmp="$(mktemp "$PORTCULLIS_STATE_DIR/.stack.env.XXXXXX")" # mode 600 from the start
  {
    echo "# Generated by infra/local/up.sh for the stack in $PORTCULLIS_STATE_DIR."
    echo "# Source it:  . $(shell_quote "$PORTCULLIS_STACK_ENV")"
    echo "export PORTCULLIS_DATABASE_URL=$(shell_quote "postgres://$PG_ROLE:$pw@127.0.0.1:$PORTCULLIS_PG_PORT/postgres")"
    echo "export PORTCULLIS_REDIS_URL=$(shell_quote "redis://127.0.0.1:$PORTCULLIS_REDIS_PORT")"
    echo "export PORTCULLIS_KAFKA_BROKERS=$(shell_quote "127.0.0.1:$PORTCULLIS_KAFKA_PORT")"
    echo "export PORTCULLIS_OPA_BIN=$(shell_quote "$OPA_BIN")"
    echo "export PORTCULLIS_REGAL_BIN=$(shell_quote "$REGAL_BIN")"
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$PORTCULLIS_STACK_ENV"
}

# --- Main ------------------------------------------------------------------------------------

prepare_dirs
# One up/down at a time per state dir; a second up.sh waits instead of racing the first.
hold_lock "$PORTCULLIS_STATE_DIR/.lock" "this stack's lock" 1800
ensure_packages
check_ports_unchanged
any_service_running || record_ports
ensure_kafka_jars
start_postgres
start_redis
start_kafka
# The slow builds run while Kafka boots; nothing below needs the services.
ensure_go_tool opa "$PORTCULLIS_OPA_MODULE" "$PORTCULLIS_OPA_VERSION" "$OPA_BIN"
# Regal reads its version from -ldflags only (its releases inject it); without this it says "unknown".
ensure_go_tool regal "$PORTCULLIS_REGAL_MODULE" "$PORTCULLIS_REGAL_VERSION" "$REGAL_BIN" \
  "-X $PORTCULLIS_REGAL_MODULE/pkg/version.Version=$PORTCULLIS_REGAL_VERSION"
write_stack_env
"$HERE/wait.sh"
log "stack is up in ${SECONDS}s (state: $PORTCULLIS_STATE_DIR). Use it with: . $PORTCULLIS_STACK_ENV"
