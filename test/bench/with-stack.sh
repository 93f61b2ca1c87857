#!/usr/bin/env bash
# Runs a benchmark script (default test/bench/ledger.ts) against the local stack (infra/local/up.sh),
# or against the stack named by PORTCULLIS_DATABASE_URL / PORTCULLIS_KAFKA_BROKERS if already set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=/dev/null
source "$root/scripts/toolchain.sh" >/dev/null
env_file="${PORTCULLIS_STATE_DIR:-$root/.portcullis}/stack.env"
if [ -z "${PORTCULLIS_DATABASE_URL:-}" ] && [ -f "$env_file" ]; then
  set -a
  # shellcheck source=/dev/null
  source "$env_file"
  set +a
fi
exec node "${1:-test/bench/ledger.ts}"
