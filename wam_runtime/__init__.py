"""wam_runtime: run ONNX world-action policies on ROS 2 behind a fail-closed safety gate."""
