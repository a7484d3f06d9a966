"""Operator and CI tools: parameter files, launch files and models checked without ROS running.

``params_check`` validates ROS parameter YAML against the nodes' declared schemas,
``launch_check`` parses the launch files statically (no ``launch`` import needed),
``model_info`` describes and validates a model's contract, ``config_docs`` writes the
documented per-node parameter files. ``wam_runtime.cli`` is the command line over them.
"""
