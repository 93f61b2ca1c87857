#!/usr/bin/env bash
# Stops the local stack cleanly: Kafka (SIGTERM, SIGKILL after 30 s), Redis (SIGTERM, which it
# treats as SHUTDOWN: AOF flushed, snapshot saved), PostgreSQL (pg_ctl stop -m fast).
# Idempotent: services that are not running are skipped, stale pid files removed.
#   --purge   also delete the stack's data, logs, password and stack.env (never the tools cache)
# Every service is found through this stack's state dir (pid files, data dir), never by port, so
# stopping one stack cannot touch another.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

purge=0
for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    -h | --help)
      print_usage
      exit 0
      ;;
    *) die "unknown argument '$arg' (usage: down.sh [--purge])" ;;
  esac
done

if [ ! -d "$PORTCULLIS_STATE_DIR" ]; then
  log "nothing to stop: $PORTCULLIS_STATE_DIR does not exist"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL is stopped as the postgres user via runuser)"
hold_lock "$PORTCULLIS_STATE_DIR/.lock" "this stack's lock" 1800

# stop_by_pid <name> <pid-fn> <pid file> <grace seconds>: SIGTERM, then SIGKILL after the grace.
# Polls through <pid-fn> (which checks the command line) rather than kill -0, so a recycled pid
# or an unreaped zombie is not waited on.
stop_by_pid() {
  local name="$1" pidfn="$2" pidfile="$3" grace="$4" pid deadline
  if ! pid="$("$pidfn")"; then
    if [ -e "$pidfile" ]; then
      log "$name not running (removing stale $pidfile)"
      rm -f "$pidfile"
    else
      log "$name not running"
    fi
    return 0
  fi
  log "stopping $name (pid $pid)…"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while "$pidfn" >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name did not stop within ${grace}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      ! "$pidfn" >/dev/null || die "$name (pid $pid) survived SIGKILL"
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  log "$name stopped"
}

stop_postgres() {
  local pid bin
  if ! pid="$(pg_pid)"; then
    log "postgres not running"
    return 0
  fi
  bin="$(pg_bin_dir)" || die "postgres is running (pid $pid) but no pg_ctl was found to stop it"
  log "stopping postgres (pid $pid)…"
  # fast: roll back open transactions and disconnect clients, but shut down cleanly (checkpoint).
  if ! as_postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop; then
    show_log_tail "$PG_LOG"
    die "pg_ctl stop failed; see $PG_LOG"
  fi
  log "postgres stopped"
}

# Reverse start order: Kafka first so it does not log connection noise about the others.
stop_by_pid kafka kafka_pid "$KAFKA_PIDFILE" 30
stop_by_pid redis redis_pid "$REDIS_PIDFILE" 30
stop_postgres

if [ "$purge" -eq 1 ]; then
  # Delete only what up.sh creates, by name: never `rm -rf $PORTCULLIS_STATE_DIR`, which could be
  # a directory holding other things (or, misconfigured, the tools cache).
  for dir in "$PG_DIR" "$REDIS_DIR" "$KAFKA_DIR" "$PORTCULLIS_LOG_DIR"; do
    case "$PORTCULLIS_TOOLS_DIR/" in
      "$dir/"*) die "refusing to purge $dir: the tools cache $PORTCULLIS_TOOLS_DIR is inside it" ;;
    esac
  done
  log "purging data and logs in $PORTCULLIS_STATE_DIR (the tools cache $PORTCULLIS_TOOLS_DIR stays)…"
  rm -rf -- "$PG_DIR" "$REDIS_DIR" "$KAFKA_DIR" "$PORTCULLIS_LOG_DIR" \
    "$PORTCULLIS_STACK_ENV" "$PORTCULLIS_PORTS_FILE"
  # A socket dir moved outside the state dir: remove it only if empty (postgres cleaned it).
  rmdir -- "$PG_SOCKET_DIR" 2>/dev/null || true
  rm -f -- "$PORTCULLIS_STATE_DIR/.lock"
  rmdir -- "$PORTCULLIS_STATE_DIR" 2>/dev/null || true
  [ ! -d "$PORTCULLIS_STATE_DIR/quickstart" ] ||
    log "the quick start's own state stays in $PORTCULLIS_STATE_DIR/quickstart (delete it with: scripts/quickstart.sh stop --purge)"
  log "purged"
fi
