#!/usr/bin/env bash
# What the browser tests of the report pages need (docs/report.md): Debian's chromium, and the playwright
# Python package that drives it (also in the dev extra). Safe to run again: what is there is left alone.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi
python -c "import playwright.sync_api" 2>/dev/null || python -m pip install -q "playwright>=1.40"
# Playwright drives the system's browser (tests/browser.py gives it the path): no browser download.
chromium --version 2>/dev/null | head -n 1
