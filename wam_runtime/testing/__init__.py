"""Test support shipped with the package, outside the runtime core.

``model_gen`` writes small deterministic ONNX models with a contract and predicts their
output in NumPy (the tests, benchmarks and the slice demo use them). ``DEFAULT_JOINTS`` are
the joints of the synthetic robot those models drive by default and that the synthetic
camera node publishes by default.
"""

DEFAULT_JOINTS = tuple(f'joint_{i}' for i in range(1, 7))
