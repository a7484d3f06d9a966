"""Thin rclpy nodes wiring the core to topics, parameters, timers and QoS."""

import os

# Node processes run their own threads (executor, inference worker, preprocessing pool,
# control tick). OpenBLAS worker threads on top of them compete for the same cores: the small
# matrix products of image preprocessing ran 1.5x slower with them on a 2-core machine. Set
# before numpy is first imported by a node; a value already in the environment wins.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
