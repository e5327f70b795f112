#!/usr/bin/env bash
# Make (or reuse) the project's Python environment and print its path.
#
# The venv lives outside the repository, at $MEDIMG_VENV_HOME/<hash>, where the hash covers
# pyproject.toml, constraints.txt and the Python version: any clone with the same pins reuses
# it (CI's clone included), and changing a pin builds a new one. medimg itself is installed
# editable from *this* checkout on every call (seconds), so a reused venv never runs another
# clone's code.
#   scripts/venv.sh            ensure the venv, print its path
#   scripts/venv.sh --freeze   rewrite constraints.txt from the current venv
set -euo pipefail
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }  # pip's noise about this machine's local indexes
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
# the key covers what decides the installed packages, not the rest of pyproject.toml (pytest settings, ...)
pins=$("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(sys.version, p["dependencies"], sorted(p["optional-dependencies"].items()))
PY
)
key=$(cat <(echo "$pins") "$repo/constraints.txt" | sha256sum | cut -c1-16)
venv=${MEDIMG_VENV_HOME:-$HOME/.cache/medimg/venvs}/$key

if [ ! -e "$venv/.complete" ]; then  # the marker is written last: a broken build is redone
  echo "setting up $venv (a few minutes on a new machine)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # torch and torchvision first: pip then takes the local wheels and the CUDA runtime they pin
  quiet "$venv/bin/pip" install -q -c "$repo/constraints.txt" torch torchvision >&2
  quiet "$venv/bin/pip" install -q -c "$repo/constraints.txt" setuptools -r <(cd "$repo" && "$venv/bin/python" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + [d for extra in p["optional-dependencies"].values() for d in extra]))
PY
) >&2
  touch "$venv/.complete"
fi
if [ "${1:-}" = "--freeze" ]; then
  { sed -n '1,2p' "$repo/constraints.txt"; "$venv/bin/pip" freeze | grep -vE '^(-e |medimg)'; } > "$repo/constraints.txt.new"
  mv "$repo/constraints.txt.new" "$repo/constraints.txt"
fi
quiet "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo" >&2
echo "$venv"
