"""Benchmarks: each prints a table comparing variants side by side in one run."""
