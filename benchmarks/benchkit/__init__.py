"""Shared pieces of the benchmarks (benchmarks/*.py).

Every piece is small and importable without a server, so the smoke test
(tests/server/test_benchmarks.py) can run it on one input.
"""
