#!/usr/bin/env bash
# The checks a policy author runs before pushing, and the ones CI runs: format, strict compile,
# tests with a coverage threshold, and Regal's linter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# lib.sh knows where infra/local/up.sh installs the pinned OPA and Regal; the env wins when set.
# shellcheck source=../infra/local/lib.sh
source "$here/../infra/local/lib.sh"
opa="${PORTCULLIS_OPA_BIN:-${OPA_BIN:-opa}}"
[ -x "$opa" ] || { echo "policy: $opa is missing; run infra/local/up.sh (it installs OPA and Regal)" >&2; exit 1; }
regal="${PORTCULLIS_REGAL_BIN:-${REGAL_BIN:-regal}}"
[ -x "$regal" ] || { echo "policy: $regal is missing; run infra/local/up.sh" >&2; exit 1; }
threshold="${PORTCULLIS_POLICY_COVERAGE_THRESHOLD:-90}"
cd "$here"

echo "policy: opa fmt"
"$opa" fmt --fail --list . >/dev/null || { echo "policy: files need formatting; run: opa fmt -w rego/" >&2; "$opa" fmt --list .; exit 1; }
echo "policy: opa check --strict"
"$opa" check --strict --ignore build .
echo "policy: opa test --coverage (threshold ${threshold}%)"
"$opa" test --ignore build --coverage --threshold "$threshold" . >/dev/null ||
  { "$opa" test --ignore build -v .; echo "policy: tests failed or coverage under ${threshold}%" >&2; exit 1; }
"$opa" test --ignore build .
echo "policy: regal lint"
"$regal" lint .
