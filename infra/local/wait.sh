#!/usr/bin/env bash
# Waits until every service of the local stack accepts real requests, and exits 0 only then:
#   postgres  a password login over TCP as 'portcullis' running `select 1`
#   redis     `redis-cli ping` answering PONG
#   kafka     an ApiVersions round trip on the broker listener (see kafka_ready in lib.sh)
# On failure it names the service, its log file and prints the log's last 20 lines, exit 1.
# Timeouts (seconds): PORTCULLIS_PG_WAIT_TIMEOUT and PORTCULLIS_REDIS_WAIT_TIMEOUT (default 30),
# PORTCULLIS_KAFKA_WAIT_TIMEOUT (default 60). A service whose log keeps growing is making progress
# (Kafka reloading thousands of partitions after a restart, say): each new log line moves its
# deadline out by 15 s, up to PORTCULLIS_MAX_WAIT (default 600), with a progress line every 10 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

accept_no_arguments wait.sh "$@"

PG_TIMEOUT="${PORTCULLIS_PG_WAIT_TIMEOUT:-30}"
REDIS_TIMEOUT="${PORTCULLIS_REDIS_WAIT_TIMEOUT:-30}"
KAFKA_TIMEOUT="${PORTCULLIS_KAFKA_WAIT_TIMEOUT:-60}"
MAX_WAIT="${PORTCULLIS_MAX_WAIT:-600}"

# The size of a file in bytes, 0 if it does not exist.
file_size() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }

# wait_service <name> <port> <timeout> <ready-fn> <pid-fn> <log file> [more log files]
wait_service() {
  local name="$1" port="$2" timeout="$3" ready="$4" pidfn="$5" logfile="$6"
  shift 6
  local started=$SECONDS deadline=$((SECONDS + timeout)) not_running=0 reason
  local logged seen_log next_note=$((SECONDS + 10))
  seen_log="$(file_size "$logfile")"
  while :; do
    if "$ready"; then
      log "$name ready on 127.0.0.1:$port"
      return 0
    fi
    logged="$(file_size "$logfile")"
    if [ "$logged" != "$seen_log" ]; then
      seen_log="$logged"
      # Still writing its log: still starting. Wait on, within the overall bound.
      deadline=$((SECONDS + 15 > deadline ? SECONDS + 15 : deadline))
      deadline=$((deadline > started + MAX_WAIT ? started + MAX_WAIT : deadline))
    fi
    if [ "$SECONDS" -ge "$next_note" ]; then
      log "$name still starting ($((SECONDS - started)) s; its log: $logfile)"
      next_note=$((SECONDS + 10))
    fi
    # A process that is gone will not come up: fail within ~2 s instead of at the deadline.
    # (Not at the first miss: a just-forked daemon may not have written its pid file yet.)
    if "$pidfn" >/dev/null; then not_running=0; else not_running=$((not_running + 1)); fi
    if [ "$not_running" -ge 4 ]; then
      reason="is not running (start it with infra/local/up.sh)"
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      reason="did not accept connections within $((SECONDS - started)) s"
      break
    fi
    sleep 0.5
  done
  printf '[portcullis %s] error: %s %s on 127.0.0.1:%s; log: %s\n' \
    "$PORTCULLIS_SCRIPT" "$name" "$reason" "$port" "$logfile" >&2
  show_log_tail "$logfile" 20
  local extra
  for extra in "$@"; do
    [ -s "$extra" ] && show_log_tail "$extra" 20
  done
  return 1
}

failed=()
wait_service postgres "$PORTCULLIS_PG_PORT" "$PG_TIMEOUT" pg_ready pg_pid "$PG_LOG" ||
  failed+=(postgres)
wait_service redis "$PORTCULLIS_REDIS_PORT" "$REDIS_TIMEOUT" redis_ready redis_pid "$REDIS_LOG" ||
  failed+=(redis)
# kafka.out holds what the JVM printed before log4j was up (e.g. a wrong Java version).
wait_service kafka "$PORTCULLIS_KAFKA_PORT" "$KAFKA_TIMEOUT" kafka_ready kafka_pid "$KAFKA_LOG" "$KAFKA_OUT" ||
  failed+=(kafka)

[ "${#failed[@]}" -eq 0 ] || die "not ready: ${failed[*]} (state dir $PORTCULLIS_STATE_DIR)"
