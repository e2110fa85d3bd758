"""Benchmark scripts; each rewrites its own section of docs/benchmarks.md (see benchmarks/report.py)."""
