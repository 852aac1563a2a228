"""Reproducible benchmarks: each module prints its figures (and ratios vs a same-run baseline)."""
