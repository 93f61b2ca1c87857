#!/usr/bin/env bash
# One line per service of the local stack: state, port, pid, log file. States:
#   up        the process runs and answers a real request (same checks as wait.sh)
#   starting  the process runs but does not answer yet (or answers on another port)
#   down      no process
# Exit status: 0 when all are up, 1 otherwise (usable as a guard in scripts).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

accept_no_arguments status.sh "$@"

all_up=1
report() { # <name> <port text> <pid-fn> <ready-fn> <log>
  local name="$1" port="$2" pid state
  if pid="$("$3")"; then
    if "$4"; then state=up; else state=starting; fi
  else
    pid="-"
    state=down
  fi
  [ "$state" = up ] || all_up=0
  printf '%-8s %-8s port %-22s pid %-8s log %s\n' "$name" "$state" "$port" "$pid" "$5"
}

report postgres "$PORTCULLIS_PG_PORT" pg_pid pg_ready "$PG_LOG"
report redis "$PORTCULLIS_REDIS_PORT" redis_pid redis_ready "$REDIS_LOG"
report kafka "$PORTCULLIS_KAFKA_PORT (ctrl $PORTCULLIS_KAFKA_CONTROLLER_PORT)" kafka_pid kafka_ready "$KAFKA_LOG"
[ "$all_up" -eq 1 ]
