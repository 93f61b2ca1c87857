#!/usr/bin/env bash
# Compiles the policy bundle to WebAssembly: rego/build/bundle.tar.gz, holding /policy.wasm,
# /data.json and /.manifest. The revision is a digest of the policy sources, so the same sources
# always give the same revision and the ledger can name exactly which policy decided a call.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# lib.sh knows where infra/local/up.sh installs the pinned OPA and Regal; the env wins when set.
# shellcheck source=../infra/local/lib.sh
source "$here/../infra/local/lib.sh"
opa="${PORTCULLIS_OPA_BIN:-${OPA_BIN:-opa}}"
[ -x "$opa" ] || { echo "policy: $opa is missing; run infra/local/up.sh (it installs OPA and Regal)" >&2; exit 1; }

# Entrypoints are declared where the rule is, with `# entrypoint: true` METADATA (Regal checks for
# it; OPA refuses the same entrypoint declared twice). The build then verifies that the bundle has
# exactly the entrypoints the engine evaluates, so a renamed rule fails here, not in the broker.
expected_entrypoints='["portcullis/authz/decision"]'

revision="$(cd "$here" && find . -name '*.rego' ! -name '*_test.rego' -o -name '*.json' ! -path './build/*' |
  LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
mkdir -p "$here/build"
cd "$here"
"$opa" build -b -t wasm -O=1 --revision "$revision" \
  --ignore '*_test.rego' --ignore build --ignore '*.sh' -o build/bundle.tar.gz .
built="$(tar -P -xzOf build/bundle.tar.gz /.manifest | python3 -c 'import json, sys; print(json.dumps([w["entrypoint"] for w in json.load(sys.stdin)["wasm"]]))')"
if [ "$built" != "$expected_entrypoints" ]; then
  echo "policy: the bundle's entrypoints are $built, expected $expected_entrypoints" >&2
  exit 1
fi
echo "policy: built rego/build/bundle.tar.gz (revision $revision)"
