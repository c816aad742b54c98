"""Benchmarks run by `make bench`: each measures the project's way against a baseline in the same run."""
