"""Benchmarks (not tests): `python -m bench <name>`. Results go to bench/out/ (git-ignored)."""
