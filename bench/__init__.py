"""Benchmarks: ``ffs_bench`` (``ffs bench``) and stand-alone scripts (``python bench/NAME.py``)."""
