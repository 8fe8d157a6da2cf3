"""Directo benchmarks: run with ``python -m bench`` (``make bench``)."""
