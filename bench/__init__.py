"""Benchmarks (`make bench`): JSON + markdown under bench/results/."""
