"""Suite-wide fixtures.

A developer's own LINLI_* settings (a real secret, another store path, another port) must never
leak into the tests: every test starts with none of them. LINLI_CHROMIUM (where the browser is)
is the one kept, since it describes the machine, not Linli's configuration.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

# LINLI_TEST_SESSION marks every process this test session starts (children inherit it), so the
# session can check at the end that none of them outlived it (a `linli serve --role front` left
# behind by a crash test, for example).
KEEP = {"LINLI_CHROMIUM", "LINLI_TEST_SESSION", "LINLI_PUBLISH_SCREENSHOTS"}


def pytest_configure(config):
    # at collection time too: modules that load config.toml at import see a clean environment
    for key in [k for k in os.environ if k.startswith("LINLI_") and k not in KEEP]:
        del os.environ[key]
    os.environ["LINLI_TEST_SESSION"] = uuid.uuid4().hex


def _session_processes(marker: str) -> list[tuple[int, str]]:
    """Processes (other than this one) whose environment carries the session marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes()
            if f"LINLI_TEST_SESSION={marker}".encode() not in env.split(b"\0"):
                continue
            if (proc / "stat").read_text().split(")")[-1].split()[0] == "Z":
                continue  # a zombie is already dead
            found.append((int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found


def pytest_sessionfinish(session, exitstatus):
    """No process a test started may outlive the suite: kill any left and fail the run."""
    marker = os.environ.get("LINLI_TEST_SESSION")
    if not marker or not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 5  # a child that is shutting down gets a moment
    left = _session_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _session_processes(marker)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        print("\nprocesses started by the tests were still running (killed now):")
        for pid, cmd in left:
            print(f"  {pid}: {cmd}")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def _no_linli_environment(monkeypatch):
    for key in [k for k in os.environ if k.startswith("LINLI_") and k not in KEEP]:
        monkeypatch.delenv(key)
    yield
