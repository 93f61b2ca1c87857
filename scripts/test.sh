#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs Node 24, pnpm and the dependencies, installs and
# starts PostgreSQL, Redis and Kafka (infra/local/up.sh), then runs every check CI runs.
# Re-running is cheap: everything already installed or running is reused.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "toolchain: Node 24 and pnpm (scripts/toolchain.sh)"
# shellcheck source=toolchain.sh
source scripts/toolchain.sh
echo "node $(node --version), pnpm $(pnpm --version)"

step "dependencies (pnpm install --frozen-lockfile)"
pnpm install --frozen-lockfile --reporter=append-only 2>&1 | tail -n 3

step "local infrastructure: PostgreSQL, Redis, Kafka, OPA, Regal (infra/local/up.sh)"
bash infra/local/up.sh
set -a
# shellcheck source=/dev/null
source "${PORTCULLIS_STATE_DIR:-$root/.portcullis}/stack.env"
set +a

step "lint and format (biome)"
pnpm --silent lint
step "typecheck (tsc, every package)"
pnpm --silent typecheck
step "policy: fmt, check --strict, test --coverage, regal lint (rego/check.sh)"
bash rego/check.sh
step "policy: build the WASM bundle (rego/build.sh)"
bash rego/build.sh
step "shell scripts (shellcheck)"
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "installing shellcheck (apt)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }
fi
shellcheck -x -P SCRIPTDIR scripts/*.sh infra/local/*.sh rego/*.sh .ci/run

step "tests: unit, integration and end-to-end (node --test)"
node --test --test-concurrency=2 --test-timeout=300000 \
  'packages/*/src/**/*.test.ts' 'services/*/src/**/*.test.ts' 'test/**/*.test.ts'

echo "all checks passed in $((SECONDS - started)) s"
