"""The benchmarks: each module a command (`python -m benchmarks.<name>`, or
`benchmarks/bench.sh <name>`), printing a comparison measured in one run and
writing its block of docs/BENCHMARKS.md. Shared pieces: `benchmarks.benchkit`.
"""
