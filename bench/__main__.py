"""`python -m bench <benchmark> [options]`: run one benchmark (the module bench/<benchmark>.py).

A benchmark module either defines `add_args(parser)` and `run(args) -> int`, or `main(argv)`.
Results are written under bench/out/ (git-ignored).
"""
from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "callbacks": "inbound callbacks: Linli vs Flask (sync, gthread), aiohttp on gunicorn, the in-process ceiling; full per-message cost",
    "relay": "one alert to 100,000 residents through the local world (bench/relay.py)",
    "idle": "worker CPU while idle with 0 / 100k / 1M rows of inbound history (bench/idle.py)",
    "page": "the alert page at 10k/30k/100k households: server time, bytes, live update, loop lag; vs the old page (bench/page.py)",
    "drill": "Linli vs the manual chain on the Dalong register, and the drill prediction (bench/drill.py)",
    "acks": "a storm of acks on a 100k-household register: acks/s as acks pile up (bench/acks.py)",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("_"):
        print(__doc__.strip().splitlines()[0])
        for name, help_ in BENCHMARKS.items():
            print(f"  {name:<12} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        mod = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"bench.{name}":
            raise
        print(f"no benchmark {name!r} (known: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    if hasattr(mod, "add_args") and hasattr(mod, "run"):
        parser = argparse.ArgumentParser(prog=f"python -m bench {name}",
                                         description=BENCHMARKS.get(name))
        mod.add_args(parser)
        return mod.run(parser.parse_args(rest)) or 0
    return mod.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
