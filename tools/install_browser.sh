#!/usr/bin/env bash
# Chromium for the browser test (tests/serve/test_browser.py, -m integration): Debian's
# package, driven by the playwright pip package (no Playwright browser download).
# Idempotent: does nothing when chromium is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "install_browser: chromium already installed: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
echo "install_browser: installed $(command -v chromium)"
