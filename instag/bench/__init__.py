"""Benchmarks behind `instag bench …`: each measures medians and writes JSON with the machine and commit."""
