"""Shared pieces of the benchmark scripts (scripts/bench_*.py).

The scripts put scripts/ on sys.path by being run from it, so this package
imports as `benchkit`. Every piece is small and importable without a server,
so the smoke test (tests/server/test_benchmarks.py) can run it on one input.
"""
