#!/usr/bin/env bash
# Source this file: it makes sure Node.js 24 and the pinned pnpm are in the tools cache and puts
# them first on PATH. Every project script runs on that Node, never on the machine's older one.
#
# Why not the machine's Node: it is Node 20, past end of life; the project relies on Node 24's
# built-in TypeScript type stripping (services run their .ts sources directly).
# Why npm for both: the npm registry is the one source reachable everywhere we run; the `node`
# package ships the official binary, and pnpm is pinned by package.json's packageManager field.

PORTCULLIS_NODE_VERSION="${PORTCULLIS_NODE_VERSION:-24.21.0}"
PORTCULLIS_TOOLS_DIR="${PORTCULLIS_TOOLS_DIR:-$HOME/.cache/portcullis/tools}"
_portcullis_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_portcullis_install_npm_tool() { # <dir> <spec> <binary>: install into a temp dir, then move into place
  local dir="$1" spec="$2" bin="$3" tmp
  [ -x "$dir/node_modules/.bin/$bin" ] && return 0
  echo "toolchain: installing $spec into $dir (once per machine)…" >&2
  tmp="$(mktemp -d "${dir%/*}/.tmp.XXXXXX")"
  (cd "$tmp" && echo '{"private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error "$spec" >/dev/null) ||
    { rm -rf "$tmp"; echo "toolchain: npm install $spec failed" >&2; return 1; }
  rm -rf "$dir" && mv "$tmp" "$dir"
}

portcullis_toolchain() {
  mkdir -p "$PORTCULLIS_TOOLS_DIR"
  local node_dir="$PORTCULLIS_TOOLS_DIR/node-$PORTCULLIS_NODE_VERSION"
  _portcullis_install_npm_tool "$node_dir" "node@$PORTCULLIS_NODE_VERSION" node || return 1
  local node_bin="$node_dir/node_modules/node/bin"
  "$node_bin/node" --version >/dev/null 2>&1 || { echo "toolchain: $node_bin/node does not run" >&2; return 1; }

  local pm pnpm_version
  pm="$(sed -n 's/.*"packageManager": *"pnpm@\([^"]*\)".*/\1/p' "$_portcullis_root/package.json")"
  pnpm_version="${pm:?packageManager must name pnpm@<version> in package.json}"
  local pnpm_dir="$PORTCULLIS_TOOLS_DIR/pnpm-$pnpm_version"
  _portcullis_install_npm_tool "$pnpm_dir" "pnpm@$pnpm_version" pnpm || return 1

  export PATH="$node_bin:$pnpm_dir/node_modules/.bin:$PATH"
  # pnpm's store is a cache too: keep it beside the tools so fresh clones reuse downloads.
  export npm_config_store_dir="$PORTCULLIS_TOOLS_DIR/pnpm-store"
}

# shellcheck disable=SC2317 # `exit` is reached when this file is run instead of sourced.
portcullis_toolchain || { echo "toolchain: could not prepare Node $PORTCULLIS_NODE_VERSION and pnpm" >&2; return 1 2>/dev/null || exit 1; }
