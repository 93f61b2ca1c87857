#!/usr/bin/env bash
# The quick start: brings up the whole stack on this machine (PostgreSQL, Redis, Kafka, the four
# services and a demo upstream MCP server), seeds a demo agent, runs one example agent session
# through the gateway, shows the ledger, and prints the MCP URL and an agent key for your own
# client. Services keep running; `scripts/quickstart.sh stop` stops them (`stop --purge` also
# deletes what the quick start made for itself: its signing key, API token and spool).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${PORTCULLIS_STATE_DIR:-$root/.portcullis}"
run_dir="$state/quickstart"
logs="$state/logs"
broker_port="${PORTCULLIS_BROKER_PORT:-8080}"
upstream_port="${PORTCULLIS_DEMO_UPSTREAM_PORT:-8090}"
decision_port="${PORTCULLIS_DECISION_PORT:-8181}"
credential_port="${PORTCULLIS_CREDENTIAL_PORT:-8183}"
audit_port="${PORTCULLIS_AUDIT_PORT:-8184}"
step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=../infra/local/lib.sh
source infra/local/lib.sh

# Each pid file holds the pid and, on its second line, the script the process runs: a pid left
# from before a reboot may belong to another process by now, which must not be signalled.
stop_services() {
  local pidfile pid script
  for pidfile in "$run_dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    script="$(sed -n 2p "$pidfile")"
    if [ -n "$script" ] && pid="$(pid_from_file "$pidfile" "$script")"; then
      echo "stopping $(basename "$pidfile" .pid) (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      # Services take up to SHUTDOWN_TIMEOUT_MS (30 s) to drain; past that, they are killed.
      for _ in $(seq 1 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "$(basename "$pidfile" .pid) did not stop in 35 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop_services
  if [ "${2:-}" = "--purge" ]; then
    # What the quick start made for itself: its audit signing key, API token, spool and pid files.
    rm -rf -- "$run_dir"
    echo "services stopped and $run_dir deleted"
  fi
  echo "services stopped; the infrastructure keeps running (stop it with: bash infra/local/down.sh [--purge])"
  exit 0
fi

step "toolchain and dependencies"
# shellcheck source=toolchain.sh
source scripts/toolchain.sh
pnpm install --frozen-lockfile --reporter=append-only 2>&1 | tail -n 1

step "infrastructure: PostgreSQL, Redis, Kafka (infra/local/up.sh; the first run installs them, a few minutes)"
bash infra/local/up.sh
set -a
# shellcheck source=/dev/null
source "$state/stack.env"
set +a

step "policy bundle (rego/build.sh)"
bash rego/build.sh

# The database URL holds the superuser's password: it goes to programs through the environment,
# never on a command line (readable by any local user in /proc) or in the banner below.
database_url="$(node -e 'const u = new URL(process.env.PORTCULLIS_DATABASE_URL); u.pathname = "/portcullis"; console.log(u.toString())')"
# psql <database> [args…], with the password from the environment.
sql() {
  local database="$1"
  shift
  PGPASSWORD="$(pg_password)" psql -X -h 127.0.0.1 -p "$PORTCULLIS_PG_PORT" -U "$PG_ROLE" -d "$database" "$@"
}
if ! sql postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'portcullis'" | grep -q 1; then
  sql postgres -qc 'CREATE DATABASE portcullis'
fi

stop_services
mkdir -p "$run_dir" "$logs"
common_env=(
  "DATABASE_URL=$database_url"
  "KAFKA_BROKERS=$PORTCULLIS_KAFKA_BROKERS"
  "SHUTDOWN_DRAIN_MS=0"
)

# start <name> <port or ""> <script> [env…]: runs a service in the background, logging to a file.
# The variables are exported in a subshell that then becomes the service (exec): `env VAR=… cmd`
# would show them, the database password with them, on env's command line.
start() {
  local name="$1" port="$2" script="$3"
  shift 3
  (
    # shellcheck disable=SC2163 # the arguments are NAME=value pairs, which export takes as such
    export "${common_env[@]}" ${port:+"HTTP_PORT=$port"} "$@"
    exec nohup node "$script" >"$logs/$name.log" 2>&1
  ) &
  printf '%s\n%s\n' "$!" "$script" >"$run_dir/$name.pid"
  echo "started $name (pid $!, log $logs/$name.log)"
}

wait_ready() { # <name> <url>
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "quickstart: $1 did not become ready at $2; its log:" >&2
  tail -n 30 "$logs/$1.log" >&2
  exit 1
}

# An admin token for the decision service API on this machine: the service is given only its hash.
mkdir -p "$run_dir"
api_token_file="$run_dir/api-token"
if [ ! -s "$api_token_file" ]; then
  (umask 077 && node -e 'console.log(require("node:crypto").randomBytes(24).toString("hex"))' >"$api_token_file")
fi
api_token_sha256="$(tr -d '\n' <"$api_token_file" | sha256sum | cut -d' ' -f1)"

step "services"
nohup node examples/demo-upstream/src/main.ts --port "$upstream_port" >"$logs/demo-upstream.log" 2>&1 &
printf '%s\n%s\n' "$!" examples/demo-upstream/src/main.ts >"$run_dir/demo-upstream.pid"
echo "started demo-upstream (pid $!, log $logs/demo-upstream.log)"
start decision "$decision_port" services/decision/src/main.ts \
  "API_TOKENS=[{\"name\":\"quickstart\",\"role\":\"admin\",\"sha256\":\"$api_token_sha256\"}]" \
  "OPA_BIN=${PORTCULLIS_OPA_BIN:-opa}"
wait_ready decision "http://127.0.0.1:$decision_port/readyz"
DATABASE_URL="$database_url" node services/decision/src/cli.ts seed examples/seed.json
echo "registering the demo app's upstream through the decision service (its tools are pinned)…"
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$upstream_port/mcp" && break
  sleep 0.1
done
PORTCULLIS_API_URL="http://127.0.0.1:$decision_port" PORTCULLIS_API_TOKEN="$(tr -d '\n' <"$api_token_file")" \
  node services/decision/src/cli.ts apps register demo --url "http://127.0.0.1:$upstream_port/mcp"
echo "issuing an agent key for quickstart-agent (entitled to read and write the demo app, not delete)…"
key="$(DATABASE_URL="$database_url" node services/decision/src/cli.ts issue-key quickstart-agent --json |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).key))')"

start credential "$credential_port" services/credential/src/main.ts
# The ledger signs checkpoints of its hash chains with an Ed25519 key made once for this machine;
# auditors verify with the public half. The private key reaches the service through its
# environment only, never a command line.
ledger_keys="$run_dir/ledger-keys"
if [ ! -s "$ledger_keys/signing-key.pem" ]; then
  node services/audit/src/cli.ts keygen --out "$ledger_keys" >/dev/null
fi
AUDIT_SIGNING_KEY="$(cat "$ledger_keys/signing-key.pem")" CHECKPOINT_INTERVAL_MS=2000 \
  start audit "$audit_port" services/audit/src/main.ts
start broker "$broker_port" services/broker/src/main.ts \
  "REDIS_URL=$PORTCULLIS_REDIS_URL" \
  "POLICY_BUNDLE_PATH=$root/rego/build/bundle.tar.gz" \
  "AUDIT_SPOOL_DIR=$run_dir/broker-audit-spool"
for service in credential:$credential_port audit:$audit_port broker:$broker_port; do
  wait_ready "${service%%:*}" "http://127.0.0.1:${service##*:}/readyz"
done

# Brokers learn a new key from the directory topic within a second: wait until this one is accepted.
# The key goes to curl through a file descriptor, never on a command line.
initialize='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"quickstart","version":"1"}}}'
for _ in $(seq 1 50); do
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$broker_port/mcp" \
    -H @<(printf 'Authorization: Bearer %s\n' "$key") -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -d "$initialize")"
  [ "$code" = 200 ] && break
  sleep 0.1
done

step "the example agent (examples/agent) calls through the gateway"
PORTCULLIS_MCP_URL="http://127.0.0.1:$broker_port/mcp" PORTCULLIS_AGENT_KEY="$key" node examples/agent/src/main.ts

step "the ledger (audit.tool_calls)"
for _ in $(seq 1 50); do
  pending="$(sql portcullis -tAc "SELECT count(*) FROM audit.tool_calls WHERE outcome = 'pending'")"
  [ "$pending" = "0" ] && break
  sleep 0.2
done
sql portcullis -c "SELECT requested_at::time(0) AS at, agent_name, tool, action_class, decision, reason_codes, outcome
  FROM audit.tool_calls ORDER BY requested_at DESC LIMIT 10"

cat <<INFO

Portcullis is running.
  MCP endpoint (Streamable HTTP): http://127.0.0.1:$broker_port/mcp
  Agent key (shown once):          $key
  Send it as:                      Authorization: Bearer <key>

  Try another client, e.g. the example agent (on Node 24: source scripts/toolchain.sh first):
    PORTCULLIS_AGENT_KEY='$key' node examples/agent/src/main.ts
  Policy CLI against the decision service (docs/policy-authoring.md):
    export PORTCULLIS_API_URL=http://127.0.0.1:$decision_port PORTCULLIS_API_TOKEN="\$(cat $api_token_file)"
    bin/portcullis policy bundles
  See every call in the ledger (the password is in $PG_PASSWORD_FILE):
    psql -h 127.0.0.1 -p $PORTCULLIS_PG_PORT -U $PG_ROLE -d portcullis -c 'SELECT * FROM audit.tool_calls'
  Verify that nothing in it was altered (docs/auditor-guide.md):
    set -a; . $state/stack.env; set +a
    DATABASE_URL="\${PORTCULLIS_DATABASE_URL%/*}/portcullis" bin/portcullis ledger verify --public-key $ledger_keys/public-key.pem
  Logs: $logs    Stop the services: scripts/quickstart.sh stop    Stop the infrastructure: bash infra/local/down.sh
INFO
