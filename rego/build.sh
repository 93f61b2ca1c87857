#!/usr/bin/env bash
# Compiles the policy bundle to WebAssembly: rego/build/bundle.tar.gz, holding /policy.wasm,
# /data.json and /.manifest. The revision is a digest of the policy sources, so the same sources
# always give the same revision and the ledger can name exactly which policy decided a call.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# lib.sh knows where infra/local/up.sh installs the pinned OPA and Regal; the env wins when set.
if [ -f "$here/../infra/local/lib.sh" ]; then
  # shellcheck source=../infra/local/lib.sh
  source "$here/../infra/local/lib.sh"
fi
opa="${PORTCULLIS_OPA_BIN:-${OPA_BIN:-opa}}"
[ -x "$opa" ] || { echo "policy: $opa is missing; run infra/local/up.sh (it installs OPA and Regal)" >&2; exit 1; }

# The entrypoints the engine evaluates, in order: their numeric ids follow this list.
entrypoints=(portcullis/authz/decision)

revision="$(cd "$here" && find . -name '*.rego' ! -name '*_test.rego' -o -name '*.json' ! -path './build/*' |
  LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
mkdir -p "$here/build"
args=()
for entrypoint in "${entrypoints[@]}"; do args+=(-e "$entrypoint"); done
cd "$here"
"$opa" build -b -t wasm "${args[@]}" -O=1 --revision "$revision" \
  --ignore '*_test.rego' --ignore build --ignore '*.sh' -o build/bundle.tar.gz .
echo "policy: built rego/build/bundle.tar.gz (revision $revision)"
