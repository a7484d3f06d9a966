"""Operator and CI tools: parameter files, launch files and models checked without ROS running.

The ``wam-runtime`` subcommands (``wam_runtime.cli`` dispatches to them):

- ``inspect_model`` (``inspect``): print and validate a model's contract, over
  ``model_info``, which describes a model and checks its contract against its real inputs
  and outputs with the parser ``policy_node`` uses;
- ``check_config`` (``check-config``): a robot's parameter file against its URDF, model and
  controllers, built exactly as the nodes build it; it uses ``params_check`` (parameter YAML
  against the nodes' declared schemas: types, unknown names; its ``Finding`` is what every
  check reports), ``model_info``, ``controllers_check`` (ros2_control controller files
  against the safety controller's joint order) and ``model_timing`` (the model's measured
  inference time against the timing parameters);
- ``check_launch`` (``check-launch``): the package's launch files, evaluated statically by
  the ``launch_check`` package (read with ``ast``, never imported or executed);
- ``sros2_policy`` (``check-security``): an SROS2 access-control policy checked offline;
- ``config_docs`` (``config-docs``): the documented per-node parameter files in
  ``config/nodes/``, generated from the schemas: checked, or rewritten with ``--write``.
"""
