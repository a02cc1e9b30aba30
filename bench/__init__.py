"""Benchmarks: each prints its in-run baseline, its figure and the ratio."""
