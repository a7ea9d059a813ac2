#!/usr/bin/env bash
# One entry point for people and CI:
#   ./dev.sh demo [--exit]   set up .venv, load the Dalong demo register, play a warning
#   ./dev.sh test [pytest args]   set up .venv (+ Chromium for browser tests), ruff, run the whole suite
#   ./dev.sh bench           run the benchmarks in bench/
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  # reinstall only when the dependency list changed
  local stamp=.venv/.linli-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  demo)  setup; exec .venv/bin/linli demo "$@" ;;
  test)  setup
         if [ -f scripts/setup_browser.sh ]; then bash scripts/setup_browser.sh; fi
         .venv/bin/ruff check .            # the linter first: a lint error fails the run like a test
         exec .venv/bin/python -m pytest "$@" ;;
  bench) setup; exec .venv/bin/python -m bench "$@" ;;
  *)     echo "usage: ./dev.sh demo|test|bench [args]" >&2; exit 2 ;;
esac
