"""Benchmarks, run by `make bench` (see docs/BENCHMARKS.md). Not imported by the studio itself."""
