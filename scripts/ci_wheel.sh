#!/usr/bin/env bash
# CI: Linli as an operator installs it. Builds a wheel from a clean copy of the checkout, installs
# it into a fresh venv outside the checkout, and from an empty directory runs
#   linli init          (writes ./config.toml, creates ./data/linli.db)
#   linli demo --exit   (the Dalong story to its final summary, ~2 min at 30x)
#   linli serve         (the dashboard's login page and a static file, then stopped)
# Fails when any step fails, when the demo does not print its summary, or when the installed
# package reads anything from the checkout (the venv and the working directory are elsewhere).
#
#   scripts/ci_wheel.sh            PYTHON=python3.12 scripts/ci_wheel.sh
# Needs network access to PyPI for the build backend and Linli's dependencies.
set -euo pipefail
checkout="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
DEMO_TIMEOUT_S="${DEMO_TIMEOUT_S:-900}"   # the demo takes ~2 min; a hang must not eat the CI budget
work="$(mktemp -d "${TMPDIR:-/tmp}/linli-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
step() { echo "ci_wheel [$((SECONDS - t0)) s]: $*"; }

# 1. a clean copy: no .venv, no build/ or *.egg-info left over from an in-tree build (setuptools
#    would reuse a stale build/lib), no local database. tar keeps bot/_shipped's symlinks.
step "copying the checkout to $work/src"
mkdir -p "$work/src"
tar -C "$checkout" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./build --exclude='./*.egg-info' \
    --exclude='./data/*.db' --exclude='./data/*.db-*' --exclude=./.pytest_cache --exclude=./.ruff_cache \
    --exclude=./.hypothesis --exclude=./tests/artifacts --exclude=./bench/out --exclude='__pycache__' . \
  | tar -C "$work/src" -xf -

step "building the wheel"
"$PY" -m venv "$work/build-venv"
"$work/build-venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/linli-*.whl)"
step "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

step "installing it into a fresh venv"
"$PY" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
rm -rf "$work/src"  # from here on nothing of the source tree exists but the checkout itself

# 2. an empty directory, outside the checkout; the installed package must not import from it
mkdir "$work/empty" && cd "$work/empty"
where="$("$work/venv/bin/python" -c 'import bot, os; print(os.path.dirname(bot.__file__))')"
case "$where" in
  "$work/venv/"*) ;;
  *) echo "ci_wheel: bot imported from $where, not from the installed wheel" >&2; exit 1 ;;
esac

# free ports for Linli and the world, so a busy 8080/8081 on the CI machine cannot fail the run
read -r port wport < <("$work/venv/bin/python" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
export LINLI_SERVER_PORT="$port" LINLI_SERVER_PUBLIC_URL="http://127.0.0.1:$port"
export LINLI_WORLD_PORT="$wport" LINLI_WECOM_API_BASE="http://127.0.0.1:$wport" LINLI_OA_API_BASE="http://127.0.0.1:$wport"

step "linli init in $work/empty"
"$work/venv/bin/linli" init </dev/null
test -f config.toml || { echo "ci_wheel: linli init wrote no ./config.toml" >&2; exit 1; }
grep -q '^# Linli configuration' config.toml || { echo "ci_wheel: ./config.toml has no comments" >&2; exit 1; }
test -f data/linli.db || { echo "ci_wheel: linli init created no ./data/linli.db" >&2; exit 1; }

step "linli demo --exit (ports $port, $wport)"
set +e
timeout "$DEMO_TIMEOUT_S" "$work/venv/bin/linli" demo --exit </dev/null 2>&1 | tee "$work/demo.log"
code=${PIPESTATUS[0]}
set -e
if [ "$code" -ne 0 ]; then
  echo "ci_wheel: linli demo --exit exited with $code (124: still running after $DEMO_TIMEOUT_S s)" >&2
  exit 1
fi
# the end of the story: the coverage summary, then the send counts
if ! grep -q '【预警汇总】' "$work/demo.log" || ! grep -q '^sends: ' "$work/demo.log"; then
  echo "ci_wheel: the demo ended without printing its final summary" >&2
  exit 1
fi
if grep -q 'Traceback' "$work/demo.log"; then
  echo "ci_wheel: the demo printed a traceback" >&2
  exit 1
fi

# 3. the dashboard's own files (the demo never asks for them): serve, fetch a page and a static file
step "linli serve: /login and /static/live.js"
"$work/venv/bin/linli" serve --fronts 0 </dev/null >"$work/serve.log" 2>&1 &
serve_pid=$!
ok=0
"$work/venv/bin/python" - "$port" <<'EOF' && ok=1
import sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 60
while True:
    try:
        login = urllib.request.urlopen(base + "/login", timeout=5).read().decode()
        js = urllib.request.urlopen(base + "/static/live.js", timeout=5).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("linli serve did not answer /login and /static/live.js within 60 s")
        time.sleep(0.5)
if "<title>" not in login or not js:
    sys.exit("linli serve answered, but without its login page or live.js")
EOF
kill "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
if [ "$ok" -ne 1 ]; then cat "$work/serve.log" >&2; exit 1; fi
step "ok: wheel built, installed outside the checkout; from an empty directory init, demo (to its summary) and serve worked"
