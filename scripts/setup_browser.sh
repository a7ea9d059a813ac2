#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/test_browser.py drive it with Playwright).
# We never run `playwright install`: it downloads a browser build from a CDN, which offline CI and
# the community office's network cannot reach; the distribution's package is signed and cached.
# Called by ./dev.sh test and .ci/run; safe to run again (does nothing when Chromium is present).
set -euo pipefail

CHROMIUM="${LINLI_CHROMIUM:-/usr/bin/chromium}"
# the dashboard is Chinese: without a CJK font the screenshots (docs/img) show empty boxes
has_cjk_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }
if [ -x "$CHROMIUM" ] && has_cjk_font; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: $CHROMIUM is missing and apt-get is not available;" \
       "install Chromium yourself or set LINLI_CHROMIUM" >&2
  # in CI a missing browser is an error; locally the browser tests skip with this reason
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup_browser: not root and no password-less sudo; cannot install chromium" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    exit 0
  fi
fi

echo "setup_browser: installing Debian's chromium and a CJK font (first run only)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  chromium fonts-wqy-microhei
if [ ! -x "$CHROMIUM" ]; then
  echo "setup_browser: chromium installed but $CHROMIUM not found" >&2
  exit 1
fi
