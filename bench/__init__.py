"""Benchmarks (`make bench`): JSON + markdown under bench/results/."""

import os

# Measure in-process pipelines with the BLAS threading the nodes run with (wam_runtime.ros).
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
