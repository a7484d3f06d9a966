"""rosbag2 replay: recorded runs through the core pipeline, reports and regression checks.

Bags are read and written with :mod:`wam_runtime.bag`. ``pipeline`` runs observation
assembly, inference, the chunk scheduler and the safety gate on a simulated clock; ``report``
turns a run into ``summary.json``, figures and a regression diff; ``realtime`` plays a bag
over DDS to live nodes; ``cli`` is ``wam-runtime replay``.
"""
