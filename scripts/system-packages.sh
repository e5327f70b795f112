#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's chromium, for the browser check of the book.
# Installs it with apt-get when missing (as root, or through sudo); says what to do otherwise.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium is missing and this is not a Debian/Ubuntu system: install Chromium and put it on PATH" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing chromium (apt-get; the book's browser check uses it)" >&2
$sudo apt-get install -y -q --no-install-recommends chromium >&2 \
  || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q --no-install-recommends chromium >&2; }
